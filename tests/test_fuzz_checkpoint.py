"""Property: whatever bytes a checkpoint file holds, load_checkpoint raises only PruneCliError.

Inputs: random bytes, truncations and byte mutations of real checkpoints (zip and legacy formats),
and files whose pickle would run code. The budget is small here; scripts/fuzz_long.py runs the same
properties with PRUNECLI_FUZZ_EXAMPLES set high.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from prunecli.checkpoint import build_checkpoint, load_checkpoint
from prunecli.errors import PruneCliError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("PRUNECLI_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,  # the default suite is reproducible; long runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_DIR = Path(tempfile.mkdtemp(prefix="prunecli-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_MARKER = _DIR / "executed"


class _Marker:
    def __reduce__(self):
        return (open, (str(_MARKER), "w"))


def _saved(obj, *, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _sample() -> dict:
    gen = torch.Generator().manual_seed(0)
    return build_checkpoint(
        state_dict={"fc.weight": torch.randn(3, 4, generator=gen), "fc.bias": torch.randn(3, generator=gen)},
        model={"kind": "zoo", "name": "simplenet_mnist", "kwargs": {}, "path": None, "dataset": None},
        masks={"fc.weight": torch.ones(3, 4)},
        epoch=2,
        metrics=[{"epoch": 0, "top1": 0.25}],
        extras={"config": {"lr": 0.1}},
    )


SEEDS: dict[str, bytes] = {
    "zip": _saved(_sample()),
    "legacy": _saved(_sample(), legacy=True),
    "state_dict": _saved({"w": torch.arange(6.0).reshape(2, 3)}),
    "evil": _saved({"state_dict": {}, "x": _Marker()}),
    "evil_legacy": _saved({"state_dict": {}, "x": _Marker()}, legacy=True),
}


def check_loader(data: bytes) -> None:
    """The property: a CheckpointError (or success), never another exception, never code run."""
    path = _DIR / "fuzz.pt"
    path.write_bytes(data)
    try:
        result = load_checkpoint(path)
    except PruneCliError as exc:
        assert str(path) in exc.render()
    else:
        assert isinstance(result, dict) and result["format"] == "prunecli-checkpoint"
    assert not _MARKER.exists(), "loading ran code from the file"


def _mutate(seed: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


def test_seeds_behave_as_expected() -> None:
    """Sanity check of the corpus itself: the unmodified files load or are refused as designed."""
    for name in ("zip", "legacy", "state_dict"):
        check_loader(SEEDS[name])
    for name in ("evil", "evil_legacy"):
        (_DIR / "fuzz.pt").write_bytes(SEEDS[name])
        with pytest.raises(PruneCliError, match="nothing from it was executed"):
            load_checkpoint(_DIR / "fuzz.pt")


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check_loader(data)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.binary(max_size=64), st.booleans())
def test_prefixes_with_random_tails(name: str, tail: bytes, keep_half: bool) -> None:
    seed = SEEDS[name]
    check_loader(seed[: len(seed) // 2] + tail if keep_half else seed[:16] + tail)


@FUZZ
@given(st.sampled_from(sorted(SEEDS)), st.integers(min_value=0, max_value=10**6))
def test_truncations(name: str, cut: int) -> None:
    seed = SEEDS[name]
    check_loader(seed[: cut % len(seed)])


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**6), st.integers(0, 255)), min_size=1, max_size=8
    ),
)
def test_byte_mutations(name: str, edits: list[tuple[int, int]]) -> None:
    check_loader(_mutate(SEEDS[name], edits))


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.integers(min_value=0, max_value=10**6),
    st.binary(min_size=1, max_size=32),
)
def test_insertions(name: str, position: int, chunk: bytes) -> None:
    seed = SEEDS[name]
    at = position % len(seed)
    check_loader(seed[:at] + chunk + seed[at:])
