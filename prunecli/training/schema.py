"""JSON Schema of a run configuration (``configs/*.yaml``).

Kept as data so the validator reports every wrong key with its location, and so the documentation
(`docs/run.md`) and the command-line overrides can be derived from one list of fields.
"""

from __future__ import annotations

from typing import Any

#: optimizer name -> torch.optim class name
OPTIMIZERS: dict[str, str] = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")

_POSITIVE_INT: dict[str, Any] = {"type": "integer", "minimum": 1}
_NULLABLE_POSITIVE_INT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1}
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"], "minLength": 1}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "prunecli run configuration",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "schedule": {**_NULLABLE_STRING, "description": "schedule YAML (relative to this file)"},
        "model": {
            **_NULLABLE_STRING,
            "description": "zoo name, torchvision:NAME, pkg.mod:factory or file.py:Factory",
        },
        "model_args": {"type": "object", "description": "extra keyword arguments for the model factory"},
        "initial_weights": {
            **_NULLABLE_STRING,
            "description": "start from the weights of this checkpoint (prunecli or Distiller; "
            "a thinned one brings its thinned architecture)",
        },
        "resume_from": {
            **_NULLABLE_STRING,
            "description": "continue training from this checkpoint file (prunecli or Distiller): "
            "weights, thinning, masks, optimizer state, and the epoch after the saved one",
        },
        "dataset": {**_NULLABLE_STRING, "description": "digits, mnist, cifar10, cifar100, imagefolder, fake"},
        "data_dir": {**_NULLABLE_STRING, "description": "where the data set lives"},
        "dataset_options": {"type": "object", "description": "extra keyword arguments for load_dataset"},
        "val_fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "optimizer": {"enum": sorted(OPTIMIZERS), "description": "sgd, adam or adamw"},
        "optimizer_args": {
            "type": "object",
            "description": "further optimizer arguments (nesterov, dampening, betas, eps, amsgrad)",
        },
        "epochs": {**_NULLABLE_POSITIVE_INT, "description": "epochs to run (default: last policy epoch + 1)"},
        "batch_size": _POSITIVE_INT,
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "momentum": {"type": "number", "minimum": 0},
        "weight_decay": {"type": "number", "minimum": 0},
        "seed": {"type": "integer", "minimum": 0},
        "device": {"enum": list(DEVICES)},
        "workers": {"type": "integer", "minimum": 0},
        "threads": {
            **_NULLABLE_POSITIVE_INT,
            "description": "torch intra-op threads (default: torch's choice)",
        },
        "max_steps_per_epoch": {**_NULLABLE_POSITIVE_INT, "description": "cut every epoch to K steps"},
        "max_eval_batches": {**_NULLABLE_POSITIVE_INT, "description": "cut validation/test to K batches"},
        "checkpoint_every": {**_POSITIVE_INT, "description": "write checkpoint.pt every N epochs"},
        "out_dir": {**_NULLABLE_STRING, "description": "the run directory (default runs_dir/name-timestamp)"},
        "runs_dir": {"type": "string", "minLength": 1},
        "name": {**_NULLABLE_STRING, "description": "run name (default: the schedule's file name)"},
        "auto_dependency": {"type": "boolean"},
        "prune_normalized": {
            "type": "boolean",
            "description": "coupled pruning also prunes channels that LayerNorm/GroupNorm normalise "
            "(implies auto_dependency; thinning is then approximate and reports its deviation)",
        },
        "narrow_heads": {
            "type": "boolean",
            "description": "with prune_normalized: attention heads are narrowed alike (head_dim shrinks, the "
            "number of heads stays) instead of removed whole",
        },
        "round_to": {
            "type": "integer",
            "minimum": 1,
            "description": "with auto_dependency: kept channel counts rounded up to a multiple of this",
        },
        "compact": {"type": "boolean", "description": "thin the final model into compact.pt"},
        "int8": {
            "type": "boolean",
            "description": "when the run carries a quantization plan, compact.pt holds the int8 model",
        },
        "amp": {
            "enum": [None, "bf16", "fp16"],
            "description": "mixed precision: autocast to bf16, or fp16 with a gradient scaler (default: off)",
        },
        "channels_last": {"type": "boolean", "description": "NHWC memory format for model and images"},
        "sync_batchnorm": {
            "type": "boolean",
            "description": "BatchNorm statistics over the global batch when several processes train",
        },
        "deterministic": {"type": "boolean"},
        "quiet": {"type": "boolean"},
        "strict": {
            "type": "boolean",
            "description": "refuse a schedule with a key given twice (default: warn, the last value wins)",
        },
        "pruner": {
            "type": ["string", "null"],
            "description": "the NNI pruner (L1NormPruner, ...) of an NNI config_list schedule that names none",
        },
    },
}

#: the fields and their types, for ``--set key=value`` parsing and documentation
FIELDS: tuple[str, ...] = tuple(CONFIG_SCHEMA["properties"])
