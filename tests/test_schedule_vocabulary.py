"""Group types, thinning function names and name-carrying arguments: declared once, read everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import prunecli
from prunecli.compression.policies import ThinningPolicy
from prunecli.schedule import catalog
from prunecli.schedule.model import Component
from prunecli.schedule.vocabulary import (
    GROUP_TYPES,
    THINNING_CLASSES,
    THINNING_FUNCTIONS,
    channel_group_types,
    parameter_names,
    structure_dims,
)

PACKAGE = Path(prunecli.__file__).parent
OWNER = PACKAGE / "schedule" / "vocabulary.py"


def test_every_group_type_the_catalog_accepts_has_a_meaning():
    accepted = {
        *catalog.RANKED_GROUP_TYPES,
        *catalog.FILTER_GROUP_TYPES,
        *catalog.THRESHOLD_GROUP_TYPES,
        *catalog.LASSO_GROUP_TYPES,
    }
    assert accepted <= set(GROUP_TYPES)


def test_channel_group_types_prune_the_documented_side():
    # Distiller: Filters/3D prune dim 0 of the producers, Channels dim 1 of the readers
    got = {name: (g.dim, g.role) for name, g in channel_group_types().items()}
    assert got == {"Filters": (0, "out"), "3D": (0, "out"), "Channels": (1, "in")}
    assert structure_dims() == {"Filters": 0, "3D": 0, "Channels": 1, "Rows": 1}


def test_thinning_classes_are_the_catalog_extensions_that_thin():
    thinning = {
        name
        for name, spec in catalog.catalog().items()
        if "thinning_func_str" in spec.schema.get("properties", {})
    }
    assert thinning == set(THINNING_CLASSES)


def test_thinning_functions_are_the_schema_enum_and_valid_modes():
    spec = catalog.lookup("FilterRemover")
    enum = spec.schema["properties"]["thinning_func_str"]["enum"]
    assert enum == list(THINNING_FUNCTIONS)
    assert set(THINNING_FUNCTIONS.values()) == {"filters", "channels", "both"}
    for name, mode in THINNING_FUNCTIONS.items():
        assert ThinningPolicy("t", name, None).mode == mode


def _component(class_name: str, **args) -> Component:
    section = catalog.lookup(class_name).section
    return Component(section, "x", class_name, args)


def test_parameter_names_follow_the_catalog_declaration():
    assert parameter_names(_component("AutomatedGradualPruner", weights=["a.weight", "b.weight"])) == [
        "a.weight",
        "b.weight",
    ]
    assert parameter_names(
        _component("SparsityLevelParameterPruner", levels={"c.weight": 0.5, "*": 0.1})
    ) == [
        "c.weight",
        "*",
    ]
    assert parameter_names(_component("SensitivityPruner", sensitivities={"d.weight": 0.3})) == ["d.weight"]
    assert parameter_names(
        _component("GroupLassoRegularizer", reg_regims={"e.weight": [0.1, "Filters"]})
    ) == ["e.weight"]
    # a name-keyed mapping is read only where the class declares it
    assert parameter_names(_component("AutomatedGradualPruner", levels={"f.weight": 0.5})) == []


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_no_other_module_spells_the_thinning_function_names():
    spelled = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER
        for name in sorted(_string_constants(path) & set(THINNING_FUNCTIONS))
    ]
    assert spelled == []
