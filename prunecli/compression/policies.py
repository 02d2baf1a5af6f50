"""Scheduled policies: what runs at each of the six hooks (Distiller's ``policy.py`` semantics)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from prunecli.compression.masker import MaskSet, MasksView
from prunecli.lr import load_plain_state_dict, plain_state_dict, step_to_epoch
from prunecli.schedule.vocabulary import THINNING_FUNCTIONS

#: PruningPolicy ``args`` and their defaults (Distiller's ``PruningPolicy.__init__``).
PRUNING_POLICY_ARGS: dict[str, Any] = {
    "levels": None,
    "keep_mask": False,
    "mini_batch_pruning_frequency": 0,
    "mask_on_forward_only": False,
    "mask_gradients": False,
    "use_double_copies": False,
    "discard_masks_at_minibatch_end": False,
    "skip_first_minibatch": False,
    "fold_batchnorm": False,
}
REGULARIZATION_POLICY_ARGS: dict[str, Any] = {"keep_mask": False}


class PolicyLoss(NamedTuple):
    """The loss with every regularization term added, and each term by name (``<Class>_loss``)."""

    overall_loss: torch.Tensor
    loss_components: dict[str, torch.Tensor]


class ScheduledPolicy:
    """No-op hooks; subclasses override the ones they use."""

    name: str = ""

    def on_epoch_begin(self, model: nn.Module, maskset: MaskSet, meta: dict) -> None:
        pass

    def on_minibatch_begin(self, model, epoch, step, steps_per_epoch, maskset, meta, optimizer=None) -> None:
        pass

    def before_backward_pass(self, model, epoch, step, steps_per_epoch, loss, maskset, optimizer=None):
        return None

    def before_parameter_optimization(
        self, model, epoch, step, steps_per_epoch, maskset, meta, optimizer
    ) -> None:
        pass

    def on_minibatch_end(self, model, epoch, step, steps_per_epoch, maskset, optimizer) -> None:
        pass

    def on_epoch_end(self, model, maskset, meta, metrics=None) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module, maskset: MaskSet) -> None:
        pass


class PruningPolicy(ScheduledPolicy):
    """Masks are computed at epoch begin and applied before every forward pass of the epoch."""

    def __init__(
        self,
        pruner: Any,
        args: Mapping[str, Any] | None = None,
        bn_folder: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        args = {**PRUNING_POLICY_ARGS, **dict(args or {})}
        unknown = set(args) - set(PRUNING_POLICY_ARGS)
        if unknown:
            raise ValueError(
                f"unknown pruning policy args {sorted(unknown)}; valid: {sorted(PRUNING_POLICY_ARGS)}"
            )
        if args["mask_gradients"] and not args["mask_on_forward_only"]:
            raise ValueError(
                "mask_gradients needs mask_on_forward_only: true (they are mutually exclusive otherwise)"
            )
        if args["fold_batchnorm"] and bn_folder is None:
            raise ValueError("fold_batchnorm needs an example input to find each convolution's BatchNorm")
        self.pruner = pruner
        self.name = pruner.name
        self.levels = args["levels"]
        self.keep_mask = args["keep_mask"]
        self.mini_batch_pruning_frequency = args["mini_batch_pruning_frequency"]
        self.mask_on_forward_only = args["mask_on_forward_only"]
        self.mask_gradients = args["mask_gradients"]
        self.use_double_copies = args["use_double_copies"]
        self.discard_masks_at_minibatch_end = args["discard_masks_at_minibatch_end"]
        self.skip_first_minibatch = args["skip_first_minibatch"]
        self.fold_batchnorm = args["fold_batchnorm"]
        self.bn_folder = bn_folder if self.fold_batchnorm else None
        self.is_last_epoch = False
        self.is_initialized = False

    def _ranked_view(self, name: str, param: torch.Tensor) -> torch.Tensor:
        return self.bn_folder(name, param) if self.bn_folder is not None else param

    def _params(self, maskset: MaskSet):
        """The parameters this pruner may mask (all of them when it decides per name)."""
        names = self.pruner.owned_names()
        if names is None:
            return maskset.params.items()
        return [(n, maskset.params[n]) for n in names if n in maskset.params]

    def _set_masks(self, maskset: MaskSet, meta: dict) -> None:
        self.pruner.pending = False
        views = [(name, self._ranked_view(name, param)) for name, param in self._params(maskset)]
        self.pruner.prepare_masks(dict(views), meta)
        for name, view in views:
            self.pruner.set_param_mask(view, name, maskset, meta)

    def _init_maskers(self, maskset: MaskSet) -> None:
        for name, param in maskset.params.items():
            masker = maskset[name]
            masker.use_double_copies = self.use_double_copies
            masker.mask_on_forward_only = self.mask_on_forward_only
            if self.mask_gradients and masker.backward_hook_handle is None:
                masker.backward_hook_handle = param.register_hook(masker.mask_gradient)

    def on_epoch_begin(self, model, maskset, meta) -> None:
        self.is_last_epoch = meta["current_epoch"] == meta["ending_epoch"] - 1
        if meta.get("steps_per_epoch"):  # the step about to run, not the last one of the epoch before
            meta["global_step"] = meta["current_epoch"] * meta["steps_per_epoch"]
        if self.levels is not None:
            self.pruner.levels = dict(self.levels)
        meta["model"] = model
        if not self.is_initialized:
            self._init_maskers(maskset)
            self.is_initialized = True
            if self.skip_first_minibatch:
                return
        self._set_masks(maskset, meta)

    def on_minibatch_begin(self, model, epoch, step, steps_per_epoch, maskset, meta, optimizer=None) -> None:
        global_step = epoch * steps_per_epoch + step
        meta["global_step"], meta["steps_per_epoch"] = global_step, steps_per_epoch
        frequency = self.mini_batch_pruning_frequency or self.pruner.every_steps
        set_masks = step > 0 and frequency != 0 and global_step % frequency == 0
        if self.skip_first_minibatch and global_step == 1:
            set_masks = True
        if set_masks or self.pruner.pending:
            meta["model"] = model
            self._set_masks(maskset, meta)
        maskset.apply_all()

    def before_backward_pass(self, model, epoch, step, steps_per_epoch, loss, maskset, optimizer=None):
        term = self.pruner.loss_term(model)
        if term is None:
            return None
        return PolicyLoss(loss + term, {f"{self.name}_loss": term})

    def before_parameter_optimization(
        self, model, epoch, step, steps_per_epoch, maskset, meta, optimizer
    ) -> None:
        self.pruner.after_backward(maskset.params)
        if self.use_double_copies:
            maskset.revert_all()

    def on_minibatch_end(self, model, epoch, step, steps_per_epoch, maskset, optimizer) -> None:
        if self.discard_masks_at_minibatch_end:
            for name in maskset.params:
                maskset[name].mask = None

    def on_epoch_end(self, model, maskset, meta, metrics=None) -> None:
        if not self.is_last_epoch:
            return
        for name, param in maskset.params.items():
            masker = maskset[name]
            if self.keep_mask:
                masker.use_double_copies = False
                masker.mask_on_forward_only = False
                masker.mask_tensor(param)
            if masker.backward_hook_handle is not None:
                masker.backward_hook_handle.remove()
                masker.backward_hook_handle = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "is_initialized": self.is_initialized,
            "is_last_epoch": self.is_last_epoch,
            "levels": self.pruner.levels if hasattr(self.pruner, "levels") else None,
            "pruner": self.pruner.state_dict(),
        }

    def load_state_dict(self, state, model, maskset) -> None:
        self.is_initialized = bool(state.get("is_initialized", False))
        self.is_last_epoch = bool(state.get("is_last_epoch", False))
        if state.get("levels") is not None:
            self.pruner.levels = dict(state["levels"])
        self.pruner.load_state_dict(state.get("pruner", {}))
        if self.is_initialized and self.mask_gradients and not self.is_last_epoch:
            self._init_maskers(maskset)


class RegularizationPolicy(ScheduledPolicy):
    """Adds the regularizer's loss before backward; thresholds into one-shot masks after the step."""

    def __init__(self, regularizer: Any, keep_mask: bool = False) -> None:
        self.regularizer = regularizer
        self.name = regularizer.name
        self.keep_mask = keep_mask
        self.is_last_epoch = False
        self.component_name = f"{type(regularizer).__name__}_loss"

    def on_epoch_begin(self, model, maskset, meta) -> None:
        self.is_last_epoch = meta["current_epoch"] == meta["ending_epoch"] - 1
        if meta.get("steps_per_epoch"):  # the step about to run, not the last one of the epoch before
            meta["global_step"] = meta["current_epoch"] * meta["steps_per_epoch"]

    def before_backward_pass(self, model, epoch, step, steps_per_epoch, loss, maskset, optimizer=None):
        reg_loss = torch.zeros((), dtype=torch.float, device=loss.device)
        for name in self.regularizer.params_names:
            param = maskset.params.get(name)
            if param is not None:
                term = self.regularizer.loss(param, name)
                if term is not None:
                    reg_loss = reg_loss + term
        return PolicyLoss(loss + reg_loss, {self.component_name: reg_loss})

    def on_minibatch_end(self, model, epoch, step, steps_per_epoch, maskset, optimizer) -> None:
        if self.regularizer.threshold_criteria is None:
            return
        keep = steps_per_epoch - 1 == step and self.is_last_epoch and self.keep_mask
        for name in self.regularizer.params_names:
            param = maskset.params.get(name)
            if param is None:
                continue
            self.regularizer.threshold(param, name, maskset)
            if keep:
                maskset[name].is_regularization_mask = False
        maskset.apply_all()

    def state_dict(self) -> dict[str, Any]:
        return {"is_last_epoch": self.is_last_epoch}

    def load_state_dict(self, state, model, maskset) -> None:
        self.is_last_epoch = bool(state.get("is_last_epoch", False))


class LRPolicy(ScheduledPolicy):
    """``lr_scheduler.step(epoch + 1)`` at epoch end; ReduceLROnPlateau gets ``metrics[mode]``."""

    def __init__(self, lr_scheduler: Any, name: str = "") -> None:
        self.lr_scheduler = lr_scheduler
        self.name = name

    def on_epoch_end(self, model, maskset, meta, metrics=None) -> None:
        step_to_epoch(self.lr_scheduler, meta["current_epoch"] + 1, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"lr_scheduler": plain_state_dict(self.lr_scheduler)}

    def load_state_dict(self, state, model, maskset) -> None:
        if "lr_scheduler" in state:
            load_plain_state_dict(self.lr_scheduler, state["lr_scheduler"])


class ThinningPolicy(ScheduledPolicy):
    """FilterRemover/ChannelRemover/StructureRemover: thin once, at the first minibatch of the epoch.

    It runs inside ``on_minibatch_begin`` so the pruning policies declared before it have
    already applied their masks in that hook, as in Distiller. Thinning follows Distiller's rule
    (``rule="distiller"``): a filter whose weights are zero goes even when its bias or BatchNorm
    shift is not, so that schedules written for Distiller shrink the model as their authors
    measured; those shifts are zeroed first and the thinned model is verified against that.
    """

    def __init__(self, name: str, thinning_func_str: str, example_input: Any) -> None:
        if thinning_func_str not in THINNING_FUNCTIONS:
            raise ValueError(
                f"thinning_func_str must be one of {sorted(THINNING_FUNCTIONS)}, got {thinning_func_str!r}"
            )
        self.name = name
        self.mode = THINNING_FUNCTIONS[thinning_func_str]
        self.example_input = example_input
        self.done = False
        self.after_thinning: Callable[[Any], None] | None = None
        self.recipes: list[Any] = []
        #: also remove channels normalised by LayerNorm/GroupNorm (set when a pruner asks for them)
        self.prune_normalized = False
        #: attention heads narrowed alike rather than removed whole (as the pruners were coupled)
        self.narrow_heads = False

    def on_minibatch_begin(self, model, epoch, step, steps_per_epoch, maskset, meta, optimizer=None) -> None:
        if self.done:
            return
        from prunecli.thinning import thin_model  # imported late: thinning is not needed to prune

        recipe = thin_model(
            model,
            self.example_input,
            mode=self.mode,
            optimizer=optimizer,
            masks=MasksView(maskset),
            rule="distiller",
            prune_normalized=self.prune_normalized,
            narrow_heads=self.narrow_heads,
        )
        self.recipes.append(recipe)
        self.done = True
        if self.after_thinning is not None:
            self.after_thinning(recipe)

    def on_epoch_end(self, model, maskset, meta, metrics=None) -> None:
        self.done = False

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state, model, maskset) -> None:
        self.done = bool(state.get("done", False))
