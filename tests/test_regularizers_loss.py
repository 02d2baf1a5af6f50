import math

import pytest
import torch
from support.compression import TinyCNN, make_schedule, train

from prunecli.compression import build_scheduler
from prunecli.compression.masker import MaskSet
from prunecli.regularizers import EPSILON, REGULARIZERS


def _loss(cls, regims, tensor, **kw):
    reg = REGULARIZERS[cls]("r", reg_regims={"w": regims}, **kw)
    return reg.loss(tensor, "w").item()


def test_l1_loss_by_hand():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    assert _loss("L1Regularizer", 0.1, w) == pytest.approx(0.1 * 3.5)


def _l2(values):
    return math.sqrt(sum(v * v for v in values))


W4 = torch.arange(1.0, 25.0).view(2, 3, 2, 2) * torch.tensor([1.0, -1.0]).repeat(12).view(2, 3, 2, 2)
W2 = torch.tensor([[3.0, 4.0, 0.0], [0.0, -1.0, 1.0]])


def test_group_lasso_2d_kernels():
    flat = W4.tolist()
    expected = sum(_l2([v for row in flat[f][c] for v in row]) for f in range(2) for c in range(3))
    assert _loss("GroupLassoRegularizer", [0.5, "2D"], W4) == pytest.approx(0.5 * expected, rel=1e-6)


def test_group_lasso_filters_and_3d():
    expected = sum(_l2(W4[f].flatten().tolist()) for f in range(2))
    for group in ("Filters", "3D"):
        assert _loss("GroupLassoRegularizer", [0.2, group], W4) == pytest.approx(0.2 * expected, rel=1e-6)


def test_group_lasso_channels_has_epsilon():
    expected = sum(math.sqrt(sum(v * v for v in W4[:, c].flatten().tolist()) + EPSILON) for c in range(3))
    assert _loss("GroupLassoRegularizer", [0.3, "Channels"], W4) == pytest.approx(0.3 * expected, rel=1e-6)


def test_group_lasso_4d_and_combinations():
    layer = _l2(W4.flatten().tolist())
    channels = sum(math.sqrt(sum(v * v for v in W4[:, c].flatten().tolist()) + EPSILON) for c in range(3))
    assert _loss("GroupLassoRegularizer", [0.1, "4D"], W4) == pytest.approx(0.1 * layer, rel=1e-6)
    for group in ("Channels+4D", "4D+Channels"):
        assert _loss("GroupLassoRegularizer", [0.1, group], W4) == pytest.approx(
            0.1 * (layer + channels), rel=1e-6
        )


def test_group_lasso_rows_cols():
    rows = _l2([3, 4, 0]) + _l2([0, -1, 1])
    cols = _l2([3, 0]) + _l2([4, -1]) + _l2([0, 1])
    assert _loss("GroupLassoRegularizer", [1.0, "Rows"], W2) == pytest.approx(rows)
    assert _loss("GroupLassoRegularizer", [1.0, "Cols"], W2) == pytest.approx(cols)
    for group in ("Rows+Cols", "Cols+Rows"):
        assert _loss("GroupLassoRegularizer", [2.0, group], W2) == pytest.approx(2.0 * (rows + cols))


def test_group_variance():
    norms = [math.sqrt(sum(v * v for v in W4[:, c].flatten().tolist()) + EPSILON) for c in range(3)]
    mean = sum(norms) / 3
    var = sum((n - mean) ** 2 for n in norms) / 2  # unbiased, as torch.var
    assert _loss("GroupVarianceRegularizer", [0.7, "Channels"], W4) == pytest.approx(0.7 / var, rel=1e-5)
    with pytest.raises(ValueError):
        REGULARIZERS["GroupVarianceRegularizer"]("r", reg_regims={"w": [0.1, "Filters"]})


def test_unknown_group_and_bad_regims_rejected():
    with pytest.raises(ValueError):
        REGULARIZERS["GroupLassoRegularizer"]("r", reg_regims={"w": [0.1, "Diagonal"]})
    with pytest.raises(ValueError):
        REGULARIZERS["GroupLassoRegularizer"]("r", reg_regims={"w": 0.1})
    with pytest.raises(ValueError):
        REGULARIZERS["GroupLassoRegularizer"]("r", reg_regims={"w": [0.1, "Rows"]}, threshold_criteria="L7")


def test_l1_threshold_mask_is_one_shot():
    model = TinyCNN()
    reg = REGULARIZERS["L1Regularizer"]("r", reg_regims={"fc.weight": 0.05}, threshold_criteria="Max")
    maskset = MaskSet(model)
    reg.threshold(model.fc.weight, "fc.weight", maskset)
    expected = (model.fc.weight.abs() > 0.05).float()
    assert torch.equal(maskset["fc.weight"].mask, expected)
    maskset["fc.weight"].apply_mask(model.fc.weight)
    assert maskset["fc.weight"].mask is None  # a regularization mask is applied once
    assert (model.fc.weight[expected == 0] == 0).all()


def test_group_lasso_threshold_channels():
    model = TinyCNN()
    with torch.no_grad():
        model.conv2.weight[:, 2] *= 1e-5
    reg = REGULARIZERS["GroupLassoRegularizer"](
        "r", reg_regims={"conv2.weight": [1e-3, "Channels"]}, threshold_criteria="Mean_Abs"
    )
    maskset = MaskSet(model)
    reg.threshold(model.conv2.weight, "conv2.weight", maskset)
    mask = maskset["conv2.weight"].mask
    assert mask[:, 2].sum() == 0 and mask[:, [0, 1, 3, 4, 5, 6, 7]].all()


def test_regularization_policy_keep_mask_makes_it_permanent():
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        model.conv2.weight[5] *= 1e-5
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # tiny steps: filter 5 stays under the threshold
    schedule = make_schedule(
        {
            "regularizers": {
                "g": (
                    "GroupLassoRegularizer",
                    {"reg_regims": {"conv2.weight": [1e-3, "Filters"]}, "threshold_criteria": "Max"},
                )
            }
        },
        [("regularizer", "g", {"starting_epoch": 0, "ending_epoch": 2, "frequency": 1}, {"keep_mask": True})],
    )
    sched = build_scheduler(schedule, model, opt)
    train(sched, model, opt, epochs=2, steps=2)
    masker = sched.zeros_mask_dict["conv2.weight"]
    assert masker.mask is not None and not masker.is_regularization_mask
    assert masker.mask[5].sum() == 0
    train(sched, model, opt, epochs=3, start_epoch=2)
    assert model.conv2.weight[5].abs().sum() == 0
