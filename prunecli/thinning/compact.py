"""From a masked model to a compact one: thin, compose recipes, keep only the masks that still matter.

``prunecli run`` (at the end of training), ``prunecli thin`` (on a checkpoint file) and
:func:`prunecli.api.export_compact` (from a live compression scheduler) all end here, so a compact
model means the same thing whichever way it was made:

* the model is thinned by :func:`prunecli.thinning.thin_model` with one :class:`ThinOptions`;
* its recipe is relative to the *dense* model: thinning done earlier (a checkpoint's recipe, the
  schedule's mid-run ``FilterRemover``/``ChannelRemover`` steps) is composed with this one, so
  :func:`prunecli.thinning.apply_recipe` on a freshly built dense model reproduces the shapes;
* masks that are all ones after thinning are dropped. Multiplying by one changes nothing, so such
  a mask carries no information: keeping it would only make the file larger and make the model look
  masked to readers (reports, ``load_model``) when it is not. Masks with zeros left in them
  (fine-grained pruning, structures thinning could not remove) are kept, sliced to the new shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from prunecli.thinning.recipe import ThinningRecipe
from prunecli.thinning.thin import thin_model

RecipeLike = ThinningRecipe | Mapping[str, Any]


@dataclass(frozen=True)
class ThinOptions:
    """How to thin; every field is a keyword argument of :func:`prunecli.thinning.thin_model`.

    ``mode``: remove zero filters, zero channels, or both. ``rule``: ``"exact"`` keeps the function;
    ``"distiller"`` also removes zero filters whose bias/BatchNorm shift is non-zero (zeroing the
    shift first), as Distiller does. ``verify``: compare outputs before and after on the example input.
    ``round_to`` > 1: keep back the highest-ranked removable channels of each group so every kept
    channel count is a multiple of it. ``prune_normalized``: also remove zero channels that a
    LayerNorm/GroupNorm normalises (approximate; the verification records the deviation).
    ``narrow_heads``: attention heads lose the same positions each (``head_dim`` shrinks, the number
    of heads stays) instead of going whole.
    """

    mode: Literal["both", "filters", "channels"] = "both"
    rule: Literal["exact", "distiller"] = "exact"
    verify: bool = True
    round_to: int = 1
    prune_normalized: bool = False
    narrow_heads: bool = False

    def thin_model_kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompactModel:
    """A thinned model with what is needed to save and rebuild it."""

    model: nn.Module  # thinned (shapes changed)
    recipe: ThinningRecipe  # relative to the dense model: every thinning so far, composed
    step: ThinningRecipe  # the thinning done by this call alone
    masks: dict[str, torch.Tensor]  # the informative masks, sliced to the thinned shapes


def compose_recipes(*recipes: RecipeLike | None) -> ThinningRecipe:
    """One recipe equal to applying ``recipes`` in order (``None`` entries are skipped)."""
    composed = ThinningRecipe()
    for recipe in recipes:
        if recipe is None:
            continue
        step = recipe if isinstance(recipe, ThinningRecipe) else ThinningRecipe.from_dict(dict(recipe))
        composed = composed.then(step)
    return composed


def informative_masks(masks: Mapping[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """The masks that still zero something: ``None`` and all-ones masks are left out."""
    return {name: mask for name, mask in masks.items() if mask is not None and not bool(mask.all())}


def thin_to_compact(
    model: nn.Module,
    example_input: Any,
    *,
    masks: Mapping[str, torch.Tensor | None] | None = None,
    previous: Iterable[RecipeLike | None] = (),
    options: ThinOptions | None = None,
    root: str = "",
) -> CompactModel:
    """Thin ``model`` in place (masks applied first) and describe the result.

    ``previous``: recipes of thinning already applied to ``model`` since it was dense, oldest first.
    ``masks`` is copied; the caller's mapping is not changed. ``root``: thin only that sub-module
    (``example_input`` is its input), for models that do not trace as a whole, such as a
    detector whose backbone body does; names in masks and recipe stay the whole model's.
    """
    options = options or ThinOptions()
    sliced: dict[str, torch.Tensor | None] = {
        name: mask for name, mask in (masks or {}).items() if isinstance(mask, torch.Tensor)
    }
    prefix = f"{root}." if root else ""
    inner = {name[len(prefix) :]: mask for name, mask in sliced.items() if name.startswith(prefix)}
    target = model.get_submodule(root) if root else model
    step = thin_model(target, example_input, masks=inner, **options.thin_model_kwargs()).under(root)
    sliced.update({prefix + name: mask for name, mask in inner.items()})  # sliced by thinning
    return CompactModel(
        model=model,
        recipe=compose_recipes(*previous, step),
        step=step,
        masks=informative_masks(sliced),
    )
