"""Intel Neural Compressor 2.x's pruning callbacks, driving prunecli's compression scheduler.

Code written for Neural Compressor keeps working with one changed import::

    from prunecli.compat.inc import WeightPruningConfig, prepare_compression

    config = WeightPruningConfig([{"op_names": ["layer1.*"], "pattern": "4x1"}], target_sparsity=0.8,
                                 start_step=1, end_step=100, pruning_frequency=10)
    manager = prepare_compression(model, config)
    manager.callbacks.on_train_begin()
    for epoch in range(epochs):
        manager.callbacks.on_epoch_begin(epoch)
        for step, batch in enumerate(loader):
            manager.callbacks.on_step_begin(step)
            loss = ...; loss.backward()
            manager.callbacks.on_before_optimizer_step()
            optimizer.step()
            manager.callbacks.on_after_optimizer_step()
            manager.callbacks.on_step_end()
        manager.callbacks.on_epoch_end()
    manager.callbacks.on_train_end()

Neural Compressor counts training steps across epochs (its events are absolute steps), and so do
these callbacks: the scheduler sees step ``g`` of one long epoch, which is where a Neural
Compressor schedule's step window places its events however the epochs are cut.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from torch import nn

from prunecli.compression import CompressionScheduler, build_compression
from prunecli.errors import ConfigError
from prunecli.schedule import Schedule, load_schedule

#: the scheduler's epoch length for Neural Compressor's step count (steps never wrap into epoch 1)
_ONE_EPOCH = 2**31


class WeightPruningConfig:
    """Neural Compressor's ``WeightPruningConfig(pruning_configs, **global keys)`` as a schedule.

    The keys are checked (did-you-mean, ranges) as in a config file; ``schedule`` is the compiled
    :class:`Schedule`.
    """

    def __init__(self, pruning_configs: list[dict[str, Any]] | None = None, **global_keys: Any) -> None:
        document = {k: v for k, v in global_keys.items() if v is not None}
        document.setdefault("pruning_type", "snip_momentum")
        if pruning_configs:
            document["pruning_configs"] = [dict(c) for c in pruning_configs]
        self.document = document
        text = yaml.safe_dump(document, sort_keys=False)
        self.schedule = load_schedule("<WeightPruningConfig>", text=text)


class Callbacks:
    """Neural Compressor's callback names on one :class:`CompressionScheduler`."""

    def __init__(self, scheduler: CompressionScheduler, optimizer: Any = None) -> None:
        self.scheduler = scheduler
        self.optimizer = optimizer
        self.global_step = 0
        self.epoch = 0

    def on_train_begin(self, dataloader: Any = None) -> None:
        self.scheduler.on_epoch_begin(0, self.optimizer)

    def on_epoch_begin(self, epoch: int) -> None:
        self.epoch = int(epoch)  # the step count goes on across epochs, as Neural Compressor's does

    def on_step_begin(self, local_step: int = 0) -> None:
        self.scheduler.on_minibatch_begin(0, self.global_step, _ONE_EPOCH, self.optimizer)

    def on_before_optimizer_step(self) -> None:
        self.scheduler.before_parameter_optimization(0, self.global_step, _ONE_EPOCH, self.optimizer)

    def on_after_optimizer_step(self) -> None:
        self.scheduler.on_minibatch_end(0, self.global_step, _ONE_EPOCH, self.optimizer)
        self.global_step += 1

    def on_step_end(self) -> None:
        """Nothing left to do: the masks were re-applied after the optimizer step."""

    def on_epoch_end(self) -> None:
        """Nothing to do: the schedule's events are steps."""

    def on_train_end(self) -> None:
        self.scheduler.mask_all_weights()

    def on_before_eval(self) -> None:
        """Neural Compressor's evaluation hooks change nothing here: the weights stay masked."""

    def on_after_eval(self) -> None:
        """See :meth:`on_before_eval`."""


class CompressionManager:
    """What ``prepare_compression`` returns: ``.model`` and ``.callbacks``."""

    def __init__(self, model: nn.Module, schedule: Schedule, optimizer: Any = None) -> None:
        self.model = model
        self.schedule = schedule
        self.scheduler = build_compression(schedule, model, optimizer, steps_per_epoch=_ONE_EPOCH)
        self.callbacks = Callbacks(self.scheduler, optimizer)


def prepare_compression(
    model: nn.Module, config: WeightPruningConfig | Schedule | str | os.PathLike[str], optimizer: Any = None
) -> CompressionManager:
    """Neural Compressor's ``prepare_compression(model, config)``; ``config`` may also be a config file."""
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"prepare_compression takes a torch.nn.Module, got {type(model).__name__}", hint="pass the model"
        )
    if isinstance(config, WeightPruningConfig):
        schedule = config.schedule
    elif isinstance(config, Schedule):
        schedule = config
    else:
        schedule = load_schedule(config)
    return CompressionManager(model, schedule, optimizer)
