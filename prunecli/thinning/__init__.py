"""Physical removal of zero filters/channels with verification (see docs/thinning.md)."""

from prunecli.thinning.execute import apply_recipe
from prunecli.thinning.recipe import ThinningRecipe
from prunecli.thinning.thin import thin_model

__all__ = ["ThinningRecipe", "apply_recipe", "thin_model"]
