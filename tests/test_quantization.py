"""Quantizers against hand-computed values and independent numpy formulas (oracles in each test)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from prunecli.compression.build import build_scheduler
from prunecli.errors import ScheduleError
from prunecli.quantization.clipping import ALPHA_GAUSS, ALPHA_LAPLACE, ClipSettings, saturation
from prunecli.quantization.fakequant import (
    DorefaWeight,
    LsqQuant,
    PactActivation,
    SignQuant,
    WrpnWeight,
)
from prunecli.quantization.linear import asymmetric_params, symmetric_params, to_torch_convention
from prunecli.quantization.quantizers import DorefaQuantizer, PostTrainLinearQuantizer, QuantizerError
from prunecli.quantization.spec import QuantPlan
from prunecli.quantization.stats import check_stats_cover, collect_stats, read_stats, write_stats
from prunecli.schedule import load_schedule

STATS = "quantization/post_train_quant/stats/resnet18_quant_stats.yaml"


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


# ---------------------------------------------------------------- linear formulas


def test_symmetric_scale_by_hand() -> None:
    # 8 bits, saturation 2: n = (2**8 - 1) / 2 = 127.5 steps a side -> scale 63.75, zero point 0
    scale, zp = symmetric_params(8, 2.0)
    assert float(scale) == pytest.approx(63.75) and float(zp) == 0
    s, z = to_torch_convention(scale, zp)
    assert float(s) == pytest.approx(2 / 127.5) and float(z) == 0


def test_asymmetric_scale_and_zero_point_by_hand() -> None:
    # [-1, 3] on 4 bits: 15 steps over 4 -> scale 3.75; zero point round(3.75 * -1) = -4
    scale, zp = asymmetric_params(4, -1.0, 3.0)
    assert float(scale) == pytest.approx(3.75) and float(zp) == -4
    # signed: shifted by 2**3
    _, zp_signed = asymmetric_params(4, -1.0, 3.0, signed=True)
    assert float(zp_signed) == 4
    # a range without zero is widened to hold it: [2, 6] -> [0, 6]
    scale, zp = asymmetric_params(8, 2.0, 6.0)
    assert float(scale) == pytest.approx(255 / 6) and float(zp) == 0


# ---------------------------------------------------------------- clip modes vs numpy


@pytest.fixture
def acts() -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(16, 8, generator=g) * 2 + 0.5
    return t, t.numpy().astype(np.float64)


def test_clip_none_and_avg(acts) -> None:
    t, a = acts
    s = ClipSettings("ASYMMETRIC_UNSIGNED", 8)
    lo, hi = saturation("NONE", s, tensor=t)
    assert (float(lo), float(hi)) == pytest.approx((a.min(), a.max()))
    lo, hi = saturation("AVG", s, tensor=t)
    assert (float(lo), float(hi)) == pytest.approx((a.min(axis=1).mean(), a.max(axis=1).mean()), rel=1e-5)


def test_clip_n_std(acts) -> None:
    t, a = acts
    lo, hi = saturation("N_STD", ClipSettings("ASYMMETRIC_UNSIGNED", 8, n_stds=1.5), tensor=t)
    mean, std = a.mean(), a.std(ddof=1)
    assert float(lo) == pytest.approx(max(a.min(), mean - 1.5 * std), rel=1e-5)
    assert float(hi) == pytest.approx(min(a.max(), mean + 1.5 * std), rel=1e-5)


def test_clip_gauss_and_laplace_use_the_aciq_constants(acts) -> None:
    t, a = acts
    mean, std, b = a.mean(), a.std(ddof=1), np.abs(a - a.mean()).mean()
    # symmetric: +-(|mean| + k * spread); Banner et al.'s table gives 2.55 (Gauss) and 5.03 (Laplace) at 4 bits
    assert ALPHA_GAUSS[4] == 2.55 and ALPHA_LAPLACE[4] == 5.03
    lo, hi = saturation("GAUSS", ClipSettings("SYMMETRIC", 4), tensor=t)
    assert float(hi) == pytest.approx(abs(mean) + 2.55 * std, rel=1e-5) and float(lo) == -float(hi)
    lo, hi = saturation("LAPLACE", ClipSettings("SYMMETRIC", 4), tensor=t)
    assert float(hi) == pytest.approx(abs(mean) + 5.03 * b, rel=1e-5)
    # asymmetric: from max(avg_min, mean - alpha), width 2 alpha
    lo, hi = saturation("LAPLACE", ClipSettings("ASYMMETRIC_UNSIGNED", 4), tensor=t)
    alpha = 5.03 * b
    expect_lo = max(a.min(axis=1).mean(), mean - alpha)
    assert (float(lo), float(hi)) == pytest.approx((expect_lo, expect_lo + 2 * alpha), rel=1e-5)


# ---------------------------------------------------------------- quantization-aware transforms


def test_dorefa_weights_follow_the_paper_formula() -> None:
    w = torch.tensor([[-2.0, -0.3, 0.0, 0.4, 1.5]])
    out = DorefaWeight(2)(w)
    t = np.tanh(w.numpy().astype(np.float64))
    x = t / (2 * np.abs(t).max()) + 0.5
    expect = 2 * (np.round(x * 3) / 3) - 1  # quantize_k on [0, 1] with 2**2 - 1 steps
    assert out.numpy() == pytest.approx(expect, abs=1e-6)
    # one bit: sign(w) * mean|w|
    assert DorefaWeight(1)(w).numpy() == pytest.approx(np.where(w.numpy() >= 0, 1, -1) * np.abs(w.numpy()).mean())


def test_pact_clip_is_learned_with_the_papers_gradient() -> None:
    op = PactActivation(4, init_clip_val=2.0)
    x = torch.tensor([-1.0, 0.5, 1.0, 3.0, 5.0], requires_grad=True)
    y = op(x)
    # forward: clamp(x, 0, alpha) on 15 steps of alpha / 15
    assert y.detach().numpy() == pytest.approx(np.round(np.clip(x.detach().numpy(), 0, 2) * 7.5) / 7.5)
    y.sum().backward()
    # d/d alpha = number of inputs at or above alpha; d/dx = 1 strictly inside (0, alpha)
    assert float(op.clip_val.grad) == 2.0
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_wrpn_clamps_then_rounds_symmetrically() -> None:
    w = torch.tensor([-3.0, -0.4, 0.1, 0.77, 2.0])
    # 3 bits, saturation 1: scale (2**3 - 1) / 2 = 3.5, integers clamped to [-4, 3]
    expect = np.clip(np.round(np.clip(w.numpy(), -1, 1) * 3.5), -4, 3) / 3.5
    assert WrpnWeight(3)(w).numpy() == pytest.approx(expect)


def test_bnn_sign_and_its_clipped_straight_through_gradient() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = SignQuant()(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_lsq_step_gradient() -> None:
    op = LsqQuant(3, signed=True)  # Qn = 4, Qp = 3
    x = torch.tensor([-10.0, -0.26, 0.1, 0.6, 10.0])
    op(x)  # initialises the step
    with torch.no_grad():
        op.step.fill_(0.5)
    op.step.grad = None
    y = op(x)
    v = x.numpy() / 0.5
    assert y.detach().numpy() == pytest.approx(np.round(np.clip(v, -4, 3)) * 0.5)
    y.sum().backward()
    inside = (v > -4) & (v < 3)
    per_element = np.where(inside, np.round(v) - v, np.where(v <= -4, -4, 3))
    g = 1 / math.sqrt(x.numel() * 3)
    assert float(op.step.grad) == pytest.approx(per_element.sum() * g, rel=1e-5)


# ---------------------------------------------------------------- quantizers, plan, masks


def test_dorefa_quantizer_keeps_names_masks_and_exports_the_plan() -> None:
    model = Tiny()
    names = [n for n, _ in model.named_parameters()]
    mask = (torch.rand_like(model.conv.weight) > 0.5).float()
    q = DorefaQuantizer(model, bits_activations=4, bits_weights=3, overrides={"fc": {"bits_weights": None}})
    q.prepare(mask_of=lambda name: mask if name == "conv.weight" else None)
    assert [n for n, _ in model.named_parameters()] == names  # nothing renamed
    x = torch.randn(2, 1, 4, 4)
    model(x).sum().backward()
    assert model.conv.weight.grad is not None  # straight through to the float weight
    seen = q.layers[0].quantized_weight().detach()
    assert bool((seen[mask == 0] == 0).all())
    plan = q.finalize()
    assert set(plan.layers) == {"conv", "relu"}
    w = plan.layers["conv"].weight
    assert w.bits == 3 and not w.integral  # DoReFa's half-integer zero point
    eff = model.conv.weight.detach()
    regrid = torch.where(eff == 0, torch.zeros_like(eff), w.dequantize(w.quantize(eff)))
    assert torch.allclose(regrid, seen, atol=1e-6)
    assert plan.layers["relu"].output.scale.item() == pytest.approx(1 / 15)
    restored = QuantPlan.from_dict(plan.to_dict())
    assert restored.bits_of("conv") == 3 and restored.bits_of("fc") is None


def test_override_matching_nothing_is_refused_with_the_closest_names() -> None:
    with pytest.raises(QuantizerError, match="'cnv' matches no module.*conv"):
        DorefaQuantizer(Tiny(), bits_weights=4, overrides={"cnv": {"bits_weights": 8}})


# ---------------------------------------------------------------- statistics files


def test_collected_stats_match_numpy_and_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    batches = [torch.randn(4, 1, 4, 4) for _ in range(3)]
    stats = collect_stats(model, batches)
    with torch.no_grad():
        outs = [model.conv(b).numpy().astype(np.float64) for b in batches]
    rec = stats["conv"]["output"]
    allv = np.concatenate([o.ravel() for o in outs])
    assert rec["min"] == pytest.approx(allv.min()) and rec["max"] == pytest.approx(allv.max())
    assert rec["mean"] == pytest.approx(allv.mean()) and rec["std"] == pytest.approx(allv.std(ddof=1), rel=1e-6)
    assert rec["b"] == pytest.approx(np.abs(allv - allv.mean()).mean(), rel=1e-6)
    avg_min = np.mean([o.reshape(4, -1).min(axis=1).mean() for o in outs])
    assert rec["avg_min"] == pytest.approx(avg_min)
    path = tmp_path / "stats.yaml"
    write_stats(path, stats)
    assert read_stats(path)["conv"]["inputs"][0]["max"] == pytest.approx(stats["conv"]["inputs"][0]["max"])


def test_written_stats_have_the_structure_of_distillers_files(examples_dir: str, tmp_path: Path) -> None:
    distiller = yaml.safe_load((Path(examples_dir) / STATS).read_text())
    model = Tiny()
    path = tmp_path / "s.yaml"
    write_stats(path, collect_stats(model, [torch.randn(2, 1, 4, 4)]))
    ours = yaml.safe_load(path.read_text())
    theirs = distiller["conv1"]
    assert set(ours["conv"]) == set(theirs)
    assert set(ours["conv"]["inputs"]) == set(theirs["inputs"]) == {0}
    assert set(ours["conv"]["output"]) == set(theirs["output"])


def test_stats_file_for_another_model_names_the_closest_names(examples_dir: str) -> None:
    stats = read_stats(Path(examples_dir) / STATS)
    with pytest.raises(QuantizerError, match=r"layer1\.0\.conv9 \(closest in the file: layer1\.0\.conv"):
        check_stats_cover(stats, ["conv1", "layer1.0.conv9"], source="resnet18_quant_stats.yaml")


class Stem(nn.Module):
    """Named like the first and last layers of resnet18, whose statistics Distiller's file holds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.fc = nn.Linear(512, 1000)


def test_ptq_from_a_stats_file_uses_its_ranges(examples_dir: str) -> None:
    model = Stem()
    q = PostTrainLinearQuantizer(
        model, mode="ASYMMETRIC_UNSIGNED", clip_acts="AVG", model_activation_stats=str(Path(examples_dir) / STATS)
    )
    q.prepare()
    plan = q.export()
    rec = read_stats(Path(examples_dir) / STATS)["conv1"]["output"]
    scale, zp = asymmetric_params(8, rec["avg_min"], rec["avg_max"])
    assert plan.layers["conv1"].output.scale.item() == pytest.approx(1 / float(scale))
    assert plan.layers["conv1"].output.zero_point.item() == -float(zp)
    q.detach()


# ---------------------------------------------------------------- bad input, located


def _schedule_error(tmp_path: Path, text: str, model: nn.Module | None = None) -> ScheduleError:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        schedule = load_schedule(path)
        model = model or Tiny()
        build_scheduler(schedule, model, torch.optim.SGD(model.parameters(), lr=0.1))
    return info.value


def test_unknown_quantizer_suggests_the_name(tmp_path: Path) -> None:
    err = _schedule_error(tmp_path, "quantizers:\n  q:\n    class: DorefaQuantiser\npolicies: []\n")
    text = str(err)
    assert "did you mean DorefaQuantizer?" in text and "s.yaml:3:12" in text


def test_bits_outside_1_to_32_are_refused_at_their_line(tmp_path: Path) -> None:
    err = _schedule_error(
        tmp_path, "quantizers:\n  q:\n    class: DorefaQuantizer\n    bits_weights: 33\npolicies: []\n"
    )
    assert "s.yaml:4:19" in str(err) and "1..32" in str(err)


def test_override_matching_nothing_is_located_in_the_schedule(tmp_path: Path) -> None:
    text = (
        "quantizers:\n  q:\n    class: DorefaQuantizer\n    bits_weights: 4\n    overrides:\n"
        "      layer9.*:\n        bits_weights: null\n"
        "policies:\n  - quantizer:\n      instance_name: q\n    starting_epoch: 0\n    ending_epoch: 2\n    frequency: 1\n"
    )
    model = Tiny()
    before = [n for n, _ in model.named_parameters()]
    err = _schedule_error(tmp_path, text, model)
    assert "s.yaml:6:7" in str(err) and "matches no module" in str(err)
    assert not model.conv._forward_pre_hooks and [n for n, _ in model.named_parameters()] == before


def test_missing_stats_file_is_refused(tmp_path: Path) -> None:
    err = _schedule_error(
        tmp_path,
        "quantizers:\n  q:\n    class: PostTrainLinearQuantizer\n    model_activation_stats: nowhere.yaml\n",
    )
    assert "s.yaml:4:29" in str(err) and "not found" in str(err)


# ---------------------------------------------------------------- NNI presets


def test_nni_naive_rounds_weights_by_max_over_127() -> None:
    from prunecli.quantization.nni import quantize

    model = Tiny()
    w = model.conv.weight.detach().clone()
    q = quantize(model, [{"quant_types": ["weight"], "quant_bits": 8, "op_types": ["Conv2d"]}], "Naive")
    step = float(w.abs().max()) / 127
    expect = np.round(w.numpy() / step) * step
    assert q.layers[0].quantized_weight().detach().numpy() == pytest.approx(expect, abs=1e-7)
    assert [layer.name for layer in q.layers] == ["conv"]  # Linear not selected


def test_nni_config_list_last_entry_wins_and_exclude() -> None:
    from prunecli.quantization.nni import quantize

    config = [
        {"quant_types": ["weight", "output"], "quant_bits": {"weight": 4, "output": 8}, "op_types": ["default"]},
        {"quant_types": ["weight"], "quant_bits": 2, "op_names": ["fc"]},
        {"exclude": True, "op_names": ["conv"]},
    ]
    q = quantize(Tiny(), config, "QAT")
    plan = q.export()
    assert set(plan.layers) == {"fc"}
    assert plan.layers["fc"].weight.bits == 2 and plan.layers["fc"].output is None


def test_nni_bnn_signs_weights_and_outputs() -> None:
    from prunecli.quantization.nni import quantize

    model = Tiny()
    quantize(model, [{"quant_types": ["weight", "output"], "quant_bits": 1, "op_names": ["conv"]}], "BNN")
    out = model.conv(torch.randn(2, 1, 4, 4))
    assert set(out.unique().tolist()) <= {-1.0, 1.0}


def test_nni_entry_naming_a_missing_module_is_located(tmp_path: Path) -> None:
    text = (
        "quantizers:\n  q:\n    class: NNIQuantizer\n    method: LSQ\n    config_list:\n"
        "      - quant_types: [weight]\n        quant_bits: 4\n        op_names: [conv, fc2]\n"
        "policies:\n  - quantizer:\n      instance_name: q\n    starting_epoch: 0\n    ending_epoch: 2\n    frequency: 1\n"
    )
    err = str(_schedule_error(tmp_path, text))
    assert "s.yaml:8:26" in err and "'fc2'" in err and "closest: fc" in err


def test_nni_method_that_cannot_round_outputs_is_refused() -> None:
    from prunecli.quantization.nni import quantize

    with pytest.raises(QuantizerError, match="DoReFa quantizer does not round output"):
        quantize(Tiny(), [{"quant_types": ["output"], "quant_bits": 4, "op_types": ["ReLU"]}], "DoReFa")


# ---------------------------------------------------------------- prunecli run


PACT_PRUNE_SCHEDULE = """\
version: 1
pruners:
  inner:
    class: L1RankedStructureParameterPruner_AGP
    initial_sparsity: 0.25
    final_sparsity: 0.5
    group_type: Filters
    weights: [layer1.0.conv1.weight]
quantizers:
  pact:
    class: PACTQuantizer
    bits_activations: 8
    bits_weights: 8
    act_clip_init_val: 4.0
    overrides:
      conv1: {bits_weights: null}
      fc: {bits_weights: null}
policies:
  - pruner: {instance_name: inner}
    starting_epoch: 0
    ending_epoch: 2
    frequency: 1
  - quantizer: {instance_name: pact}
    starting_epoch: 0
    ending_epoch: 3
    frequency: 1
"""


@pytest.mark.slow
def test_run_prunes_and_quantizes_then_writes_the_plan_and_int8(tmp_path: Path) -> None:
    from support.distributed import digits_args

    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.quantization.stored import stored_plan
    from prunecli.training import run_training
    from prunecli.training.config import merge_config

    schedule = tmp_path / "pq.yaml"
    schedule.write_text(PACT_PRUNE_SCHEDULE)
    config = merge_config(
        {"schedule": str(schedule), **digits_args(batch_size=16, epochs=3), "out_dir": str(tmp_path / "run")}
    )
    run_training(config)
    last = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    clips = [v for k, v in last["scheduler"]["policies"].items() if "quantizer" in k][0]["ops"]
    assert any(k.endswith(":output") and "clip_val" in v for k, v in clips.items())  # PACT's learned clips saved
    compact = load_checkpoint(tmp_path / "run" / "compact.pt")
    plan = stored_plan(compact)
    assert plan is not None and plan.bits_of("layer1.0.conv1") == 8 and plan.bits_of("conv1") is None
    # converted at the end of the run; DoReFa's half-integer zero points run through fake-quant
    model = load_model(tmp_path / "run" / "compact.pt")
    assert "layer1.0.conv1" in model.simulated
    # the masks survived quantization (rounded weights keep pruned filters at zero), so thinning
    # removed half of layer1.0.conv1's 8 filters
    assert model.graph_module.get_submodule("layer1.0.conv1").layer.weight.shape[0] == 4


def test_thinning_while_weights_are_rounded_is_refused_at_the_extension(tmp_path: Path) -> None:
    """DoReFa's max|tanh(w)| includes weights that read the channels thinning removes: an oracle by hand."""
    w = torch.tensor([[0.2, 3.0], [0.1, -0.4]])  # column 1 reads a channel that thinning removes
    before = DorefaWeight(2)(w)[:, :1]
    after = DorefaWeight(2)(w[:, :1])
    assert not torch.allclose(before, after)  # so the thinned model computes another function
    text = (
        "pruners:\n  p: {class: L1RankedStructureParameterPruner, group_type: Filters, desired_sparsity: 0.5,"
        " weights: [conv.weight]}\n"
        "extensions:\n  t: {class: FilterRemover, thinning_func_str: remove_filters, arch: resnet20_cifar,"
        " dataset: cifar10}\n"
        "quantizers:\n  q: {class: DorefaQuantizer, bits_weights: 4}\n"
        "policies:\n  - {pruner: {instance_name: p}, epochs: [0]}\n  - {extension: {instance_name: t}, epochs: [1]}\n"
        "  - {quantizer: {instance_name: q}, starting_epoch: 0, ending_epoch: 3, frequency: 1}\n"
    )
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        load_schedule(path)
    assert "s.yaml:9:5" in str(info.value) and "thins the model at epoch 1" in str(info.value)
    # post-training quantization after a thinned run is fine
    load_schedule("ok.yaml", text=text.replace("DorefaQuantizer, bits_weights: 4", "PostTrainLinearQuantizer").replace(
        "  - {quantizer: {instance_name: q}, starting_epoch: 0, ending_epoch: 3, frequency: 1}\n", ""))
