"""Models by spec string: Distiller's zoo (exact parameter names), torchvision, imports and files.

See :mod:`prunecli.models.spec` for the spec syntax and docs/models.md for the zoo.
"""

from prunecli.models.spec import (
    ModelSpec,
    available_models,
    create_model,
    default_input_shape,
    parse_spec,
)
from prunecli.models.zoo import ZOO

__all__ = [
    "ZOO",
    "ModelSpec",
    "available_models",
    "create_model",
    "default_input_shape",
    "parse_spec",
]
