import pytest
import torch
from support.compression import ResBlockNet, make_schedule, train

from prunecli.compression import build_scheduler


def _dead(t, dim):
    return t.detach().movedim(dim, 0).reshape(t.size(dim), -1).abs().sum(1) == 0


def _run(group_type, weights, sparsity=0.5, seed=0):
    torch.manual_seed(seed)
    model = ResBlockNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": group_type, "desired_sparsity": sparsity, "weights": weights},
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, None)],
    )
    sched = build_scheduler(schedule, model, opt, example_input=torch.randn(1, 3, 8, 8), auto_dependency=True)
    train(sched, model, opt, epochs=1, steps=2)
    return model, sched


def test_filters_of_residual_add_pruned_jointly():
    model, sched = _run("Filters", ["a.weight"])  # b.weight is coupled through the add
    dead_a = _dead(model.a.weight, 0)
    assert int(dead_a.sum()) == 4
    for tensor in (model.b.weight, model.a.bias, model.b.bias):
        assert torch.equal(_dead(tensor.view(-1, 1) if tensor.dim() == 1 else tensor, 0), dead_a)
    assert sched.masks["fc.weight"] is None  # consumers are left to thinning


def test_joint_ranking_sums_normalised_member_norms():
    torch.manual_seed(1)
    model = ResBlockNet()
    with torch.no_grad():
        model.a.weight[:4] *= 0.01  # weak in a, strong in b: the joint score decides
        model.b.weight[4:] *= 0.01
        model.b.weight[6:] *= 0.01
    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": "Filters", "desired_sparsity": 0.25, "weights": ["a.weight", "b.weight"]},
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, None)],
    )
    sched = build_scheduler(
        schedule, model, None, example_input=torch.randn(1, 3, 8, 8), auto_dependency=True
    )
    a = model.a.weight.detach().reshape(8, -1).abs().mean(1)
    b = model.b.weight.detach().reshape(8, -1).abs().mean(1)
    score = a / a.mean() + b / b.mean()
    expected = torch.topk(score, 2, largest=False).indices.sort().values.tolist()
    sched.on_epoch_begin(0)
    dead = (sched.masks["a.weight"].reshape(8, -1).sum(1) == 0).nonzero().flatten().tolist()
    assert dead == expected
    assert torch.equal(
        sched.masks["a.weight"].reshape(8, -1)[:, 0], sched.masks["b.weight"].reshape(8, -1)[:, 0]
    )


def test_channels_pruned_jointly_across_consumers():
    model, sched = _run("Channels", ["a.weight"], sparsity=0.25)
    dead_a = _dead(model.a.weight, 1)
    assert int(dead_a.sum()) == 2
    assert torch.equal(_dead(model.b.weight, 1), dead_a)


def test_auto_dependency_needs_an_input():
    from prunecli.errors import ScheduleError

    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["a.weight"]},
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, None)],
    )
    with pytest.raises(ScheduleError, match="example_input"):
        build_scheduler(schedule, ResBlockNet(), None, auto_dependency=True)


def test_coupled_filters_thin_away_with_the_real_thinning():
    torch.manual_seed(0)
    model = ResBlockNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": "Filters", "desired_sparsity": 0.5, "weights": ["a.weight"]},
                )
            },
            "extensions": {"t": ("FilterRemover", {"thinning_func_str": "remove_filters", "arch": "m", "dataset": "d"})},
        },
        [("pruner", "p", {"epochs": [0]}, None), ("extension", "t", {"epochs": [1]}, None)],
    )
    sched = build_scheduler(schedule, model, opt, example_input=torch.randn(1, 3, 8, 8), auto_dependency=True)
    train(sched, model, opt, epochs=1, steps=2)
    train(sched, model, opt, epochs=3, start_epoch=1, steps=2)
    assert model.a.weight.shape[0] == 4 and model.b.weight.shape[0] == 4 and model.fc.weight.shape[1] == 4
    assert len(sched.thinning_recipes) == 1
    for name, mask in sched.masks.items():
        if mask is not None:
            assert mask.shape == dict(model.named_parameters())[name].shape


class DenseNet(torch.nn.Module):
    """DenseNet's pattern: each layer reads the concatenation of every earlier feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.l1 = torch.nn.Conv2d(6, 4, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(10)
        self.l2 = torch.nn.Conv2d(10, 4, 3, padding=1)
        self.head = torch.nn.Conv2d(14, 5, 1)

    def forward(self, x):
        x0 = self.stem(x)
        x1 = torch.cat([x0, self.l1(x0)], 1)
        x2 = torch.cat([x1, self.l2(torch.relu(self.bn2(x1)))], 1)
        return self.head(x2).mean((2, 3))


@pytest.mark.parametrize("group_type", ["Filters", "Channels"])
def test_concatenated_inputs_take_each_slice_from_its_own_group(group_type):
    from prunecli import thinning
    torch.manual_seed(0)
    model = DenseNet().eval()
    x = torch.randn(2, 3, 8, 8)
    weights = (
        ["stem.weight", "l1.weight", "l2.weight"] if group_type == "Filters" else ["l2.weight", "head.weight"]
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    schedule = make_schedule(
        {
            "pruners": {
                "p": (
                    "L1RankedStructureParameterPruner",
                    {"group_type": group_type, "desired_sparsity": 0.5, "weights": weights},
                )
            }
        },
        [("pruner", "p", {"epochs": [0]}, None)],
    )
    sched = build_scheduler(schedule, model, opt, example_input=x[:1], auto_dependency=True)
    sched.on_epoch_begin(0, opt)
    sched.on_minibatch_begin(0, 0, 1, opt)
    # bn2 spans two groups (stem's 6 channels, then l1's 4): each slice follows its own producer
    if group_type == "Filters":
        dead_bn = sched.masks["bn2.weight"] == 0
        assert torch.equal(dead_bn[:6], _dead(model.stem.weight, 0))
        assert torch.equal(dead_bn[6:], _dead(model.l1.weight, 0))
        assert int(dead_bn.sum()) == 3 + 2
    else:  # head reads stem, l1 and l2 slices; l2 reads stem and l1 slices: the same decisions
        assert torch.equal(_dead(model.head.weight, 1)[:10], _dead(model.l2.weight, 1))
    with torch.no_grad():
        masked = model(x)
    before = sum(p.numel() for p in model.parameters())
    thinning.thin_model(model, x[:1], masks=sched.masks)
    assert sum(p.numel() for p in model.parameters()) < before
    with torch.no_grad():
        assert torch.allclose(model(x), masked, atol=1e-5)
