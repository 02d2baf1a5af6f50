import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("PRUNECLI_TEST_THREADS", "1")))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.environ.get(
    "PRUNECLI_EXAMPLES", os.path.join(os.path.dirname(REPO_ROOT), "shared", "distiller-examples")
)


@pytest.fixture
def examples_dir() -> str:
    if not os.path.isdir(EXAMPLES_DIR):
        pytest.skip("Distiller example schedules not found next to the repository")
    return EXAMPLES_DIR
