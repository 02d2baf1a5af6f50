import math

import pytest
import torch
from support.compression import TinyCNN

from prunecli.compression.masker import MaskSet
from prunecli.pruners import PRUNERS


def _meta(model, epoch=0, start=0, end=10, freq=1):
    return {
        "current_epoch": epoch,
        "starting_epoch": start,
        "ending_epoch": end,
        "frequency": freq,
        "model": model,
    }


def _run(pruner, model, meta):
    maskset = MaskSet(model)
    for name, param in model.named_parameters():
        pruner.set_param_mask(param, name, maskset, meta)
    return maskset


def test_magnitude_pruner_wildcard_and_override():
    model = TinyCNN()
    pruner = PRUNERS["MagnitudeParameterPruner"]("m", thresholds={"*": 0.05, "fc.weight": 0.2})
    maskset = _run(pruner, model, _meta(model))
    assert torch.equal(maskset["fc.weight"].mask, (model.fc.weight.abs() > 0.2).float())
    assert torch.equal(maskset["conv1.weight"].mask, (model.conv1.weight.abs() > 0.05).float())
    with pytest.raises(ValueError):
        PRUNERS["MagnitudeParameterPruner"]("m", thresholds={"fc.weight": 0.2})


def test_sensitivity_pruner_freezes_std_at_first_call():
    model = TinyCNN()
    pruner = PRUNERS["SensitivityPruner"]("s", sensitivities={"conv2.weight": 0.7})
    std0 = torch.std(model.conv2.weight).item()
    maskset = _run(pruner, model, _meta(model))
    assert torch.equal(maskset["conv2.weight"].mask, (model.conv2.weight.abs() > 0.7 * std0).float())
    assert maskset["conv1.weight"].mask is None
    with torch.no_grad():
        model.conv2.weight.mul_(3.0)
    maskset = _run(pruner, model, _meta(model, 1))
    assert torch.equal(maskset["conv2.weight"].mask, (model.conv2.weight.abs() > 0.7 * std0).float())
    assert pruner.state_dict() == {"stddev": {"conv2.weight": pytest.approx(std0)}}


def test_sparsity_level_pruner():
    model = TinyCNN()
    pruner = PRUNERS["SparsityLevelParameterPruner"]("l", levels={"conv2.weight": 0.3})
    maskset = _run(pruner, model, _meta(model))
    assert int((maskset["conv2.weight"].mask == 0).sum()) == int(0.3 * model.conv2.weight.numel())
    assert maskset["fc.weight"].mask is None


def test_splicing_pruner_surgery_function():
    model = TinyCNN()
    w = model.fc.weight
    pruner = PRUNERS["SplicingPruner"](
        "sp",
        sensitivities={"fc.weight": 0.5},
        low_thresh_mult=0.9,
        hi_thresh_mult=1.1,
        sensitivity_multiplier=0.5,
    )
    mean, std = w.abs().mean().item(), torch.std(w.abs()).item()
    maskset = MaskSet(model)
    pruner.set_param_mask(w, "fc.weight", maskset, _meta(model, epoch=2, start=0))
    s = 0.5 * ((2 - 0) * 0.5 + 1)
    low, high = (mean + std * s) * 0.9, (mean + std * s) * 1.1
    mask = maskset["fc.weight"].mask
    assert (mask[w.abs() < low] == 0).all()
    assert (mask[w.abs() >= high] == 1).all()
    between = (w.abs() >= low) & (w.abs() < high)
    assert (mask[between] == 1).all()  # previous mask (all ones) kept in the band
    # a weight in the band keeps a previous 0
    maskset["fc.weight"].mask = torch.zeros_like(w)
    pruner.set_param_mask(w, "fc.weight", maskset, _meta(model, epoch=2, start=0))
    assert (maskset["fc.weight"].mask[between] == 0).all()


def _threshold(pruner, meta) -> float:
    """The threshold the pruner's schedule asks for at ``meta``'s epoch."""
    return pruner.schedule.amount("fc.weight", meta["model"].fc.weight, meta)


def test_baidu_rnn_threshold_formula():
    model = TinyCNN()
    pruner = PRUNERS["BaiduRNNPruner"](
        "b", q=0.2, ramp_epoch_offset=3, ramp_slope_mult=2, weights=["fc.weight"]
    )
    start, end, freq = 4, 21, 3
    ramp = 3 + start
    start_slope = (2 * 0.2 * freq) / (2 * (ramp - start) + 3 * (end - ramp))
    expected_before = start_slope * (4 - start + 1) / freq
    assert math.isclose(_threshold(pruner, _meta(model, 4, start, end, freq)), expected_before)
    expected_after = (start_slope * (ramp - start + 1) + 2 * start_slope * (10 - ramp + 1)) / freq
    assert math.isclose(_threshold(pruner, _meta(model, 10, start, end, freq)), expected_after)
    maskset = _run(pruner, model, _meta(model, 10, start, end, freq))
    assert torch.equal(maskset["fc.weight"].mask, (model.fc.weight.abs() > expected_after).float())


def test_agp_element_pruner_requires_growth():
    with pytest.raises(ValueError):
        PRUNERS["AutomatedGradualPruner"](
            "a", initial_sparsity=0.5, final_sparsity=0.5, weights=["fc.weight"]
        )


def test_structure_parameter_pruner():
    model = TinyCNN()
    with torch.no_grad():
        model.conv2.weight[3] *= 1e-4
    pruner = PRUNERS["StructureParameterPruner"](
        "sp", reg_regims={"conv2.weight": [0.001, "Filters"]}, threshold_criteria="Max"
    )
    maskset = _run(pruner, model, _meta(model))
    mask = maskset["conv2.weight"].mask
    assert mask[3].sum() == 0 and int((mask.view(16, -1).sum(1) == 0).sum()) == 1
    with pytest.raises(ValueError):
        PRUNERS["StructureParameterPruner"](
            "x", reg_regims={"conv2.weight": [0.1, "Filters"]}, threshold_criteria="L3"
        )


def test_set_param_mask_without_meta():
    """Distiller's API shape ``set_param_mask(param, name, zeros_mask_dict, meta=None)``: one-shot
    pruners work (the model comes from the pruner); epoch-dependent ones say what they need."""
    model = TinyCNN()
    maskset = MaskSet(model)
    ranked = PRUNERS["L1RankedStructureParameterPruner"](
        "r", group_type="Filters", desired_sparsity=0.5, weights=["conv2.weight"]
    )
    ranked.set_param_mask(model.conv2.weight, "conv2.weight", maskset, meta=None)
    norms = model.conv2.weight.detach().abs().sum(dim=(1, 2, 3))
    kept = norms > norms.sort().values[7]  # 16 filters, floor(0.5 * 16) = 8 lowest L1 norms go
    assert torch.equal(maskset["conv2.weight"].mask[:, 0, 0, 0], kept.float())
    level = PRUNERS["SparsityLevelParameterPruner"]("l", levels={"fc.weight": 0.5})
    level.set_param_mask(model.fc.weight, "fc.weight", maskset)
    assert int((maskset["fc.weight"].mask == 0).sum()) == model.fc.weight.numel() // 2
    agp = PRUNERS["AutomatedGradualPruner"](
        "a", initial_sparsity=0.1, final_sparsity=0.5, weights=["fc.weight"]
    )
    with pytest.raises(ValueError, match="depends on the epoch.*current_epoch"):
        agp.set_param_mask(model.fc.weight, "fc.weight", maskset, None)
    agp.set_param_mask(model.fc.weight, "fc.weight", maskset, _meta(model, epoch=0, end=3, freq=1))
    target = 0.5 + (0.1 - 0.5) * (1 - 0 / 2) ** 3  # AGP at its first epoch, in float as Distiller computes it
    assert int((maskset["fc.weight"].mask == 0).sum()) == int(target * model.fc.weight.numel())
