"""Property: the schedule and run-config parsers raise only PruneCliError on any text.

Inputs: random text, random YAML-ish token soup, and character mutations of the real Distiller
example schedules. Budget as in test_fuzz_checkpoint.py (PRUNECLI_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from prunecli.errors import PruneCliError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("PRUNECLI_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_DIR = Path(tempfile.mkdtemp(prefix="prunecli-fuzz-text-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = Path(os.environ.get("PRUNECLI_EXAMPLES", REPO.parent / "shared" / "distiller-examples"))


def _corpus() -> list[str]:
    texts = [
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(EXAMPLES_DIR.rglob("*.yaml"))[:40]
    ]
    texts += [p.read_text(encoding="utf-8") for p in sorted((REPO / "schedules").glob("*.yaml"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted((REPO / "configs").glob("*.yaml"))]
    return texts or ["version: 1\npolicies: []\n"]


CORPUS = _corpus()
TOKENS = [
    "version: 1\n",
    "pruners:\n",
    "  p:\n",
    "    class: AutomatedGradualPruner\n",
    "policies:\n",
    "  - pruner: {instance_name: p}\n",
    "    starting_epoch: 0\n",
    "    ending_epoch: 10\n",
    "    frequency: 2\n",
    "    epochs: [0, 1]\n",
    "weights: [conv1.weight]\n",
    "initial_sparsity: 0.05\n",
    "final_sparsity: 1.5\n",
    "extensions:\n",
    "lr_schedulers:\n",
    "- ",
    ": ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!python/object:os.system ",
    "<<: *a\n",
    "---\n",
    "...\n",
    "'",
    '"',
    "#",
    "\t",
    "\n",
    "  ",
    "~",
    "null",
    "1e309",
    "-1",
    "yes",
    ".nan",
    "epochs: 20\n",
    "lr: -0.1\n",
    "optimizer: sgd\n",
    "batch_size: 0\n",
    "model: resnet20_cifar\n",
    "seed: x\n",
]


def _texts() -> st.SearchStrategy[str]:
    mutated = st.builds(
        _mutate,
        st.sampled_from(CORPUS),
        st.lists(st.tuples(st.integers(0, 10**6), st.text(max_size=3)), min_size=1, max_size=6),
    )
    soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
    return st.one_of(st.text(max_size=500), soup, mutated)


def _mutate(text: str, edits: list[tuple[int, str]]) -> str:
    chars = list(text)
    for position, replacement in edits:
        at = position % (len(chars) + 1)
        chars[at : at + 1] = list(replacement)
    return "".join(chars)


def _only_prunecli_errors(parse, path: Path, **kwargs) -> None:
    """The property: success, or a PruneCliError whose message names the file."""
    try:
        parse(path, **kwargs)
    except PruneCliError as exc:
        assert path.name in exc.render()


def check_schedule(text: str) -> None:
    from prunecli.schedule import load_schedule

    path = _DIR / "schedule.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_prunecli_errors(load_schedule, path)
    _only_prunecli_errors(load_schedule, path, text=text)


def check_config(text: str) -> None:
    from prunecli.training.config import load_config

    path = _DIR / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_prunecli_errors(load_config, path)


@FUZZ
@given(_texts())
def test_schedule_parser_raises_only_prunecli_errors(text: str) -> None:
    check_schedule(text)


@FUZZ
@given(_texts())
def test_run_config_parser_raises_only_prunecli_errors(text: str) -> None:
    check_config(text)


@FUZZ
@given(st.binary(max_size=600))
def test_parsers_on_arbitrary_bytes(data: bytes) -> None:
    from prunecli.schedule import load_schedule
    from prunecli.training.config import load_config

    path = _DIR / "bytes.yaml"
    path.write_bytes(data)
    for parse in (load_schedule, load_config):
        _only_prunecli_errors(parse, path)


def test_corpus_is_not_empty() -> None:
    assert len(CORPUS) >= 2
