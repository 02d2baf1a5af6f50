"""Device names: one resolver for run, report latency and sensitivity."""

from __future__ import annotations

import pytest
import torch

from prunecli.devices import resolve_device
from prunecli.errors import ConfigError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["tpu:banana", "gpu", "cuda:x"])
def test_unknown_names_are_user_errors(name):
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    assert "cuda:N" in info.value.hint


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_every_cuda_spelling_is_refused_without_cuda(name):
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    assert "CUDA is not available" in info.value.message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_index_past_the_last_is_refused():
    count = torch.cuda.device_count()
    assert resolve_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(ConfigError) as info:
        resolve_device(f"cuda:{count}")
    assert f"{count} CUDA device" in info.value.message
