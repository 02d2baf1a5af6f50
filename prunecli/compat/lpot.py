"""Intel LPOT's pruning object, driving prunecli's compression scheduler.

Code written for LPOT keeps working with one changed import::

    from prunecli.compat.lpot import Pruning, common

    prune = Pruning("lpot.yaml")
    prune.model = common.Model(model)
    prune.train_dataloader = train_dataloader
    prune.pruning_func = train_func        # a loop calling prune.on_epoch_begin(epoch), ...
    prune.eval_func = eval_func
    model = prune()

Without ``pruning_func`` the file's ``train:`` section trains (its optimizer, criterion, epochs and
steps per epoch; its data set unless ``train_dataloader`` is set). The hooks map one to one onto
:class:`~prunecli.compression.CompressionScheduler`'s, so the masks are those the same schedule
gives in ``prunecli run``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from prunecli.compression import CompressionScheduler, build_compression
from prunecli.errors import ConfigError
from prunecli.schedule import Schedule, load_schedule


class Model:
    """LPOT's ``common.Model``: the framework model, reachable as ``.model``."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"common.Model takes a torch.nn.Module, got {type(model).__name__}",
                hint="pass the PyTorch model itself",
            )
        self.model = model


#: ``from prunecli.compat.lpot import common`` then ``common.Model(model)``, as in LPOT
common = SimpleNamespace(Model=Model)


class Pruning:
    """LPOT's ``Pruning(config)``: set ``model`` (and optionally ``train_dataloader``,
    ``pruning_func``, ``eval_dataloader``, ``eval_func``, ``optimizer``), then call it."""

    def __init__(self, config: str | os.PathLike[str] | Schedule) -> None:
        self.schedule = config if isinstance(config, Schedule) else load_schedule(config)
        self._model: nn.Module | None = None
        self.train_dataloader: Iterable[Any] | None = None
        self.eval_dataloader: Iterable[Any] | None = None
        self.pruning_func: Callable[[nn.Module], Any] | None = None
        self.eval_func: Callable[[nn.Module], Any] | None = None
        #: the optimizer of a user's loop; masks are re-applied after its steps either way
        self.optimizer: torch.optim.Optimizer | None = None
        #: what ``eval_func`` returned after pruning (None without one)
        self.accuracy: Any = None
        self.scheduler: CompressionScheduler | None = None
        self._epoch = 0
        self._step = 0
        self._max_steps: int | None = None

    # the model -------------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        return self._model

    @model.setter
    def model(self, value: nn.Module | Model) -> None:
        module = value.model if isinstance(value, Model) else value
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"Pruning.model takes a torch.nn.Module or common.Model, got {type(value).__name__}",
                hint="prune.model = common.Model(model)",
            )
        self._model = module
        self.scheduler = None

    def _ready(self) -> CompressionScheduler:
        if self.scheduler is None:
            if self._model is None:
                raise ConfigError(
                    "Pruning has no model", hint="set prune.model = common.Model(model) before training"
                )
            self.scheduler = build_compression(
                self.schedule, self._model, self.optimizer, steps_per_epoch=self._steps_per_epoch()
            )
        return self.scheduler

    # hooks for a user's loop (LPOT's names) ----------------------------------------------------------
    def on_epoch_begin(self, epoch: int) -> None:
        self._epoch, self._step = int(epoch), 0
        self._ready().on_epoch_begin(self._epoch, self.optimizer)

    def on_batch_begin(self, batch_id: int) -> None:
        self._step = int(batch_id)
        self._ready().on_minibatch_begin(self._epoch, self._step, self._spe(), self.optimizer)

    def on_post_grad(self) -> None:
        """After ``loss.backward()``: the schedule's regularization gradients (LPOT's group lasso)
        are added to the parameters' gradients, then the pruners see the gradients."""
        scheduler = self._ready()
        zero = torch.zeros((), device=next(self._model.parameters()).device)  # type: ignore[union-attr]
        term = scheduler.before_backward_pass(self._epoch, self._step, self._spe(), zero, self.optimizer)
        if isinstance(term, torch.Tensor) and term.requires_grad:
            term.backward()
        scheduler.before_parameter_optimization(self._epoch, self._step, self._spe(), self.optimizer)

    def on_batch_end(self) -> None:
        self._ready().on_minibatch_end(self._epoch, self._step, self._spe(), self.optimizer)

    def on_epoch_end(self) -> None:
        self._ready().on_epoch_end(self._epoch, self.optimizer)

    def _spe(self) -> int:
        return self._steps_per_epoch() or self._step + 1

    def _steps_per_epoch(self) -> int | None:
        """The loader's length, cut to the file's ``iteration`` when the file's loop trains."""
        try:
            count = len(self.train_dataloader) if self.train_dataloader is not None else None  # type: ignore[arg-type]
        except TypeError:
            return None
        if count is not None and self._max_steps is not None:
            count = min(count, self._max_steps)
        return count

    # the whole run -----------------------------------------------------------------------------------
    def __call__(self) -> nn.Module:
        """Prune: the user's ``pruning_func`` (which calls the hooks) or the file's ``train:``."""
        model = self._model
        if model is None:
            raise ConfigError("Pruning has no model", hint="set prune.model = common.Model(model) first")
        if self.pruning_func is not None:
            self.pruning_func(model)
        else:
            self._train_from_file(model)
        self._ready().mask_all_weights()
        if self.eval_func is not None:
            self.accuracy = self.eval_func(model)
        return model

    def _train_from_file(self, model: nn.Module) -> None:
        from prunecli.training.config import merge_config
        from prunecli.training.setup import build_optimizer

        settings = self.schedule.training
        if not settings:
            raise ConfigError(
                f"{self.schedule.path}: no pruning.train section and no pruning_func",
                hint="set prune.pruning_func to your training function, or add 'train:' to the file",
            )
        config = merge_config(settings, source=str(self.schedule.path))
        loader = self.train_dataloader
        if loader is None:
            if not config.dataset:
                raise ConfigError(
                    "no data: the file's train.dataloader names no dataset and no train_dataloader is set",
                    hint="set prune.train_dataloader, or add 'dataloader: {dataset: ...}' to train:",
                )
            from prunecli.data import load_dataset

            bundle = load_dataset(config.dataset, config.data_dir, seed=config.seed, **config.dataset_options)
            loader = self.train_dataloader = bundle.loaders(config.batch_size, workers=0, seed=config.seed)[0]
        self.optimizer = build_optimizer(config, model)
        self.scheduler = None  # built again with the optimizer
        criterion = nn.CrossEntropyLoss()
        steps = self._max_steps = config.max_steps_per_epoch
        model.train()
        for epoch in range(config.epochs or 1):
            self.on_epoch_begin(epoch)
            for step, (inputs, targets) in enumerate(loader):
                if steps is not None and step >= steps:
                    break
                self.on_batch_begin(step)
                loss = criterion(model(inputs), targets)
                scheduler = self._ready()
                loss = scheduler.before_backward_pass(epoch, step, self._spe(), loss, self.optimizer)
                self.optimizer.zero_grad()
                loss.backward()
                scheduler.before_parameter_optimization(epoch, step, self._spe(), self.optimizer)
                self.optimizer.step()
                self.on_batch_end()
            self.on_epoch_end()
