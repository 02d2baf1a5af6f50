"""Per-parameter masks and the fast in-place masking of every masked tensor.

A mask is applied by multiplying the parameter's storage in place (no autograd
re-parametrisation). Parameters without a mask cost nothing: the set of masked tensors is
cached and rebuilt only when a mask changes, and all of them are masked with one
``torch._foreach_mul_`` call.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import torch
from torch import nn


class ParameterMasker:
    """Distiller's ``ParameterMasker``: one parameter's mask and how it is applied."""

    def __init__(self, param_name: str, owner: MaskSet | None = None) -> None:
        self.param_name = param_name
        self._owner = owner
        self._mask: torch.Tensor | None = None
        self.is_regularization_mask = False
        self.use_double_copies = False
        self.mask_on_forward_only = False
        self.unmasked_copy: torch.Tensor | None = None
        self.backward_hook_handle: Any = None

    @property
    def mask(self) -> torch.Tensor | None:
        return self._mask

    @mask.setter
    def mask(self, value: torch.Tensor | None) -> None:
        self._mask = value
        if self._owner is not None:
            self._owner.invalidate()

    def __setattr__(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)
        if key in ("is_regularization_mask", "use_double_copies", "mask_on_forward_only"):
            owner = self.__dict__.get("_owner")
            if owner is not None:
                owner.invalidate()

    @property
    def is_plain(self) -> bool:
        """Applying this mask needs no bookkeeping (so it can join the batched multiply)."""
        return not (self.use_double_copies or self.is_regularization_mask)

    def apply_mask(self, param: torch.Tensor) -> None:
        if self._mask is None:
            return
        if self.use_double_copies:
            self.unmasked_copy = param.detach().clone()
        self.mask_tensor(param)
        if self.is_regularization_mask:
            self.mask = None

    def mask_tensor(self, tensor: torch.Tensor) -> None:
        if self._mask is not None:
            with torch.no_grad():
                tensor.mul_(self._mask)

    def mask_gradient(self, gradient: torch.Tensor) -> torch.Tensor | None:
        if self._mask is not None:
            return gradient.mul(self._mask)
        return None

    def revert_weights(self, param: torch.Tensor) -> None:
        if not self.use_double_copies or self.unmasked_copy is None:
            return
        with torch.no_grad():
            param.copy_(self.unmasked_copy)
        self.unmasked_copy = None


class MaskSet:
    """All maskers of a model, keyed by parameter name (Distiller's ``zeros_mask_dict``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.params: dict[str, nn.Parameter] = dict(model.named_parameters())
        self.maskers: dict[str, ParameterMasker] = {name: ParameterMasker(name, self) for name in self.params}
        self._cache: tuple[list, list, list] | None = None

    # mapping protocol over maskers -------------------------------------------------------------
    def __getitem__(self, name: str) -> ParameterMasker:
        return self.maskers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.maskers

    def __iter__(self) -> Iterator[str]:
        return iter(self.maskers)

    def items(self):
        return self.maskers.items()

    def invalidate(self) -> None:
        self._cache = None

    def refresh_params(self) -> None:
        """Re-read the parameters after the model changed (thinning replaces tensors)."""
        self.params = dict(self.model.named_parameters())
        for name in self.params:
            if name not in self.maskers:
                self.maskers[name] = ParameterMasker(name, self)
        for name in [n for n in self.maskers if n not in self.params]:
            del self.maskers[name]
        self.invalidate()

    def _groups(self) -> tuple[list, list, list]:
        """(plain params, their masks, special maskers) among the parameters that have a mask."""
        if self._cache is None:
            plain_params, plain_masks, special = [], [], []
            for name, masker in self.maskers.items():
                if masker.mask is None:
                    continue
                if masker.is_plain:
                    plain_params.append((self.params[name], masker.mask_on_forward_only))
                    plain_masks.append(masker.mask)
                else:
                    special.append((self.params[name], masker))
            self._cache = (plain_params, plain_masks, special)
        return self._cache

    @staticmethod
    def _mul(params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
        if params:
            with torch.no_grad():
                torch._foreach_mul_(params, masks)

    def apply_all(self) -> None:
        """``apply_mask`` on every parameter (keeps unmasked copies, drops one-shot masks)."""
        plain, masks, special = self._groups()
        self._mul([p for p, _ in plain], masks)
        for param, masker in special:
            masker.apply_mask(param)

    def mask_all(self, is_forward: bool = True) -> None:
        """``mask_tensor`` on every parameter; after the step, forward-only masks are skipped."""
        plain, masks, special = self._groups()
        if is_forward:
            self._mul([p for p, _ in plain], masks)
        else:
            pairs = [(p, m) for (p, fwd_only), m in zip(plain, masks) if not fwd_only]
            self._mul([p for p, _ in pairs], [m for _, m in pairs])
        for param, masker in special:
            if is_forward or not masker.mask_on_forward_only:
                masker.mask_tensor(param)

    def revert_all(self) -> None:
        for _, masker in self._groups()[2]:
            masker.revert_weights(self.params[masker.param_name])

    @property
    def masks(self) -> dict[str, torch.Tensor | None]:
        return {name: masker.mask for name, masker in self.maskers.items()}

    def state_dict(self) -> dict[str, Any]:
        masks = {name: m.mask for name, m in self.maskers.items() if m.mask is not None}
        flags = {
            name: {
                "is_regularization_mask": m.is_regularization_mask,
                "use_double_copies": m.use_double_copies,
                "mask_on_forward_only": m.mask_on_forward_only,
            }
            for name, m in self.maskers.items()
            if m.is_regularization_mask or m.use_double_copies or m.mask_on_forward_only
        }
        return {"masks": masks, "flags": flags}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = [
            n for n in list(state.get("masks", {})) + list(state.get("flags", {})) if n not in self.maskers
        ]
        if unknown:
            raise KeyError(f"masks for parameters the model does not have: {unknown[:5]}")
        for name, masker in self.maskers.items():
            mask = state.get("masks", {}).get(name)
            param = self.params[name]
            if mask is not None and mask.shape != param.shape:
                raise KeyError(
                    f"mask for {name} has shape {tuple(mask.shape)}, parameter {tuple(param.shape)}"
                )
            masker.mask = None if mask is None else mask.to(device=param.device, dtype=param.dtype)
            flags = state.get("flags", {}).get(name, {})
            masker.is_regularization_mask = bool(flags.get("is_regularization_mask", False))
            masker.use_double_copies = bool(flags.get("use_double_copies", False))
            masker.mask_on_forward_only = bool(flags.get("mask_on_forward_only", False))


class MasksView(MutableMapping):
    """``name -> mask`` view whose writes go to the maskers (what thinning slices in place)."""

    def __init__(self, maskset: MaskSet) -> None:
        self._maskset = maskset

    def __getitem__(self, name: str) -> torch.Tensor | None:
        return self._maskset.maskers[name].mask

    def __setitem__(self, name: str, value: torch.Tensor | None) -> None:
        if name not in self._maskset.maskers:
            self._maskset.maskers[name] = ParameterMasker(name, self._maskset)
        self._maskset.maskers[name].mask = value

    def __delitem__(self, name: str) -> None:
        self._maskset.maskers[name].mask = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._maskset.maskers)

    def __len__(self) -> int:
        return len(self._maskset.maskers)
