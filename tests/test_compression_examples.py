"""Real Distiller example schedules run through the runtime on their CIFAR target models.

One tiny batch per epoch up to the schedule's last pruning epoch; afterwards every pruner whose
result can be predicted (AGP, one-shot ranking) has reached its final sparsity on the tensors
it was the last to prune, and every masked weight is exactly zero.
"""

import math
import os

import pytest
import torch

SCHEDULES = {
    "agp-pruning/resnet20_filters.schedule_agp_2.yaml": "resnet20_cifar",
    "agp-pruning/resnet20_filters.schedule_agp_4.yaml": "resnet20_cifar",
    "pruning_filters_for_efficient_convnets/resnet56_cifar_filter_rank.yaml": "resnet56_cifar",
    "pruning_filters_for_efficient_convnets/resnet56_cifar_channel_rank.yaml": "resnet56_cifar",
    "network_trimming/resnet56_cifar_activation_apoz.yaml": "resnet56_cifar",
    "network_surgery/resnet20.network_surgery.yaml": "resnet20_cifar",
    "drop_filter/plain20_cifar_dropfilter_training.yaml": "plain20_cifar",
    "drop_filter/resnet20_cifar_randomlevel_training.yaml": "resnet20_cifar",
    "ssl/ssl_filter-removal_training.yaml": "resnet20_cifar",
    "ssl/ssl_4D-removal_training.yaml": "resnet20_cifar",
    "network_slimming/resnet20_slimming.yaml": "resnet20_cifar",
    "baseline_networks/cifar/resnet56_cifar_baseline_training.yaml": "resnet56_cifar",
    "baseline_networks/cifar/preact_resnet_cifar_base_fp32.yaml": "preact_resnet20_cifar",
}


def _expected_zero_structures(pruner, param):
    """(dim, count) a ranked pruner leaves in ``param``'s mask, or None when not predictable."""
    if not _is_lp_ranked(pruner):
        return None
    schedule = pruner.schedule
    fraction = schedule.final_sparsity if pruner.follows_agp else schedule.level
    if pruner.group_type in ("Filters", "3D"):
        dim = 0
    elif pruner.group_type in ("Channels", "Rows"):
        dim = 1
    else:
        return None
    n = param.size(dim)
    count = math.floor(fraction * n)
    return dim, (n - 1 if count >= n and fraction != 1.0 else count)


def _zero_slices(mask, dim):
    return int((mask.movedim(dim, 0).reshape(mask.size(dim), -1).sum(1) == 0).sum())


@pytest.mark.slow
@pytest.mark.parametrize("relpath", sorted(SCHEDULES))
def test_example_schedule_reaches_final_sparsity(examples_dir, relpath):
    from prunecli.compression import build_scheduler
    from prunecli.models import create_model
    from prunecli.schedule import load_schedule
    from prunecli.schedule.names import resolve_names

    path = os.path.join(examples_dir, relpath)
    schedule = load_schedule(path)
    torch.manual_seed(0)
    model, _ = create_model(SCHEDULES[relpath], dataset="cifar10")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    example = torch.randn(1, 3, 32, 32)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    sched = build_scheduler(resolve_names(schedule, shapes), model, optimizer, example_input=example)
    original_shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    last = max(schedule.last_epoch(), 0)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    criterion = torch.nn.CrossEntropyLoss()
    for epoch in range(last + 1):
        sched.on_epoch_begin(epoch)
        sched.on_minibatch_begin(epoch, 0, 1, optimizer)
        loss = sched.before_backward_pass(epoch, 0, 1, criterion(model(x), y), optimizer)
        optimizer.zero_grad()
        loss.backward()
        sched.before_parameter_optimization(epoch, 0, 1, optimizer)
        optimizer.step()
        sched.on_minibatch_end(epoch, 0, 1, optimizer)
        value = loss.item()
        del loss  # a live autograd graph would pin the pre-thinning parameter shapes
        sched.on_epoch_end(epoch, optimizer, metrics={"min": value, "max": 0.1})
        assert math.isfinite(value)

    params = dict(model.named_parameters())
    for name, mask in sched.masks.items():
        if mask is not None and not sched.zeros_mask_dict[name].mask_on_forward_only:
            assert (params[name][mask == 0] == 0).all(), name

    # the last pruner to act on each tensor decides its final mask
    last_owner = {}
    for _, policy in sched.policy_order:
        pruner = getattr(policy, "pruner", None)
        if pruner is None or not pruner.owned_names():
            continue
        meta = sched.sched_metadata[policy]
        end = max(e for e, ps in sched.policies.items() if policy in ps)
        for name in pruner.owned_names():
            if name not in last_owner or end >= last_owner[name][0]:
                last_owner[name] = (end, pruner, meta)
    checked = 0
    thinning_epochs = [e for p in schedule.policies if p.kind == "extension" for e in p.epochs]
    last_thinning = max(thinning_epochs, default=-1)
    for name, (end, pruner, _) in last_owner.items():
        mask = sched.masks[name]
        if _is_element_agp(pruner):
            assert int((mask == 0).sum()) == int(pruner.schedule.final_sparsity * mask.numel()), name
            checked += 1
        if end > last_thinning:  # the pruner's last target applied to the thinned tensor
            expected = _expected_zero_structures(pruner, mask)
            removed = 0
        else:  # thinning removed (some of) the pruned structures afterwards
            expected = _expected_zero_structures(pruner, torch.empty(original_shapes[name], device="meta"))
            removed = original_shapes[name][expected[0]] - mask.size(expected[0]) if expected else 0
        if expected is not None:
            dim, count = expected
            assert _zero_slices(mask, dim) + removed == count, name
            checked += 1
    predictable = [
        p
        for _, p, _ in last_owner.values()
        if _is_element_agp(p) or _is_lp_ranked(p)
    ]
    assert checked >= len(predictable)


def _is_lp_ranked(pruner) -> bool:
    """An L1/L2-ranked pruner (one-shot or AGP): its final count of zero structures is predictable."""
    return str(getattr(pruner, "preset", "")).startswith(("L1Ranked", "L2Ranked"))


def _is_element_agp(pruner) -> bool:
    return getattr(pruner, "preset", None) == "AutomatedGradualPruner"


def test_every_example_component_fits_its_constructor(examples_dir):
    """Each pruner/regularizer/LR/extension in the examples uses only arguments its catalog entry accepts."""
    import glob

    from prunecli.compression.build import EXTENSIONS, catalog_args
    from prunecli.errors import ScheduleError
    from prunecli.lr import LR_SCHEDULERS
    from prunecli.pruners import PRUNERS
    from prunecli.quantization.registry import QUANTIZERS
    from prunecli.regularizers import REGULARIZERS
    from prunecli.schedule import load_schedule

    registry = {**PRUNERS, **REGULARIZERS, **LR_SCHEDULERS}
    seen = set()
    for path in sorted(glob.glob(os.path.join(examples_dir, "**", "*.yaml"), recursive=True)):
        try:
            schedule = load_schedule(path)
        except ScheduleError:
            continue  # not a schedule
        for section, comps in schedule.components.items():
            for comp in comps.values():
                if section == "quantizers":
                    assert comp.class_name in QUANTIZERS, path
                elif section == "extensions":
                    assert comp.class_name in EXTENSIONS, path
                else:
                    assert comp.class_name in registry, (path, comp.class_name)
                accepted, required = catalog_args(comp.class_name)
                assert set(comp.args) <= accepted, (path, comp.class_name, set(comp.args) - accepted)
                assert required <= set(comp.args), (path, comp.class_name, required - set(comp.args))
                seen.add(comp.class_name)
    assert len(seen) >= 15
