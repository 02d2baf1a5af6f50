"""The vocabulary of NNI's config_list: every key NNI 2 and NNI 3 define, and what prunecli does with it.

One table owns the keys, so the parser, its did-you-mean, ``prunecli convert`` and the key-by-key
table of docs/dialects.md agree. Plain data, no torch.
"""

from __future__ import annotations

from prunecli.schedule.native import PRESETS

#: the keys that choose modules (at least one is required in an entry, as in NNI)
SELECT_KEYS: tuple[str, ...] = ("op_types", "op_names", "op_names_re", "op_partial_names")
#: the keys that take modules out of an entry's own selection (NNI 3)
EXCLUDE_KEYS: tuple[str, ...] = ("exclude_op_names", "exclude_op_names_re", "exclude_op_types")
#: the keys that give an entry its sparsity; an entry gives exactly one
RATIO_KEYS: tuple[str, ...] = ("sparse_ratio", "sparsity_per_layer", "sparsity", "total_sparsity")
#: the other pruning settings prunecli maps onto the engine
SETTING_KEYS: tuple[str, ...] = (
    "exclude",
    "max_sparsity_per_layer",
    "max_sparse_ratio",
    "min_sparse_ratio",
    "global_group_id",
    "dependency_group_id",
    "granularity",
)
#: NNI keys with a meaning prunecli's engine cannot reproduce: key -> why, and what to write instead
UNSUPPORTED_KEYS: dict[str, str] = {
    "sparse_threshold": "a fixed score threshold has no engine equivalent; give sparse_ratio instead",
    "target_names": "prunecli prunes each selected module's weight; remove target_names",
    "target_settings": "write the settings (sparse_ratio, granularity, ...) in the entry itself",
    "align": "masks derived from another module's are not supported; remove align",
    "apply_method": "prunecli multiplies by the mask; remove apply_method",
    "fuse_names": "module fusion belongs to quantization; remove fuse_names",
    "internal_metric_block": "remove internal_metric_block (the engine's targets choose the groups)",
}
#: keys of quantization configs (NNI's quantizers read the same config_list format)
QUANTIZATION_KEYS: tuple[str, ...] = (
    "quant_types",
    "quant_bits",
    "quant_dtype",
    "quant_scheme",
    "quant_start_step",
)
ENTRY_KEYS: tuple[str, ...] = (*SELECT_KEYS, *EXCLUDE_KEYS, *RATIO_KEYS, *SETTING_KEYS)
KNOWN_KEYS: tuple[str, ...] = (*ENTRY_KEYS, *UNSUPPORTED_KEYS, *QUANTIZATION_KEYS)

#: the keys of the mapping form of an NNI file (``pruner:`` plus ``config_list:``)
DOCUMENT_KEYS: tuple[str, ...] = (
    "pruner",
    "config_list",
    "start_epoch",
    "total_times",
    "interval_epochs",
    "training_steps",
)
#: metrics that rank by training data: their one-shot pruners may first train ``training_steps``
DATA_METRICS: tuple[str, ...] = ("taylor", "apoz", "activation_mean", "bn_scale")

#: NNI's pruners are the engine's presets of the same name
PRUNERS: tuple[str, ...] = tuple(PRESETS)

#: what ``op_types: [default]`` stands for: the weighted layer types of NNI 2
DEFAULT_OP_TYPES: tuple[str, ...] = (
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Linear",
    "Bilinear",
    "PReLU",
    "Embedding",
    "EmbeddingBag",
)
#: torch.nn class names a misspelled op_type is compared with before the model is known
COMMON_OP_TYPES: tuple[str, ...] = (
    *DEFAULT_OP_TYPES,
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "LayerNorm",
    "GroupNorm",
    "MultiheadAttention",
    "LSTM",
    "GRU",
    "RNN",
)

#: ``granularity`` -> the engine target it selects ("default": the pruner's own)
GRANULARITY_TARGETS: dict[str, str | None] = {
    "default": None,
    "out_channel": "filters",
    "in_channel": "channels",
}
