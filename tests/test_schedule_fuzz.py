"""Whatever the text, the schedule stack yields a Schedule or a PruneCliError, never another exception.

Two sources: structured documents drawn from the schedule vocabulary (so they get past the
YAML layer and exercise the checks), and mutations of the real Distiller examples (deleted
lines, flipped characters, truncation). Successful loads also go through plan() and
resolve_names(), which must not crash on anything the loader accepted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunecli.errors import PruneCliError
from prunecli.schedule import Schedule, load_schedule, plan
from prunecli.schedule.names import resolve_names

BUDGET = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "distiller-examples"
SHAPES = {"conv1.weight": (16, 3, 3, 3), "layer1.0.conv1.weight": (16, 16, 3, 3), "fc.weight": (10, 64)}

KEYS = [
    "version",
    "pruners",
    "regularizers",
    "lr_schedulers",
    "extensions",
    "policies",
    "class",
    "weights",
    "initial_sparsity",
    "final_sparsity",
    "desired_sparsity",
    "group_type",
    "group_dependency",
    "kwargs",
    "block_shape",
    "reg_regims",
    "levels",
    "thresholds",
    "sensitivities",
    "instance_name",
    "args",
    "pruner",
    "regularizer",
    "lr_scheduler",
    "extension",
    "starting_epoch",
    "ending_epoch",
    "frequency",
    "epochs",
    "step_size",
    "gamma",
    "milestones",
    "keep_mask",
    "sparsity_range",
    "*",
    "conv1.weight",
    "module.fc.weight",
]
CLASSES = [
    "AutomatedGradualPruner",
    "L1RankedStructureParameterPruner_AGP",
    "SparsityLevelParameterPruner",
    "StepLR",
    "GroupLassoRegularizer",
    "FilterRemover",
    "MagnitudeParameterPruner",
    "Nope",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 60),
    st.floats(-1, 2, allow_nan=False),
    st.sampled_from(
        CLASSES + ["Filters", "Channels", "Rows", "Blocks", "Leader", "re:conv.*", "__ALL_PRUNABLE__"]
    ),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=30,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=7)


def _exercise(text: str) -> None:
    try:
        schedule = load_schedule("fuzz.yaml", text=text)
    except PruneCliError:
        return
    assert isinstance(schedule, Schedule)
    plan(schedule, 60)
    with contextlib.suppress(PruneCliError):
        resolve_names(schedule, SHAPES)


@BUDGET
@given(documents)
def test_structured_documents(doc: dict) -> None:
    _exercise(yaml.safe_dump(doc, sort_keys=False))


def _corpus() -> list[str]:
    files = sorted(EXAMPLES_DIR.rglob("*.yaml"))
    return [p.read_text(encoding="utf-8", errors="replace") for p in files if p.stat().st_size < 20_000]


CORPUS = _corpus()


@pytest.mark.skipif(not CORPUS, reason="Distiller examples not found")
@BUDGET
@given(st.data())
def test_mutated_examples(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(CORPUS))
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["delete", "flip", "truncate", "duplicate"]))
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines = lines[:i] + [lines[i][: data.draw(st.integers(0, len(lines[i])))]]
        elif lines[i]:
            j = data.draw(st.integers(0, len(lines[i]) - 1))
            ch = data.draw(st.sampled_from(list(":-[]{}'\"#&*!|> \t0a.,\x00\x1f\ufeff")))
            lines[i] = lines[i][:j] + ch + lines[i][j + 1 :]
    _exercise("".join(lines))


@BUDGET
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _exercise(text)
