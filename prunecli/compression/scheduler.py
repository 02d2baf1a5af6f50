"""The compression scheduler: Distiller's six training-loop hooks and their dispatch rules.

Call order in a training loop (one epoch)::

    scheduler.on_epoch_begin(epoch)
    for step, (x, y) in enumerate(loader):
        scheduler.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)
        loss = scheduler.before_backward_pass(epoch, step, steps_per_epoch, criterion(model(x), y), optimizer)
        optimizer.zero_grad(); loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps_per_epoch, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps_per_epoch, optimizer)
    scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": top1})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import nn

from prunecli.compression.masker import MaskSet, MasksView
from prunecli.compression.policies import PolicyLoss, ScheduledPolicy, ThinningPolicy
from prunecli.errors import CheckpointError

STATE_FORMAT = "prunecli-compression-scheduler"
STATE_VERSION = 1


def _label(policy: object) -> str:
    return str(getattr(policy, "name", type(policy).__name__))


class CompressionScheduler:
    """Holds the policies per epoch and one masker per parameter."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.maskset = MaskSet(model)
        self.policies: dict[int, list[ScheduledPolicy]] = {}
        self.sched_metadata: dict[ScheduledPolicy, dict[str, Any]] = {}
        self.policy_order: list[tuple[str, ScheduledPolicy]] = []
        #: recipes returned by the thinning extensions, in the order they ran (this session only)
        self.thinning_recipes: list[Any] = []
        #: called with each recipe after thinning (a training loop that wraps the model re-wraps it)
        self.thinning_listeners: list[Callable[[Any], None]] = []
        #: the schedule's quantizer (a prunecli.quantization.policy.QuantizationStage), if any
        self.quantization: Any = None

    # construction -------------------------------------------------------------------------------
    def add_policy(
        self,
        policy: ScheduledPolicy,
        epochs: Sequence[int] | None = None,
        starting_epoch: int | None = None,
        ending_epoch: int | None = None,
        frequency: int | None = 1,
        key: str | None = None,
    ) -> None:
        """Schedule ``policy`` on ``epochs`` or on ``range(starting_epoch, ending_epoch, frequency)``.

        Exactly one form must be given, as Distiller's ``add_policy`` asserts: a policy with no
        epochs would otherwise silently run on epoch 0 only, and one with both would drop one form.
        """
        has_range = starting_epoch is not None or ending_epoch is not None
        if epochs is None and not has_range:
            raise ValueError(
                f"add_policy({_label(policy)!r}): give epochs=[...] or starting_epoch and ending_epoch "
                "(with frequency); neither was given"
            )
        if epochs is not None and has_range:
            raise ValueError(
                f"add_policy({_label(policy)!r}): give either epochs=[...] or starting_epoch/ending_epoch, "
                "not both"
            )
        if epochs is None:
            if starting_epoch is None or ending_epoch is None:
                raise ValueError(
                    f"add_policy({_label(policy)!r}): a range needs both starting_epoch and ending_epoch"
                )
            if not 0 <= starting_epoch < ending_epoch:
                raise ValueError(
                    f"need 0 <= starting_epoch < ending_epoch, got {starting_epoch}, {ending_epoch}"
                )
            if frequency is None or not 0 < frequency <= ending_epoch - starting_epoch:
                raise ValueError(f"need 0 < frequency <= ending_epoch - starting_epoch, got {frequency}")
            epochs = list(range(starting_epoch, ending_epoch, frequency))
        else:
            epochs = list(epochs)
            if not epochs:
                raise ValueError("epochs must not be empty")
            starting_epoch, ending_epoch, frequency = epochs[0], epochs[-1] + 1, None
        for epoch in epochs:
            self.policies.setdefault(epoch, []).append(policy)
        self.sched_metadata[policy] = {
            "starting_epoch": starting_epoch,
            "ending_epoch": ending_epoch,
            "frequency": frequency,
        }
        if isinstance(policy, ThinningPolicy):
            policy.after_thinning = self._after_thinning
        self.policy_order.append((key or f"{len(self.policy_order)}:{policy.name}", policy))

    def _after_thinning(self, recipe: Any) -> None:
        """Thinning replaced tensors: re-read parameters and let pruners drop per-structure caches."""
        self.thinning_recipes.append(recipe)
        self.maskset.refresh_params()
        for _, policy in self.policy_order:
            pruner = getattr(policy, "pruner", None)
            if pruner is not None:
                pruner.forget_shapes()
                pruner.attach(self.model)
        for listener in self.thinning_listeners:
            listener(recipe)

    # views --------------------------------------------------------------------------------------
    @property
    def masks(self) -> dict[str, torch.Tensor | None]:
        """Parameter name -> mask (``None`` when unmasked)."""
        return self.maskset.masks

    @property
    def masks_view(self) -> MutableMapping[str, torch.Tensor | None]:
        """A writable ``name -> mask`` mapping backed by the maskers (for thinning)."""
        return MasksView(self.maskset)

    @property
    def zeros_mask_dict(self) -> MaskSet:
        return self.maskset

    @property
    def lr_schedulers(self) -> list[Any]:
        return [p.lr_scheduler for _, p in self.policy_order if hasattr(p, "lr_scheduler")]

    def _meta(self, policy: ScheduledPolicy, epoch: int) -> dict[str, Any]:
        meta = self.sched_metadata[policy]
        meta["current_epoch"] = epoch
        meta["model"] = self.model
        return meta

    # hooks --------------------------------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, optimizer: Any = None, **kwargs: Any) -> None:
        for policy in self.policies.get(epoch, ()):
            meta = self._meta(policy, epoch)
            meta["optimizer"] = optimizer
            policy.on_epoch_begin(self.model, self.maskset, meta)

    def on_minibatch_begin(self, epoch: int, step: int, steps_per_epoch: int, optimizer: Any = None) -> None:
        for policy in self.policies.get(epoch, ()):
            meta = self._meta(policy, epoch)
            policy.on_minibatch_begin(self.model, epoch, step, steps_per_epoch, self.maskset, meta, optimizer)

    def before_backward_pass(
        self,
        epoch: int,
        step: int,
        steps_per_epoch: int,
        loss: torch.Tensor,
        optimizer: Any = None,
        return_loss_components: bool = False,
    ) -> torch.Tensor | PolicyLoss:
        """The loss plus every active regularization term (and the terms by name when asked)."""
        overall = loss
        components: dict[str, torch.Tensor] = {}
        for policy in self.policies.get(epoch, ()):
            result = policy.before_backward_pass(
                self.model, epoch, step, steps_per_epoch, overall, self.maskset, optimizer
            )
            if result is None:
                continue
            overall = result.overall_loss
            for name, value in result.loss_components.items():
                components[name] = components[name] + value if name in components else value
        if return_loss_components:
            return PolicyLoss(overall, components)
        return overall

    def before_parameter_optimization(
        self, epoch: int, step: int, steps_per_epoch: int, optimizer: Any = None
    ) -> None:
        for policy in self.policies.get(epoch, ()):
            meta = self._meta(policy, epoch)
            policy.before_parameter_optimization(
                self.model, epoch, step, steps_per_epoch, self.maskset, meta, optimizer
            )

    def on_minibatch_end(self, epoch: int, step: int, steps_per_epoch: int, optimizer: Any = None) -> None:
        # Optimizers with momentum or weight decay move masked weights even with zero gradients,
        # so every mask is re-applied after every step, in every epoch.
        self.mask_all_weights(is_forward=False)
        for policy in self.policies.get(epoch, ()):
            policy.on_minibatch_end(self.model, epoch, step, steps_per_epoch, self.maskset, optimizer)

    def on_epoch_end(
        self, epoch: int, optimizer: Any = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        for policy in self.policies.get(epoch, ()):
            meta = self._meta(policy, epoch)
            meta["optimizer"] = optimizer
            policy.on_epoch_end(self.model, self.maskset, meta, metrics=metrics)

    def mask_all_weights(self, is_forward: bool = True) -> None:
        self.maskset.mask_all(is_forward=is_forward)

    # state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Masks (plain tensors) and every policy's state, so a resumed run continues identically."""
        return {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            **self.maskset.state_dict(),
            "policies": {key: policy.state_dict() for key, policy in self.policy_order},
        }

    def load_state_dict(self, state: Mapping[str, Any], *, strict: bool = True) -> None:
        if state.get("format", STATE_FORMAT) != STATE_FORMAT:
            raise CheckpointError(
                f"not a compression-scheduler state (format {state.get('format')!r})",
                hint="pass the checkpoint's 'scheduler' entry",
            )
        if "masks_dict" in state and "masks" not in state:  # Distiller's layout: {'masks_dict': {...}}
            state = {"masks": {k: v for k, v in state["masks_dict"].items() if v is not None}}
        try:
            self.maskset.load_state_dict(dict(state))
        except KeyError as exc:
            raise CheckpointError(
                f"the scheduler state does not fit this model: {exc.args[0]}",
                hint="resume with the same model (and thinning) the checkpoint was written with",
            ) from None
        saved = state.get("policies", {})
        keys = [key for key, _ in self.policy_order]
        if strict and saved and set(saved) != set(keys):
            raise CheckpointError(
                "the checkpoint's schedule differs from this schedule",
                hint=f"resume with the schedule the run started with (saved policies: {sorted(saved)[:6]})",
            )
        for key, policy in self.policy_order:
            if key in saved:
                policy.load_state_dict(saved[key], self.model, self.maskset)
        self.mask_all_weights(is_forward=True)
