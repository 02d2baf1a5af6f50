"""Read Distiller's original ``.pth.tar`` files without importing or running anything they name.

Distiller's ``save_checkpoint`` pickles two kinds of Python objects besides tensors and plain
containers: the optimizer *class* (``optimizer_type``, e.g. ``torch.optim.sgd.SGD``) and its
``ThinningRecipe`` namedtuples (``distiller.thinning.ThinningRecipe``). This module reads such
a file with torch's weights-only unpickler, to which it adds exactly those names, each mapped to a
local stand-in class defined here. Distiller is never imported, no optimizer is constructed, and a
pickle naming any other class (a quantizer, ``os.system``, a numpy scalar ...) is refused with that
name, before anything from the file runs.
"""

from __future__ import annotations

import pickle
from collections import namedtuple
from pathlib import Path
from typing import Any

import torch

from prunecli.errors import CheckpointError, SourceLocation

from .sniff import PickleScan, scan_pickle, weights_only_globals

#: The layout of Distiller's ``ThinningRecipe`` namedtuple (``distiller/thinning.py``): ``modules``
#: maps a module name to ``{attribute: value or (dim, indices)}``; ``parameters`` maps a parameter
#: name to a list of ``(dim, indices)`` or ``(dim, indices, view_4d, view_2d)`` directives.
#: Building one only builds a tuple, so letting the unpickler construct it runs no foreign code.
DistillerRecipe = namedtuple("DistillerRecipe", ["modules", "parameters"])

RECIPE_PATH = "distiller.thinning.ThinningRecipe"

#: torch.optim classes a Distiller checkpoint may name as ``optimizer_type`` (module, class name)
_OPTIMIZERS: tuple[tuple[str, str], ...] = (
    ("sgd", "SGD"),
    ("adam", "Adam"),
    ("adamw", "AdamW"),
    ("adadelta", "Adadelta"),
    ("adagrad", "Adagrad"),
    ("adamax", "Adamax"),
    ("asgd", "ASGD"),
    ("lbfgs", "LBFGS"),
    ("rmsprop", "RMSprop"),
    ("rprop", "Rprop"),
    ("sparse_adam", "SparseAdam"),
    ("nadam", "NAdam"),
    ("radam", "RAdam"),
)


class OptimizerClassRef:
    """Stands for an optimizer class named in the pickle; it only carries the class name.

    The unpickler hands out the class object itself (never an instance); creating one is refused,
    so a hostile pickle that tries to call it gets nothing.
    """

    optimizer_name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> OptimizerClassRef:
        raise pickle.UnpicklingError(f"a Distiller checkpoint never constructs {cls.optimizer_name}")


def _optimizer_refs() -> dict[str, type[OptimizerClassRef]]:
    refs: dict[str, type[OptimizerClassRef]] = {}
    for module, name in _OPTIMIZERS:
        ref = type(name, (OptimizerClassRef,), {"optimizer_name": name, "__module__": __name__})
        refs[f"torch.optim.{module}.{name}"] = ref
        refs[f"torch.optim.{name}"] = ref
    return refs


OPTIMIZER_REFS: dict[str, type[OptimizerClassRef]] = _optimizer_refs()

#: every name this reader adds to torch's weights-only allowlist, and what it becomes
ALLOWED: dict[str, Any] = {RECIPE_PATH: DistillerRecipe, **OPTIMIZER_REFS}


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Please file"))]
    return (useful or lines or [type(exc).__name__])[0][:200]


def _refused(scan: PickleScan) -> list[str]:
    """Names in the pickle that neither torch's weights-only reader nor :data:`ALLOWED` accepts."""
    allowed = weights_only_globals() | set(ALLOWED)
    return sorted({g for g in scan.globals if g not in allowed and not g.startswith("torch._utils.")})


def _refusal(path: Path, names: list[str]) -> CheckpointError:
    quantizer = any(".quantization." in n for n in names)
    return CheckpointError(
        f"refused: this Distiller checkpoint refers to {', '.join(names[:8])}, which a Distiller checkpoint "
        "of a pruned or thinned model never contains; nothing from the file was executed",
        location=SourceLocation(str(path)),
        hint=(
            "quantized Distiller checkpoints are not supported (pruning, thinning and optimizer state are); "
            if quantizer
            else ""
        )
        + "re-save the file where Distiller is installed with only tensors, dicts, lists, numbers and strings "
        "(see docs/checkpoint-format.md, 'Distiller checkpoints')",
    )


def load_pickled(path: str | Path) -> Any:
    """``torch.load`` of a Distiller file, allowing only :data:`ALLOWED` beyond tensors and containers.

    Raises :class:`CheckpointError` naming any other class the file refers to; damaged files raise
    whatever torch raises (the caller turns that into a "truncated or corrupt" message).
    """
    path = Path(path)
    scan = scan_pickle(path)
    names = _refused(scan)
    if names:
        raise _refusal(path, names)
    safe = [(stand_in, name) for name, stand_in in ALLOWED.items()]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [name for name in _names_in_message(str(exc)) if name not in ALLOWED]
        if found:  # the scan could not see every opcode (a stream it cannot parse)
            raise _refusal(path, found) from None
        if scan.complete:  # well-formed, yet refused: it tried something a Distiller file never does
            raise CheckpointError(
                "refused: the file's pickle does something a Distiller checkpoint never does "
                f"({_reason(exc)}); nothing from it was executed",
                location=SourceLocation(str(path)),
                hint="pass a checkpoint written by Distiller's save_checkpoint or by prunecli",
            ) from None
        raise


def _names_in_message(message: str) -> list[str]:
    """The ``GLOBAL a.b.C`` names torch's refusal message mentions."""
    words = message.replace("`", " ").replace("(", " ").replace(")", " ").split()
    return [words[i + 1].rstrip(".,") for i, w in enumerate(words[:-1]) if w == "GLOBAL"]


def plain(value: Any) -> Any:
    """Replace the stand-ins by plain data: recipes become dicts, optimizer classes their names."""
    if isinstance(value, DistillerRecipe):
        return {"modules": plain(value.modules), "parameters": plain(value.parameters)}
    if isinstance(value, type) and issubclass(value, OptimizerClassRef):
        return value.optimizer_name
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if type(value) is tuple:
        return tuple(plain(v) for v in value)
    return value
