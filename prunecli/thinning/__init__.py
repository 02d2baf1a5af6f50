"""Physical removal of zero filters/channels with verification (see docs/thinning.md)."""

from prunecli.thinning.execute import apply_recipe
from prunecli.thinning.layers import register_custom_layer
from prunecli.thinning.recipe import ThinningRecipe
from prunecli.thinning.thin import thin_model

__all__ = ["ThinningRecipe", "apply_recipe", "register_custom_layer", "thin_model"]
