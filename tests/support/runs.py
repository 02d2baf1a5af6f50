"""A small schedule for end-to-end runs: prune, thin mid-run, keep training (used by several run tests)."""

from __future__ import annotations

import textwrap

#: Filters of both block-internal convs pruned at epochs 1 and 2, thinned at 3, LR steps at 4.
RUN_SCHEDULE = textwrap.dedent(
    """\
    version: 1
    pruners:
      inner:
        class: L1RankedStructureParameterPruner_AGP
        initial_sparsity: 0.25
        final_sparsity: 0.5
        group_type: Filters
        weights: [layer1.0.conv1.weight, layer2.0.conv1.weight]
    extensions:
      net_thinner:
        class: FilterRemover
        thinning_func_str: remove_filters
        arch: resnet_digits
        dataset: digits
    lr_schedulers:
      lr:
        class: StepLR
        step_size: 4
        gamma: 0.5
    policies:
      - pruner: {instance_name: inner}
        starting_epoch: 1
        ending_epoch: 3
        frequency: 1
      - extension: {instance_name: net_thinner}
        epochs: [3]
      - lr_scheduler: {instance_name: lr}
        starting_epoch: 0
        ending_epoch: 10
        frequency: 1
    """
)
