"""The ``prunecli run`` application: configuration, training loop, run directory, resume."""

from prunecli.training.app import RunResult, run_training
from prunecli.training.config import RunConfig, load_config
from prunecli.training.resolve import resolve_run_config

__all__ = ["RunConfig", "RunResult", "load_config", "resolve_run_config", "run_training"]
