"""Checkpoints that load without running pickled code, written atomically.

See docs/checkpoint-format.md for the layout and docs/reliability.md for the guarantees.
"""

from prunecli.checkpoint.io import load_checkpoint, save_checkpoint
from prunecli.checkpoint.model import check_state_dict, load_model
from prunecli.checkpoint.plain import CheckpointPayloadError, check_plain
from prunecli.checkpoint.schema import (
    FIELDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    build_checkpoint,
    validate_structure,
)
from prunecli.checkpoint.testhooks import pause_point

__all__ = [
    "FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointPayloadError",
    "build_checkpoint",
    "check_plain",
    "check_state_dict",
    "load_checkpoint",
    "load_model",
    "pause_point",
    "save_checkpoint",
    "validate_structure",
]
