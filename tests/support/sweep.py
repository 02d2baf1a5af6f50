"""scripts/runtime_sweep.py as a module: the harness that runs Distiller's examples on their models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "runtime_sweep.py"


def runtime_sweep() -> ModuleType:
    """The sweep script, imported once (under a name of its own)."""
    name = "prunecli_runtime_sweep"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]
