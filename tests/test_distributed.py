"""Single-process pieces of multi-process training, mixed precision and the launcher shortcut.

The multi-process runs themselves are in ``test_distributed_runs.py`` (slow).
"""

import math

import pytest
import torch
from support.distributed import RESNET20_SCHEDULE, digits_args
from support.runs import RUN_SCHEDULE
from torch import nn

from prunecli.checkpoint import load_checkpoint
from prunecli.compression.scheduler import CompressionScheduler
from prunecli.errors import ConfigError
from prunecli.training import run_training
from prunecli.training.config import merge_config
from prunecli.training.distributed import (
    differing_tensors,
    first_mismatch,
    mismatch_message,
    shard_bounds,
    tensor_digests,
)
from prunecli.training.distributed_launch import worker_arguments
from prunecli.training.loop import train_epoch
from prunecli.training.precision import Precision

# ----------------------------------------------------------------------------------- pure helpers


def test_shards_cover_every_sample_exactly_once():
    for size in (0, 1, 7, 10, 11):
        for parts in (1, 2, 3, 4):
            covered = []
            for index in range(parts):
                start, stop = shard_bounds(size, parts, index)
                covered.extend(range(start, stop))
            assert covered == list(range(size))  # contiguous, no padding, no repeats


def test_first_mismatch_names_the_first_differing_rank():
    assert first_mismatch(["a", "a", "a"]) is None
    assert first_mismatch(["a", "a", "b", "c"]) == 2


def test_digests_see_one_flipped_mask_element_and_ignore_order():
    masks = {"b.weight": torch.ones(4, 3), "a.weight": torch.zeros(2), "c.weight": None}
    same = {"a.weight": torch.zeros(2), "b.weight": torch.ones(4, 3)}
    assert tensor_digests(masks) == tensor_digests(same)
    flipped = {"a.weight": torch.zeros(2), "b.weight": torch.ones(4, 3)}
    flipped["b.weight"][2, 1] = 0
    assert differing_tensors(tensor_digests(masks), tensor_digests(flipped)) == ["b.weight"]
    assert tensor_digests({"n": torch.tensor(3)}) != tensor_digests({"n": torch.tensor(4)})  # 0-dim
    reshaped = {"a.weight": torch.zeros(1, 2), "b.weight": torch.ones(4, 3)}  # same bytes, other shape
    assert differing_tensors(tensor_digests(same), tensor_digests(reshaped)) == ["a.weight"]


def test_mismatch_message_names_every_differing_rank_and_its_tensors():
    agree = tensor_digests({"a.weight": torch.zeros(2), "b.weight": torch.ones(3)})
    other = tensor_digests({"a.weight": torch.ones(2), "b.weight": torch.ones(3)})
    extra = tensor_digests({"a.weight": torch.zeros(2), "b.weight": torch.ones(3), "c.weight": torch.ones(1)})
    text = mismatch_message("pruning masks", [agree, agree, other, extra], epoch=4)
    assert text.startswith("the pruning masks differ between processes after epoch 4: ")
    assert "rank 2 differs from rank 0 in 'a.weight'" in text
    assert "rank 3 differs from rank 0 in 'c.weight'" in text and "rank 1 " not in text


def test_launcher_shortcut_hands_the_workers_the_same_command_without_itself():
    argv = ["run", "s.yaml", "--nproc-per-node", "2", "-b", "8", "--nproc-per-node=3", "--seed", "1"]
    assert worker_arguments(argv) == ["run", "s.yaml", "-b", "8", "--seed", "1"]


# ----------------------------------------------------------------------------------- precision


def _masked_net() -> tuple[nn.Module, CompressionScheduler, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4)
    )
    scheduler = CompressionScheduler(model)
    masks = {"0.weight": torch.ones(6, 1, 3, 3), "4.weight": (torch.rand(4, 216) > 0.5).float()}
    masks["0.weight"][[1, 4]] = 0  # two whole filters
    for name, mask in masks.items():
        scheduler.zeros_mask_dict[name].mask = mask
    scheduler.mask_all_weights()
    return model, scheduler, masks


@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_masked_weights_are_exactly_zero_after_every_step_in_every_precision(amp):
    model, scheduler, masks = _masked_net()
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    data = [(torch.randn(8, 1, 8, 8) * 3, torch.randint(4, (8,))) for _ in range(10)]
    precision = Precision(amp, torch.device("cpu"))
    if (
        precision.scaler is not None
    ):  # a first scale too large for fp16: the first steps overflow and are skipped
        precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**19)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    checked = []

    def after_step(step, loss):
        assert math.isfinite(loss)
        for name, mask in masks.items():
            assert torch.equal(params[name].detach()[mask == 0], torch.zeros(int((mask == 0).sum())))
        checked.append(step)

    stats = train_epoch(
        model, data, nn.CrossEntropyLoss(), optimizer, scheduler, 0, 10, torch.device("cpu"), after_step,
        precision=precision,
    )  # fmt: skip
    assert checked == list(range(10)) and stats.samples == 80
    kept = masks["0.weight"] != 0
    assert not torch.equal(params["0.weight"].detach()[kept], before["0.weight"][kept])  # it trained
    if amp == "fp16":
        assert precision.skipped_steps >= 1  # the scaler skipped steps, and masks held through them


def _precision_run(tmp_path, **settings):
    schedule = tmp_path / "tiny.yaml"
    schedule.write_text(RUN_SCHEDULE)
    config = merge_config(
        {"schedule": str(schedule), **digits_args(batch_size=16, epochs=4), **settings,
         "out_dir": str(tmp_path / "run"), "compact": False}
    )  # fmt: skip
    return run_training(config)


def _assert_exact_masks(tmp_path, result):
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) for row in result.metrics)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # AGP's final sparsity 0.5 on Filters (epoch 2), then thinning (epoch 3): half of each listed
    # conv's filters remain, and every weight a mask zeroes is exactly zero
    for name, filters in (("layer1.0.conv1.weight", 8), ("layer2.0.conv1.weight", 16)):
        mask, weight = ckpt["masks"][name], ckpt["state_dict"][name]
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        zero_filters = int((mask.flatten(1).sum(1) == 0).sum())
        assert weight.shape[0] - zero_filters == filters // 2
        assert torch.count_nonzero(weight[mask == 0]) == 0
    assert ckpt["recipe"]["removed_channels"] > 0


def test_fp16_refuses_gradient_ranking_whose_hooks_see_scaled_gradients(tmp_path):
    schedule = tmp_path / "taylor.yaml"
    schedule.write_text(RESNET20_SCHEDULE.replace("resnet20_cifar", "resnet_digits").replace("cifar10", "digits")
                        .replace("layer3.0.conv1.weight", "layer2.0.conv1.weight"))  # fmt: skip
    config = merge_config(
        {"schedule": str(schedule), **digits_args(batch_size=16, epochs=1), "amp": "fp16",
         "out_dir": str(tmp_path / "run")}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="amp bf16"):
        run_training(config)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_bf16_run_keeps_masks_exact_and_loss_finite(tmp_path):
    """A whole run under bf16 autocast (channels-last) on CPU: AGP reaches exactly its filter count."""
    _assert_exact_masks(tmp_path, _precision_run(tmp_path, amp="bf16", channels_last=True))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_channels_last_run_keeps_masks_exact(tmp_path, amp):
    _assert_exact_masks(tmp_path, _precision_run(tmp_path, amp=amp, device="cuda", channels_last=True))
