"""The schedule catalog is the one declaration of every class and its arguments: the runtime
registries must hold exactly its class names, and every constructor must take every argument
the catalog declares, with the same required ones (read here from the signatures, the one
place that may)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from prunecli.compression.build import EXTENSIONS, RUNTIME_ARGS
from prunecli.lr import LR_SCHEDULERS
from prunecli.pruners import PRUNERS
from prunecli.pruners.compositions import Composition
from prunecli.regularizers import REGULARIZERS
from prunecli.schedule.catalog import catalog, classes_in
from prunecli.schedule.native import NATIVE_CLASS

INJECTED = {"self", "name", "model", "optimizer", "last_epoch", "verbose"}


def _supported(section: str) -> set[str]:
    return {n for n in classes_in(section) if catalog()[n].unsupported is None}


def test_registries_hold_exactly_the_catalog_classes() -> None:
    assert _supported("pruners") - {NATIVE_CLASS} == set(PRUNERS)
    assert _supported("regularizers") == set(REGULARIZERS)
    assert _supported("extensions") == set(EXTENSIONS)
    assert set(classes_in("lr_schedulers")) == set(LR_SCHEDULERS)


def _own_init(cls: type) -> type:
    return next(c for c in cls.__mro__ if "__init__" in vars(c))


def _accepted(cls: Any) -> tuple[set[str], set[str]]:
    """(arguments, required ones) a class's constructor takes, following *args/**options to its base.

    An engine composition takes the arguments of its builder."""
    named: set[str] = set()
    required: set[str] = set()
    forwards = False
    if isinstance(cls, Composition):
        owner, init = None, cls.build
    else:
        owner = _own_init(cls)
        init = owner.__init__
    for pname, param in inspect.signature(init).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            forwards = True
        elif pname not in INJECTED:
            named.add(pname)
            if param.default is inspect.Parameter.empty:
                required.add(pname)
    if forwards and owner is not None:
        base = _own_init(owner.__mro__[owner.__mro__.index(owner) + 1])
        if "final_sparsity" in named:  # an _AGP form: the ranking base, whose level it sets itself
            base = next(b for b in owner.__mro__[1:] if b.__name__ + "_AGP" == cls.__name__)
        base_named, base_required = _accepted(base)
        set_by_agp = {"desired_sparsity"} if "final_sparsity" in named else set()
        named |= base_named - set_by_agp
        required |= base_required - set_by_agp
    return named, required


@pytest.mark.parametrize("name", sorted(set(PRUNERS) | set(REGULARIZERS)))
def test_constructor_takes_exactly_the_catalog_arguments(name: str) -> None:
    cls = {**PRUNERS, **REGULARIZERS}[name]
    schema = catalog()[name].schema
    named, required = _accepted(cls)
    # every declared argument reaches the constructor (a constructor may take more, e.g. an
    # option inherited from its base that the class's YAML does not offer)
    declared = set(schema["properties"]) - set(RUNTIME_ARGS)  # prunecli's own, set after construction
    assert declared <= named, (name, declared - named)
    assert required == set(schema["required"]), (name, required ^ set(schema["required"]))


def test_quantizer_registry_and_constructors_follow_the_catalog() -> None:
    from prunecli.quantization.registry import QUANTIZERS

    assert _supported("quantizers") == set(QUANTIZERS)
    for name, cls in QUANTIZERS.items():
        params = inspect.signature(cls.__init__).parameters
        named = {p for p in params if p not in INJECTED}
        required = {p for p in named if params[p].default is inspect.Parameter.empty}
        schema = catalog()[name].schema
        assert set(schema["properties"]) <= named, (name, set(schema["properties"]) - named)
        assert required == set(schema["required"]), name
