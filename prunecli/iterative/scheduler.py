"""The iterative pruning loop (NNI's ``PruningScheduler``): generator proposes, loop prunes, thins,
fine-tunes, evaluates, measures, and hands the result back, until the generator proposes nothing.

One task, in order:

1. **start** from the model the task names (``Task.start_from``: the previous result, the best so
   far, or the dense model), a copy, with its masks;
2. **prune** it with the :class:`~prunecli.iterative.pruning.LevelPruner` to the task's levels or goal;
3. **reset** the surviving weights to their initial / rewind values (lottery ticket; also every
   task when ``reset_weight`` is set);
4. **thin** it (``speedup``) when the pruner's target removes whole channels, through
   :func:`prunecli.thinning.compact.thin_to_compact` (the recipe stays relative to the dense model);
5. **fine-tune** with the user's function, the masks held in place by forward pre-hooks;
6. **evaluate** (the score, higher is better) and **measure** (ratios to dense, latency when asked;
   a result just over a latency budget is timed again, :func:`~prunecli.iterative.measure.recheck_latency`);
7. the :class:`~prunecli.iterative.task.TaskResult` goes to the store (a run directory, or nowhere)
   and to the generator.

Persistence is the store's job (:class:`prunecli.iterative.store.RunStore` for ``prunecli run``); the
loop asks it to save each finished iteration, then its own state (results, pending tasks, the
generator's ``state_dict``), so a killed run loses at most the iteration in progress.
"""

from __future__ import annotations

import collections
import copy
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from prunecli.errors import ConfigError, SourceLocation
from prunecli.iterative.measure import LatencyOptions, measure_model, recheck_latency
from prunecli.iterative.pruning import LevelPruner
from prunecli.iterative.task import Budget, Measurements, SearchSpace, Task, TaskGenerator, TaskResult
from prunecli.thinning.recipe import ThinningRecipe

Finetuner = Callable[[nn.Module], Any]
Evaluator = Callable[[nn.Module], float]


class BudgetUnreachable(ConfigError):
    """No allocation under the per-layer cap meets the budget (refused before any training)."""


@dataclass
class Snapshot:
    """A model between tasks: weights (thinned or not), its masks, and its recipe from dense."""

    model: nn.Module
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    recipe: ThinningRecipe | None = None

    def copy(self) -> Snapshot:
        return Snapshot(
            copy.deepcopy(self.model),
            {k: v.clone() for k, v in self.masks.items()},
            ThinningRecipe.from_dict(self.recipe.to_dict()) if self.recipe is not None else None,
        )


@dataclass
class BestResult:
    """The best result meeting the budget; unpacks as NNI's ``(task_id, model, masks, score, levels)``."""

    task_id: int
    model: nn.Module
    masks: dict[str, torch.Tensor]
    score: float | None
    levels: dict[str, float]
    result: TaskResult

    def __iter__(self) -> Iterator[Any]:
        return iter((self.task_id, self.model, self.masks, self.score, self.levels))


class IterationStore(Protocol):
    """Where finished iterations go (``prunecli run`` keeps them in the run directory)."""

    def save_iteration(self, number: int, result: TaskResult, snapshot: Snapshot) -> str | None:
        """Persist one iteration; return its checkpoint path (or None)."""

    def save_best(self, number: int) -> None:
        """Iteration ``number`` is the new best."""

    def save_state(self, state: dict[str, Any]) -> None:
        """Persist the loop's state (plain JSON data), atomically."""


class MaskEnforcer:
    """Keeps masked weights at zero while user code trains: each masked tensor is multiplied by its
    mask before every forward pass, and once more on exit (after the last optimizer step)."""

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        self.model = model
        self.masks = dict(masks)
        self.handles: list[Any] = []

    def apply(self, owner: str | None = None) -> None:
        """Zero the masked weights (of module ``owner`` only, when given)."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, mask in self.masks.items():
                if owner is not None and name.rpartition(".")[0] != owner:
                    continue
                if name in params and params[name].shape == mask.shape:
                    params[name].mul_(mask.to(params[name].device, params[name].dtype))

    def __enter__(self) -> MaskEnforcer:
        # each module zeroes its own tensors just before it runs: a tensor another module already
        # used in this forward pass is never changed under autograd's feet
        owners = {name.rpartition(".")[0] for name in self.masks}
        for module_name, module in self.model.named_modules():
            if module_name in owners:
                hook = module.register_forward_pre_hook(lambda *_, owner=module_name: self.apply(owner))
                self.handles.append(hook)
        self.apply()
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.apply()


class PruningScheduler:
    """Iterative pruning with NNI's shape: ``PruningScheduler(pruner, task_generator, finetuner,
    evaluator, speedup, reset_weight)``, then :meth:`compress` and :meth:`get_best_result`.

    ``finetuner(model)`` trains the model in place (masks are held for it); ``evaluator(model)``
    returns the score, higher is better. ``reset_weight``: True resets the surviving weights of
    every task to ``initial_state`` (default: the model's weights when the scheduler was built),
    the lottery ticket's reset; a generator asks for it per task with ``start_from: initial``.
    ``budget`` (``"macs <= 0.4"``) decides which results count for the best one; ``iterations``
    and ``max_sparsity_per_layer`` reach the generator through its :class:`SearchSpace`.
    """

    def __init__(
        self,
        pruner: LevelPruner,
        task_generator: TaskGenerator,
        finetuner: Finetuner | None = None,
        evaluator: Evaluator | None = None,
        speedup: bool = True,
        reset_weight: bool = False,
        *,
        model: nn.Module,
        example_input: Any,
        budget: Budget | str | None = None,
        iterations: int = 1,
        max_sparsity_per_layer: float = 0.9,
        latency: LatencyOptions | None = None,
        initial_state: Mapping[str, torch.Tensor] | None = None,
        rewind_state: Mapping[str, torch.Tensor] | None = None,
        store: IterationStore | None = None,
        latency_table: str | os.PathLike[str] | None = None,
        on_result: Callable[[int, TaskResult], None] | None = None,
        seed: int | None = None,
        where: Mapping[str, SourceLocation] | None = None,
    ) -> None:
        where = dict(where or {})
        if isinstance(iterations, bool) or int(iterations) <= 0:
            raise ConfigError(
                f"iterations must be a positive count, got {iterations}",
                location=where.get("iterations"),
                hint="set iterations: 1 or more (e.g. iterations: 5)",
            )
        if not 0 < max_sparsity_per_layer < 1:
            raise ConfigError(
                f"max_sparsity_per_layer must lie in (0, 1), got {max_sparsity_per_layer}",
                location=where.get("max_sparsity_per_layer"),
                hint="e.g. max_sparsity_per_layer: 0.9 keeps at least 10 % of every layer",
            )
        self.pruner, self.generator = pruner, task_generator
        self.finetuner, self.evaluator = finetuner, evaluator
        self.speedup, self.reset_weight = speedup, reset_weight
        self.example_input = example_input
        self.budget = Budget.parse(budget) if isinstance(budget, str) else budget
        self.iterations, self.max_level = int(iterations), float(max_sparsity_per_layer)
        self.latency = latency
        if self.budget is not None and self.budget.metric == "latency_ms" and latency is None:
            self.latency = LatencyOptions()
        self.store, self.on_result, self.seed = store, on_result, seed
        self.dense = Snapshot(copy.deepcopy(model))
        self.initial_state = {k: v.detach().clone() for k, v in (initial_state or model.state_dict()).items()}
        self.rewind_state = dict(rewind_state) if rewind_state is not None else None
        self.dense_counts = pruner.bind(self.dense.model, example_input)
        self.dense_measured = self._measure(self.dense.model)
        self.space = self._space(where)
        self.cost_model: Any = None
        self._bind_search(latency_table, where)
        self.results: list[TaskResult] = []
        self.pending: collections.deque[Task] = collections.deque()
        self.previous: Snapshot | None = None
        self.best: tuple[int, Snapshot] | None = None
        self.started = False

    # ------------------------------------------------------------------ set-up
    def _space(self, where: Mapping[str, SourceLocation]) -> SearchSpace:
        budget = self.budget
        reachable = check_budget(self.pruner, self.dense.model, budget, self.max_level, where)
        shares_metric = budget.metric if budget is not None and budget.is_ratio else "macs"
        return SearchSpace(
            shares=self.pruner.shares(self.dense.model, shares_metric),
            budget=budget,
            dense=self.dense_measured,
            max_level=self.max_level,
            iterations=self.iterations,
            reachable=reachable,
        )

    def _bind_search(
        self, table_path: str | os.PathLike[str] | None, where: Mapping[str, SourceLocation]
    ) -> None:
        """Give a search generator (one with ``bind``) the model's cost model: layer shapes for MACs
        and parameters, the measured per-layer latency table (cached at ``table_path``) for latency."""
        bind = getattr(self.generator, "bind", None)
        if not callable(bind):
            return
        cost, layers = search_cost(
            self.pruner,
            self.dense.model,
            self.example_input,
            self.space,
            self.latency,
            table_path,
            where,
        )
        self.cost_model = cost
        bind(cost=cost, layers=layers)

    def _measure(self, model: nn.Module) -> Measurements:
        assert self.pruner.weights is not None
        return measure_model(model, self.example_input, self.dense_counts, self.pruner.weights, self.latency)

    # ------------------------------------------------------------------ the loop
    def compress(self) -> nn.Module:
        """Run tasks until the generator proposes none; return the best model (else the last)."""
        if not self.started:
            self.pending.extend(self.generator.initial_tasks(self.space))
            self.started = True
            self._save_state()
        while self.pending:
            task = self.pending.popleft()
            number = len(self.results)
            result, snapshot = self.run_task(number, task)
            if self.store is not None:
                result.checkpoint = self.store.save_iteration(number, result, snapshot)
            self.results.append(result)
            self.previous = snapshot
            if result.meets_budget and (
                self.best is None or _rank(result) >= _rank(self.results[self.best[0]])
            ):
                self.best = (number, snapshot)
                if self.store is not None:
                    self.store.save_best(number)
            if self.on_result is not None:
                self.on_result(number, result)
            self.pending.extend(self.generator.next_tasks(result))
            self._save_state()
        best = self.get_best_result()
        if best is not None:
            return best.model
        return self.previous.model if self.previous is not None else self.dense.model

    def run_task(self, number: int, task: Task) -> tuple[TaskResult, Snapshot]:
        """Prune, reset, thin, fine-tune, evaluate and measure one task."""
        began = time.perf_counter()
        if self.seed is not None:
            from prunecli.training.seeding import epoch_seed, seed_everything

            seed_everything(epoch_seed(self.seed, 1000 + number))
        snap = self._start(task)
        model = snap.model
        if task.extra.get("pruner") == "admm" and self.finetuner is not None:
            self._admm(model, task)
        new = self.pruner.prune(model, levels=task.levels, goal=task.goal, max_level=self.max_level)
        masks = {**snap.masks, **new}
        MaskEnforcer(model, masks).apply()
        recipe = snap.recipe
        thinned = False
        if self.speedup and task.speedup and self.pruner.can_thin(model):
            from prunecli.thinning.compact import ThinOptions, thin_to_compact

            # Distiller's rule: a pruned filter goes with its BatchNorm shift (the exact rule would
            # keep every filter whose shift is non-zero, i.e. almost all of a trained model's)
            compact = thin_to_compact(
                model,
                self.example_input,
                masks=masks,
                previous=[recipe] if recipe is not None else [],
                options=ThinOptions(rule="distiller"),
            )
            masks, recipe, thinned = dict(compact.masks), compact.recipe, True
        reset = self._reset_state(task)
        if reset is not None:
            self._load_reset(model, reset, recipe)
            MaskEnforcer(model, masks).apply()
        if task.finetune and self.finetuner is not None:
            with MaskEnforcer(model, masks):
                self.finetuner(model)
        score = float(self.evaluator(model)) if self.evaluator is not None else None
        measured = self._measure(model)
        rechecked = recheck_latency(model, self.example_input, measured, self.budget, self.latency)
        result = TaskResult(
            task=task,
            score=score,
            measured=measured,
            levels=self.pruner.levels_of(model),
            meets_budget=self.budget.met_by(measured) if self.budget is not None else True,
            metrics={
                "iteration": number,
                "thinned": thinned,
                **rechecked,
                "time_s": time.perf_counter() - began,
            },
        )
        if self.cost_model is not None:
            result.metrics.update(prediction_check(self.cost_model, result))
        return result, Snapshot(model, masks, recipe)

    def _admm(self, model: nn.Module, task: Task) -> None:
        """AutoCompress's pruning step: ADMM rounds (fine-tuner + penalty) towards the task's levels."""
        from prunecli.iterative.admm import admm_train

        assert self.finetuner is not None
        admm_train(
            model,
            task.levels,
            lambda m: self.pruner.prune(m, levels=task.levels, goal=task.goal, max_level=self.max_level),
            self.finetuner,
            rho=float(task.extra.get("rho", 1e-4)),
            iterations=int(task.extra.get("admm_iterations", 2)),
        )

    def _start(self, task: Task) -> Snapshot:
        if task.start_from == "dense" or self.previous is None:
            return self.dense.copy()
        if task.start_from == "best" and self.best is not None:
            return self.best[1].copy()
        return self.previous.copy()

    def _reset_state(self, task: Task) -> Mapping[str, torch.Tensor] | None:
        if task.start_from == "rewind":
            if self.rewind_state is None:
                raise ConfigError(
                    "the generator asks for a rewind to early weights, but none were recorded",
                    hint="set rewind_epoch in the iterative section (or pass rewind_state=), "
                    "or use reset_to: initial",
                )
            return self.rewind_state
        if task.start_from == "initial" or self.reset_weight:
            return self.initial_state
        return None

    def _load_reset(
        self, model: nn.Module, state: Mapping[str, torch.Tensor], recipe: ThinningRecipe | None
    ) -> None:
        """Load ``state`` (dense shapes), sliced by ``recipe`` to the model's thinned shapes."""
        template = copy.deepcopy(self.dense.model)
        template.load_state_dict(dict(state))
        if recipe is not None:
            from prunecli.thinning import apply_recipe

            apply_recipe(template, recipe)
        model.load_state_dict(template.state_dict())

    # ------------------------------------------------------------------ results
    def get_best_result(self) -> BestResult | None:
        """The best result meeting the budget (None when none met it): the best-scoring fine-tuned
        one; an unfine-tuned probe (``Task.finetune=False``) only when no fine-tuned result met it."""
        if self.best is None:
            return None
        number, snap = self.best
        result = self.results[number]
        return BestResult(number, snap.model, snap.masks, result.score, result.levels, result)

    def probe_warning(self) -> str | None:
        """A warning when the best result is an unfine-tuned probe (None otherwise): a search's
        probes are scored without training, so such a model is rarely what the user wants."""
        best = self.get_best_result()
        if best is None or best.result.task.finetune:
            return None
        return (
            f"iteration {best.task_id} is the best result meeting {self.budget}, but it is an "
            "unfine-tuned probe: no fine-tuned iteration met the budget"
        )

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Plain data: everything but the models (the store keeps those per iteration)."""
        return {
            "results": [r.to_dict() for r in self.results],
            "pending": [t.to_dict() for t in self.pending],
            "generator": self.generator.state_dict(),
            "best": self.best[0] if self.best is not None else None,
            "started": self.started,
            "budget": str(self.budget) if self.budget is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any], load_snapshot: Callable[[int], Snapshot]) -> None:
        """Continue from :meth:`state_dict`; ``load_snapshot(n)`` rebuilds iteration ``n``'s model."""
        self.results = [TaskResult.from_dict(r) for r in state.get("results", [])]
        self.pending = collections.deque(Task.from_dict(t) for t in state.get("pending", []))
        self.generator.load_state_dict(state.get("generator") or {})
        self.started = bool(state.get("started", bool(self.results)))
        self.previous = load_snapshot(len(self.results) - 1) if self.results else None
        best = state.get("best")
        if best is not None:
            self.best = (
                int(best),
                self.previous if best == len(self.results) - 1 else load_snapshot(int(best)),
            )

    def _save_state(self) -> None:
        if self.store is not None:
            self.store.save_state(self.state_dict())


def search_cost(
    pruner: LevelPruner,
    model: nn.Module,
    example_input: Any,
    space: SearchSpace,
    latency: LatencyOptions | None,
    table_path: str | os.PathLike[str] | None,
    where: Mapping[str, SourceLocation] | None = None,
) -> tuple[Any, list[Any]]:
    """The cost model (and layer list) a search generator allocates against; for a latency budget
    the per-layer table is measured (or read from ``table_path``) and a budget below the smallest
    reachable prediction is :class:`BudgetUnreachable`. ``pruner`` must be bound to ``model``."""
    from prunecli.iterative.cost import cost_model_for

    where = where or {}
    try:
        cost, layers = cost_model_for(
            model,
            example_input,
            space,
            structured=pruner.can_thin(model),
            latency=latency,
            table_path=table_path,
            units=[unit.tensors for unit in pruner.engine(model).units],
        )
    except ValueError as exc:
        raise ConfigError(
            str(exc), location=where.get("budget"), hint="use target: filters or coupled"
        ) from None
    budget = space.budget
    if budget is not None and budget.metric == "latency_ms":
        smallest = cost.predict(dict.fromkeys(space.shares, space.max_level))
        if budget.value < smallest:
            raise BudgetUnreachable(
                f"budget {budget} cannot be met: with every prunable layer at max_sparsity_per_layer "
                f"{space.max_level:g} the predicted latency is {smallest:.4g} ms (dense {cost.dense:.4g} ms)",
                location=where.get("budget"),
                hint=f"ask for latency_ms <= {smallest:.4g} or more, or raise max_sparsity_per_layer",
            )
    return cost, layers


def check_budget(
    pruner: LevelPruner,
    model: nn.Module,
    budget: Budget | None,
    max_level: float,
    where: Mapping[str, SourceLocation] | None = None,
) -> float | None:
    """The smallest value of a ratio budget's metric any allocation reaches (None for latency);
    :class:`BudgetUnreachable` when the budget lies below it. ``pruner`` must be bound to ``model``.

    Structure alone decides it (every prunable unit at ``max_level``), so it is checked on the
    model before any training.
    """
    if budget is None or not budget.is_ratio:
        return None
    reachable = pruner.reachable(model, budget.metric, max_level)
    if budget.value < reachable - 1e-9:
        raise BudgetUnreachable(
            f"budget {budget} cannot be met: with every prunable layer at max_sparsity_per_layer "
            f"{max_level:g} the model keeps {reachable:.4f} of its dense {budget.metric}",
            location=(where or {}).get("budget"),
            hint=f"ask for {budget.metric} <= {reachable:.4f} or more, or raise max_sparsity_per_layer "
            "(at most just under 1)",
        )
    return reachable


def prediction_check(cost: Any, result: TaskResult) -> dict[str, float]:
    """The search's predicted cost of the levels reached beside the measured one (and their
    relative error), so a latency table's accuracy is visible for every result."""
    predicted = float(cost.predict(result.levels))
    out = {f"predicted_{cost.metric}": predicted}
    try:
        measured = result.measured.value(cost.metric)
    except (ValueError, AttributeError):
        return out
    if measured:
        out[f"{cost.metric}_prediction_error"] = (predicted - measured) / measured
    return out


def _rank(result: TaskResult) -> tuple[bool, float]:
    """Order among results meeting the budget: fine-tuned before probes, then by score."""
    score = float("-inf") if result.score is None else float(result.score)
    return (bool(result.task.finetune), score)
