"""Int8 conversion of a model and its QuantPlan: values, outputs, packing, checkpoints, sizes.

Oracles: the plan's own formula applied by hand (tests/support/quantization.py), the float model,
bytes counted by hand, and bit patterns written out.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.quantization import fake, reference_digits, with_statistics
from torch import nn

from prunecli.checkpoint import build_checkpoint, load_model, save_checkpoint
from prunecli.checkpoint.compact import quantize_checkpoint
from prunecli.errors import PruneCliError
from prunecli.models import create_model
from prunecli.quantization.int8 import Int8Model, convert_to_int8, thin_plan
from prunecli.quantization.minmax import minmax_plan
from prunecli.quantization.packing import pack, unpack
from prunecli.quantization.spec import QuantPlan, TensorQuant
from prunecli.quantization.stored import PLAN_KEY, model_bytes, stored_plan


def _digits(seed: int = 0):
    torch.manual_seed(seed)
    model, spec = create_model("resnet_digits", dataset="digits")
    return with_statistics(model, seed), spec


def _batches(n: int = 3, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 1, 8, 8, generator=gen) for _ in range(n)]


def _with_bits(plan: QuantPlan, names: list[str], bits: int) -> QuantPlan:
    """The plan with ``names``' weights and activations re-ranged to ``bits`` (same min/max)."""
    out = QuantPlan()
    for name, layer in plan.layers.items():
        if name in names:
            w = layer.weight
            top = 2 ** (bits - 1) - 1
            scale = w.scale * (2 ** (w.bits - 1) - 1) / top
            layer = dataclasses.replace(layer, weight=TensorQuant(bits, True, scale, w.zero_point, w.axis))
        out.add(layer)
    return out


@pytest.fixture(scope="module")
def digits():
    model, spec = _digits()
    batches = _batches()
    plan = minmax_plan(model, batches, batches[0][:1])
    return model, spec, plan, batches


def _norm_after(name: str) -> str | None:
    """The BatchNorm that follows conv ``name`` in resnet_digits (None for fc)."""
    if name == "fc":
        return None
    if name.endswith("downsample.0"):
        return name[: -len("0")] + "1"
    return name.replace("conv", "bn")


def test_integer_weights_are_the_plans_codes_folded_with_the_batchnorm(digits):
    model, _, plan, batches = digits
    int8 = convert_to_int8(model, plan, batches[0][:1])
    assert len(int8.kernels) == 7 + 2  # 6 convolutions, 1 linear layer, 2 residual additions
    modules = dict(int8.graph_module.named_modules())
    for name, layer in plan.layers.items():
        if layer.weight is None:
            continue
        weight = model.get_submodule(name).weight.detach()
        tq = layer.weight
        q = torch.clamp(torch.round(weight / tq.scale.reshape(-1, *[1] * (weight.dim() - 1))), -128, 127)
        got = modules[name].weight()
        norm_name = _norm_after(name)
        if norm_name is None:  # not folded: the dequantized values are exactly the plan's
            assert torch.equal(got.int_repr().int(), q.int())
            assert torch.equal(got.dequantize(), fake(weight, tq).float())
            continue
        norm = model.get_submodule(norm_name)
        f = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach().double()
        flip = (f < 0).reshape(-1, 1, 1, 1)
        assert torch.equal(got.int_repr().int(), torch.where(flip, -1 - q, q).int()), name
        expected = fake(weight, tq) * f.reshape(-1, 1, 1, 1)
        torch.testing.assert_close(got.dequantize().double(), expected, rtol=1e-6, atol=1e-9)


def test_outputs_match_the_hand_made_reference(digits):
    model, _, plan, batches = digits
    int8 = convert_to_int8(model, plan, batches[0][:1])
    x = batches[1]
    with torch.no_grad():
        got = int8(x).to(torch.float64)
        ref = reference_digits(model, plan, x)
        dense = model(x).to(torch.float64)
    step = float(plan.layers["fc"].output.scale)
    # the same grid: kernels may differ by one code where accumulation rounds differently
    assert (got - ref).abs().max() <= step + 1e-9
    assert (got - ref).abs().mean() < 0.1 * step
    # and quantization really happened: the float model differs by more than that
    assert (dense - ref).abs().max() > step


def test_four_bit_layers_run_through_fake_quant_and_match_the_reference(digits):
    model, _, plan, batches = digits
    low = _with_bits(plan, ["layer1.0.conv1", "layer2.0.conv1"], 4)
    int8 = convert_to_int8(model, low, batches[0][:1])
    assert sorted(int8.simulated) == ["layer1.0.conv1", "layer2.0.conv1"]
    assert int8.codes["layer1.0.conv1"].packed
    # a fake-quant layer keeps its BatchNorm after it, as the quantizer simulated it
    assert {p.layer for p in int8.folded}.isdisjoint(int8.simulated)
    with torch.no_grad():
        got = int8(batches[2]).to(torch.float64)
        dense = model(batches[2]).to(torch.float64)
    # the two 4-bit layers change the function, but it stays the model's (within a few percent)
    assert (got - dense).abs().max() < 0.1 * dense.abs().max()


def test_a_half_integer_zero_point_keeps_the_layer_in_fake_quant(digits):
    model, _, plan, batches = digits
    w = plan.layers["fc"].weight
    half = TensorQuant(8, False, w.scale, torch.full_like(w.scale, 127.5, dtype=torch.float32), w.axis)
    odd = QuantPlan(dict(plan.layers))
    odd.add(dataclasses.replace(plan.layers["fc"], weight=half))
    int8 = convert_to_int8(model, odd, batches[0][:1])
    assert "fc" in int8.simulated
    expected = fake(model.fc.weight.detach(), half).float()
    assert torch.equal(int8.graph_module.get_submodule("fc").layer.weight.detach(), expected)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_pack_unpack_round_trip(bits: int, signed: bool):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if bits == 1 and signed:
        lo, hi = -1, 0
    codes = torch.randint(lo, hi + 1, (3, 5, 7), generator=torch.Generator().manual_seed(bits))
    stored = pack(codes, bits, signed)
    assert torch.equal(unpack(stored), codes.to(torch.int32))
    assert stored.nbytes == ((105 + 1) // 2 if bits <= 4 else 105)


def test_four_bit_codes_are_two_per_byte_low_nibble_first():
    stored = pack(torch.tensor([-8, 7, 0]), 4, True)
    # offsets from qmin -8: 0, 15, 8 -> bytes 0xF0 and 0x08 (the odd one padded with 0)
    assert stored.data.tolist() == [0xF0, 0x08]
    with pytest.raises(ValueError):
        pack(torch.tensor([8]), 4, True)


def test_checkpoint_reloads_with_weights_only_and_identical_outputs(digits, tmp_path):
    model, spec, plan, batches = digits
    low = _with_bits(plan, ["layer2.0.conv2"], 4)
    payload = build_checkpoint(state_dict=model.state_dict(), model=spec)
    converted = quantize_checkpoint(payload, model, batches[0][:1], low)
    path = tmp_path / "int8.pt"
    save_checkpoint(path, converted.payload)
    raw = torch.load(path, weights_only=True)
    assert "layer1.0.conv1.weight" not in raw["state_dict"]
    assert raw["extras"]["int8"]["codes"]["layer1.0.conv1"]["data"].dtype == torch.int8
    assert raw["extras"]["int8"]["codes"]["layer2.0.conv2"]["data"].dtype == torch.uint8
    reloaded = load_model(path)
    assert isinstance(reloaded, Int8Model)
    with torch.no_grad():
        for x in batches:
            assert torch.equal(reloaded(x), converted.model(x))


def test_model_bytes_equal_a_hand_count(tmp_path):
    torch.manual_seed(0)
    model = with_statistics(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 6 * 6, 10),
        )
    )
    x = torch.randn(8, 1, 8, 8)
    plan = minmax_plan(model, [x], x[:1])
    low = _with_bits(plan, ["0"], 4)
    payload = build_checkpoint(state_dict=model.state_dict())
    fp32 = 4 * (36 + 4 * 4 + 1440 + 10) + 8  # conv, BN (4 tensors), linear; num_batches_tracked int64
    assert model_bytes(payload) == fp32
    # per-channel weight ranges: float32 scale + int32 zero point per output channel (4 conv, 10
    # linear); activation ranges (scale + zero point): conv input and output, BatchNorm output,
    # linear input and output
    ranges = 4 * 8 + 10 * 8 + 5 * 8
    # 8 bits: the BatchNorm is folded (its tensors gone, a conv bias instead); one byte per weight
    converted = quantize_checkpoint(payload, model, x[:1], plan)
    assert model_bytes(converted.payload) == 4 * (4 + 10) + (36 + 1440) + ranges
    # 4-bit conv: fake-quant, BatchNorm kept after it (4 tensors + counter); 36 codes two per byte
    converted = quantize_checkpoint(payload, model, x[:1], low)
    assert model_bytes(converted.payload) == (4 * 4 * 4 + 8 + 4 * 10) + (36 // 2 + 1440) + ranges


def test_pruned_then_int8_slices_per_channel_ranges(digits):
    model, _, plan, batches = digits
    kept = [0, 2, 5]
    thinned = thin_plan(plan, {"conv1.weight": [(0, kept)], "layer1.0.conv1.weight": [(1, kept)]})
    assert torch.equal(thinned.layers["conv1"].weight.scale, plan.layers["conv1"].weight.scale[kept])
    assert torch.equal(
        thinned.layers["layer1.0.conv1"].weight.scale, plan.layers["layer1.0.conv1"].weight.scale
    )


def test_a_plan_for_another_model_is_refused(digits):
    model, _, plan, batches = digits
    bad = QuantPlan()
    bad.add(dataclasses.replace(plan.layers["fc"], name="classifier"))
    with pytest.raises(PruneCliError, match="classifier"):
        convert_to_int8(model, bad, batches[0][:1])


def test_stored_plan_reads_back(digits):
    *_, plan, _ = digits
    payload = build_checkpoint(state_dict={}, extras={PLAN_KEY: plan.to_dict()})
    again = stored_plan(payload)
    assert again is not None and sorted(again.layers) == sorted(plan.layers)


def test_a_planned_layer_without_an_int8_kernel_runs_through_fake_quant():
    from prunecli.quantization.minmax import activation_range
    from prunecli.quantization.spec import LayerQuant

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, 2), nn.ReLU()).eval()
    weight = TensorQuant(8, True, torch.tensor(0.01), torch.tensor(0))
    plan = QuantPlan()
    plan.add(
        LayerQuant("0", "test", weight=weight, input=activation_range(-3, 3), output=activation_range(-2, 2))
    )
    x = torch.randn(4, 2, 5, 5)
    int8 = convert_to_int8(model, plan, x[:1])
    assert int8.simulated == ["0"] and int8.kernels == []
    layer = plan.layers["0"]
    w = fake(model[0].weight.detach(), weight)
    y = torch.nn.functional.conv_transpose2d(fake(x, layer.input), w, model[0].bias.detach().double())
    expected = torch.relu(fake(y, layer.output))
    with torch.no_grad():
        torch.testing.assert_close(int8(x).double(), expected, rtol=0, atol=1e-6)


def test_a_planned_output_without_weights_is_fake_quantized():
    from prunecli.quantization.minmax import activation_range
    from prunecli.quantization.spec import LayerQuant

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    weight = TensorQuant(4, True, torch.tensor(0.05), torch.tensor(0))
    relu = activation_range(0.0, 1.0, bits=4)  # a clipped 4-bit activation, as DoReFa's
    plan = QuantPlan()
    plan.add(LayerQuant("0", "test", weight=weight))
    plan.add(LayerQuant("1", "test", output=relu))
    x = torch.randn(3, 1, 6, 6)
    int8 = convert_to_int8(model, plan, x[:1])
    assert sorted(int8.simulated) == ["0", "1"]
    y = torch.nn.functional.conv2d(x.double(), fake(model[0].weight.detach(), weight), model[0].bias.double())
    with torch.no_grad():
        torch.testing.assert_close(int8(x).double(), fake(torch.relu(y), relu), rtol=0, atol=1e-6)


def test_the_plan_of_distillers_post_training_quantizer_converts_close_to_its_simulation():
    from prunecli.quantization.quantizers import PostTrainLinearQuantizer
    from prunecli.quantization.stats import collect_stats

    model, _ = _digits(seed=3)
    batches = _batches(4, seed=4)
    stats = collect_stats(model, batches)
    quantizer = PostTrainLinearQuantizer(
        model, mode="ASYMMETRIC_UNSIGNED", per_channel_wts=True, model_activation_stats=stats
    )
    quantizer.prepare()
    with torch.no_grad():
        simulated = model(batches[0])
    plan = quantizer.finalize()  # the model now holds the effective weights
    int8 = convert_to_int8(model, plan, batches[0][:1])
    assert len(int8.kernels) == 9  # 7 layers, 2 residual additions (they have statistics)
    with torch.no_grad():
        got = int8(batches[0])
    step = float(plan.layers["fc"].output.scale)
    # the simulation rounds each convolution's output before its BatchNorm, the int8 model after
    # the folded pair: the same function up to a few output steps
    assert (got - simulated).abs().max() <= 6 * step
    assert (got.argmax(1) == simulated.argmax(1)).float().mean() >= 0.9
