"""An iterative run's files: one folder per finished iteration, ``best.pt``, and the loop's state.

Order of writes after an iteration (each atomic): ``iterations/NN/compact.pt``, then
``iterations/NN/metrics.json``, then ``best.pt`` when it improved, and last ``iterative.json``. A
run killed anywhere in between resumes from the state file, which names only iterations whose
files are complete, so the interrupted iteration is simply run again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from prunecli.checkpoint import build_checkpoint, load_checkpoint, load_model, save_checkpoint
from prunecli.checkpoint.plain import own_storage, stored_state_dict
from prunecli.checkpoint.testhooks import pause_point
from prunecli.iterative.scheduler import Snapshot
from prunecli.iterative.task import TaskResult
from prunecli.rundir import RunDir
from prunecli.thinning.recipe import ThinningRecipe


class RunStore:
    """Keeps iterations in a :class:`~prunecli.rundir.RunDir` (the loop's ``IterationStore``).

    ``header`` is saved with every state (the resolved spec, dense figures): what ``--resume``
    and ``prunecli report`` need besides the loop's own state.
    """

    def __init__(
        self,
        run_dir: RunDir,
        model_spec: Mapping[str, Any],
        *,
        header: Mapping[str, Any] | None = None,
        schedule_text: str | None = None,
        trusted_model: str | None = None,
    ) -> None:
        self.dir = run_dir
        self.model_spec = dict(model_spec)
        self.header = dict(header or {})
        self.schedule_text = schedule_text
        self.trusted_model = trusted_model

    def payload(self, snapshot: Snapshot, *, epoch: int, extras: Mapping[str, Any]) -> dict[str, Any]:
        return build_checkpoint(
            model=self.model_spec,
            recipe=snapshot.recipe.to_dict() if snapshot.recipe is not None else None,
            state_dict=stored_state_dict(snapshot.model),
            masks={k: own_storage(v) for k, v in snapshot.masks.items()},
            optimizer=None,
            optimizer_type="",
            lr_scheduler=None,
            scheduler=None,
            epoch=epoch,
            schedule_text=self.schedule_text,
            metrics=[],
            rng=None,
            extras=dict(extras),
        )

    def save_iteration(self, number: int, result: TaskResult, snapshot: Snapshot) -> str | None:
        path = self.dir.iteration_checkpoint(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        row = iteration_row(number, result)
        save_checkpoint(path, self.payload(snapshot, epoch=number, extras={"iteration": row}))
        self.dir.write_text(self.dir.iteration_metrics(number), json.dumps(row, indent=2) + "\n")
        return str(path.relative_to(self.dir.path))

    def save_best(self, number: int) -> None:
        self.dir.mark_best(self.dir.iteration_checkpoint(number))

    def save_state(self, state: dict[str, Any]) -> None:
        document = {**self.header, "scheduler": state}
        self.dir.write_text(self.dir.iterative_state, json.dumps(document, indent=1) + "\n")
        pause_point("iteration_saved")

    def load_snapshot(self, number: int) -> Snapshot:
        """Iteration ``number``'s model (rebuilt and re-thinned from its checkpoint) and masks."""
        path = self.dir.iteration_checkpoint(number)
        payload = load_checkpoint(path)
        model = load_model(path, model=self.trusted_model).train()
        masks = {k: v for k, v in (payload.get("masks") or {}).items() if isinstance(v, torch.Tensor)}
        recipe = ThinningRecipe.from_dict(payload["recipe"]) if payload.get("recipe") else None
        return Snapshot(model, masks, recipe)


def iteration_row(number: int, result: TaskResult) -> dict[str, Any]:
    """One line of the iteration table (``metrics.json``, the report's ``iterations``)."""
    measured = result.measured
    return {
        "iteration": number,
        "note": result.task.note,
        "goal": str(result.task.goal) if result.task.goal is not None else None,
        "start_from": result.task.start_from,
        "finetuned": result.task.finetune,
        "score": result.score,
        "weights": measured.weights,
        "params": measured.params,
        "macs": measured.macs,
        "latency_ms": measured.latency_ms,
        "meets_budget": result.meets_budget,
        "levels": dict(result.levels),
        **{k: v for k, v in result.metrics.items() if k != "iteration"},
        "counts": dict(measured.counts),
    }
