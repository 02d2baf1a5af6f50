"""``prunecli run`` on an iterative schedule: pretrain, then the iterative loop, then the report.

The run configuration (model, data set, optimizer, batch size, device, seed, ...) is the one every
``prunecli run`` reads (``docs/run.md``); the schedule's ``iterative:`` section
(:mod:`prunecli.iterative.spec`) says how to prune. The run directory
(:class:`~prunecli.rundir.RunDir`) keeps the dense model, every finished iteration, ``best.pt``
and the loop's state, so ``--resume`` continues after a kill from the last finished iteration.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from prunecli.checkpoint.plain import stored_state_dict
from prunecli.devices import resolve_device
from prunecli.errors import ConfigError, Interrupted, SourceLocation
from prunecli.iterative.check import build_parts, check_on_model
from prunecli.iterative.measure import LatencyOptions
from prunecli.iterative.pruning import IterativePruningError
from prunecli.iterative.scheduler import PruningScheduler
from prunecli.iterative.spec import IterativeSpec, with_overrides
from prunecli.iterative.store import RunStore, iteration_row
from prunecli.iterative.task import TaskResult
from prunecli.rundir import RunDir
from prunecli.training.config import RunConfig
from prunecli.training.progress import Reporter

log = logging.getLogger("prunecli.iterative")

#: the run-configuration fields ``--resume`` may change
RESUME_OVERRIDES = frozenset({"quiet", "device", "workers"})


@dataclass
class IterativeRunResult:
    """What an iterative run produced; plain data for ``--json``."""

    run_dir: str
    iterations: list[dict[str, Any]]
    best: int | None
    budget: str | None
    dense: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None
    html_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def iterative_spec_of(schedule_path: str | None) -> IterativeSpec | None:
    """The checked ``iterative:`` section of a schedule file, or None for other schedules."""
    if not schedule_path:
        return None
    from prunecli.schedule import load_schedule

    return load_schedule(schedule_path).iterative


def is_iterative_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` was written by an iterative run (``--resume`` then continues the loop)."""
    return Path(run_dir).is_dir() and RunDir(Path(run_dir)).is_iterative()


class _Run:
    """One iterative run: data, model, loop and files."""

    def __init__(self, config: RunConfig, spec: IterativeSpec, reporter: Reporter) -> None:
        self.config, self.spec, self.reporter = config, spec, reporter
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ inputs
    def load_inputs(self) -> None:
        from prunecli.data import load_dataset
        from prunecli.training.loop import steps_in_epoch
        from prunecli.training.setup import dataset_options_for_model
        from prunecli.training.tasks import task_for

        cfg = self.config
        if not cfg.model or not cfg.dataset:
            missing = [k for k in ("model", "dataset") if not getattr(cfg, k)]
            raise ConfigError(
                f"no {' and no '.join(missing)} given for the run",
                hint="pass --model/--dataset or set them in the config file (configs/<schedule name>.yaml)",
            )
        if cfg.epochs is not None:
            raise ConfigError(
                "an iterative run counts its epochs per phase, not with epochs",
                location=SourceLocation(cfg.schedule) if cfg.schedule else None,
                hint="set pretrain_epochs and finetune_epochs in the iterative section, and drop --epochs",
            )
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        options = dataset_options_for_model(cfg.dataset, cfg.dataset_options, cfg.model)
        self.bundle = load_dataset(
            cfg.dataset, cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction, **options
        )
        self.train_loader, val_loader, self.test_loader = self.bundle.loaders(
            cfg.batch_size, workers=cfg.workers, seed=cfg.seed
        )
        self.val_loader = val_loader if len(self.bundle.val) else self.test_loader
        self.steps = steps_in_epoch(self.train_loader, cfg.max_steps_per_epoch)
        self.task = task_for(self.bundle)
        if self.task.name != "classification":
            raise ConfigError(
                f"iterative pruning scores models by top-1; the {cfg.dataset} data set trains a {self.task.name} model",
                hint="use a classification data set (digits, mnist, cifar10, imagefolder, ...)",
            )
        self.example_input = self.task.example_input(self.bundle, self.device)
        self.latency = self._latency_options()

    def _latency_options(self) -> LatencyOptions | None:
        spec = self.spec
        budget = spec.budget_value
        if spec.latency is None and (budget is None or budget.metric != "latency_ms"):
            return None
        options = LatencyOptions(**(spec.latency or {}))
        where = spec.where.get("latency") or spec.where.get("budget")
        try:
            resolve_device(options.device)
        except ConfigError as exc:
            raise ConfigError(
                f"latency cannot be measured: {exc.message}",
                location=where,
                hint="measure on a device this machine has (latency: {device: cpu}), or use a ratio "
                "budget such as 'macs <= 0.4'",
            ) from None
        return options

    def new_model(self) -> tuple[nn.Module, Any]:
        from prunecli.models import create_model

        cfg = self.config
        return create_model(
            cfg.model, dataset=cfg.dataset, num_classes=self.bundle.num_classes, **cfg.model_args
        )

    # ------------------------------------------------------------------ training pieces
    def train_epochs(self, model: nn.Module, epochs: int, first_epoch: int) -> None:
        """``epochs`` epochs of plain training; epoch numbers fix the shuffling (resumes repeat it)."""
        from prunecli.training.loop import NoCompression, train_epoch
        from prunecli.training.setup import build_optimizer

        if epochs <= 0:
            return
        optimizer = build_optimizer(self.config, model)
        criterion = nn.CrossEntropyLoss()
        for epoch in range(first_epoch, first_epoch + epochs):
            self.train_loader.sampler.set_epoch(epoch)
            with self.reporter.epoch_progress(epoch, self.steps) as on_step:
                train_epoch(
                    model,
                    self.train_loader,
                    criterion,
                    optimizer,
                    NoCompression(),
                    epoch,
                    self.steps,
                    self.device,
                    on_step,
                    objective=self.task.objective(),
                )

    def calibrate(self, model: nn.Module, after_backward: Any) -> None:
        """``calibration_batches`` training batches, forward and backward without an optimizer step
        (eval mode: BatchNorm statistics stay as they are), for metrics such as taylor or apoz."""
        was_training = model.training
        model.eval()
        objective = self.task.objective()
        try:
            for step, batch in enumerate(self.train_loader):
                if step >= self.spec.calibration_batches:
                    break
                model.zero_grad(set_to_none=True)
                loss, _ = objective.loss(model, batch, self.device)
                loss.backward()
                after_backward()
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)

    def evaluate(self, model: nn.Module, loader: Any) -> Any:
        return self.task.evaluate(model, loader, self.device, self.config.max_eval_batches)

    def weights_file(self, path: Path, model: nn.Module, spec: Any) -> None:
        save_checkpoint(path, build_checkpoint(model=spec.to_dict(), state_dict=stored_state_dict(model)))

    # ------------------------------------------------------------------ phases
    def start_fresh(self) -> None:
        from prunecli.training.seeding import seed_everything

        cfg = self.config
        seed_everything(cfg.seed)
        self.load_inputs()
        self.model, self.model_spec = self.new_model()
        self.model.to(self.device)
        if cfg.initial_weights:
            from prunecli.training.setup import load_initial_weights

            loaded, _ = load_initial_weights(self.model, cfg.initial_weights, model_spec=cfg.model)
            if loaded is not self.model:
                raise ConfigError(
                    f"{cfg.initial_weights} holds a thinned model; iterative pruning starts from a dense one",
                    hint="pass the dense checkpoint the thinned one came from",
                )
        self.preflight()  # before the run directory exists: a refused run leaves nothing behind
        name = cfg.name or (Path(cfg.schedule).stem if cfg.schedule else str(cfg.model))
        self.dir = RunDir.create(cfg.out_dir, cfg.runs_dir, name)
        self.dir.write_config({**cfg.to_dict(), "out_dir": str(self.dir.path)})
        if cfg.schedule:
            self.dir.write_schedule(Path(cfg.schedule).read_text(encoding="utf-8"))
        self.write_header(phase="pretrain")

    def start_resumed(self, run_dir: Path, overrides: dict[str, Any]) -> None:
        import yaml

        self.dir = RunDir(run_dir)
        header = self.dir.read_iterative_state()
        if not header:
            raise ConfigError(
                f"{run_dir} is not an iterative run directory (it has no iterative state)",
                hint="pass the directory an iterative 'prunecli run' created",
            )
        saved = yaml.safe_load(self.dir.config.read_text(encoding="utf-8"))
        extra = sorted(set(k for k, v in overrides.items() if v is not None) - RESUME_OVERRIDES)
        if extra:
            raise ConfigError(
                f"cannot change {', '.join(extra)} when resuming an iterative run",
                hint="only --device, --workers and --quiet may change; start a new run otherwise",
            )
        self.config = RunConfig.from_dict(
            {**saved, **{k: v for k, v in overrides.items() if v is not None}}, source=str(self.dir.config)
        )
        self.spec = IterativeSpec.from_dict(header["spec"])
        self.load_inputs()
        self.model, self.model_spec = self.new_model()
        self.model.to(self.device)
        self.header = header

    def write_header(self, phase: str, dense: dict[str, Any] | None = None) -> None:
        self.header = {"spec": self.spec.to_dict(), "phase": phase, "dense": dense or {}}
        import json

        self.dir.write_text(self.dir.iterative_state, json.dumps(self.header, indent=1) + "\n")

    def pretrain(self) -> None:
        """Dense training before the first iteration (skipped when ``dense.pt`` already exists)."""
        spec = self.spec
        if self.dir.dense_model.is_file():
            self.model.load_state_dict(load_checkpoint(self.dir.dense_model)["state_dict"])
            return
        if self.dir.initial_weights.is_file():  # a run killed while pretraining starts it again
            self.model.load_state_dict(load_checkpoint(self.dir.initial_weights)["state_dict"])
        else:
            self.weights_file(self.dir.initial_weights, self.model, self.model_spec)
        rewind = spec.rewind_epoch
        if rewind is not None:
            self.train_epochs(self.model, rewind, 0)
            self.weights_file(self.dir.rewind_weights, self.model, self.model_spec)
        done = rewind or 0
        self.train_epochs(self.model, spec.pretrain_epochs - done, done)
        self.weights_file(self.dir.dense_model, self.model, self.model_spec)
        test = self.evaluate(self.model, self.test_loader)
        val = self.evaluate(self.model, self.val_loader)
        from prunecli.training.setup import model_stats

        dense = {**model_stats(self.model, self.example_input), "top1": test.top1, "val_top1": val.top1}
        self.reporter.info(
            f"dense model after {spec.pretrain_epochs} epoch(s): top-1 {100 * (val.top1 or 0):.2f}% (val), "
            f"{dense['macs']:,} MACs, {dense['params']:,} parameters"
        )
        self.write_header(phase="search", dense=dense)

    def preflight(self) -> None:
        """Every refusal that needs the model, before any training: names, the budget's reach."""
        check_on_model(self.spec, self.model, self.example_input, latency=self.latency)

    def build_scheduler(self) -> PruningScheduler:
        spec, where = self.spec, self.spec.where
        generator, pruner = build_parts(spec, calibrate=self.calibrate)
        initial = (
            load_checkpoint(self.dir.initial_weights)["state_dict"]
            if self.dir.initial_weights.is_file()
            else None
        )
        rewind = (
            load_checkpoint(self.dir.rewind_weights)["state_dict"]
            if self.dir.rewind_weights.is_file()
            else None
        )
        epochs_before = spec.pretrain_epochs
        finetune_epochs = spec.finetune_epochs
        counter = {"number": 0}

        def finetune(model: nn.Module) -> None:
            self.train_epochs(model, finetune_epochs, epochs_before + counter["number"] * finetune_epochs)

        def score(model: nn.Module) -> float:
            return float(self.evaluate(model, self.val_loader).top1)

        store = RunStore(
            self.dir,
            self.model_spec.to_dict(),
            header=self.header,
            schedule_text=self.dir.read_schedule_text(),
            trusted_model=self.config.model,
        )

        def on_result(number: int, result: TaskResult) -> None:
            counter["number"] = number + 1
            best = self.scheduler.best is not None and self.scheduler.best[0] == number
            row = iteration_row(number, result)
            log.info("iteration %s", row)
            self.reporter.iteration_line(row, best=best)

        try:
            scheduler = PruningScheduler(
                pruner,
                generator,
                finetuner=finetune,
                evaluator=score,
                speedup=spec.speedup,
                reset_weight=spec.reset_weight,
                model=self.model,
                example_input=self.example_input,
                budget=spec.budget,
                iterations=spec.iterations,
                max_sparsity_per_layer=spec.max_sparsity_per_layer,
                latency=self.latency,
                latency_table=self.dir.latency_table,
                initial_state=initial,
                rewind_state=rewind,
                store=store,
                on_result=on_result,
                seed=self.config.seed,
                where=where,
            )
        except IterativePruningError as exc:
            raise ConfigError(
                exc.message, location=where.get(exc.key) or where.get("pruner"), hint=exc.hint
            ) from None
        except ValueError as exc:  # the generator refusing the search space
            raise ConfigError(
                str(exc), location=where.get("generator"), hint="see docs/iterative.md"
            ) from None
        state = self.header.get("scheduler")
        if state:
            scheduler.load_state_dict(state, store.load_snapshot)
            counter["number"] = len(scheduler.results)
        self.scheduler = scheduler
        return scheduler

    def search(self) -> None:
        scheduler = self.scheduler
        try:
            scheduler.compress()
        except KeyboardInterrupt:
            done = len(scheduler.results)
            raise Interrupted(
                f"interrupted during iteration {done}; {self.dir.iterative_state} holds the {done} finished one(s)",
                hint=f"continue with: prunecli run --resume {self.dir.path}",
            ) from None
        except ValueError as exc:
            raise ConfigError(
                str(exc), location=self.spec.where.get("generator"), hint="see docs/iterative.md"
            ) from None

    # ------------------------------------------------------------------ the end
    def finish(self) -> IterativeRunResult:
        scheduler = self.scheduler
        rows = [iteration_row(n, r) for n, r in enumerate(scheduler.results)]
        best = scheduler.get_best_result()
        result = IterativeRunResult(
            run_dir=str(self.dir.path),
            iterations=rows,
            best=best.task_id if best is not None else None,
            budget=self.spec.budget,
            dense=dict(self.header.get("dense") or {}),
            warnings=self.warnings,
        )
        if best is None:
            message = "no iteration met the budget; best.pt was not written"
            self.warnings.append(message)
            self.reporter.warn(message)
            return result
        probe = scheduler.probe_warning()
        if probe is not None:
            self.warnings.append(probe)
            self.reporter.warn(probe)
        test = self.evaluate(best.model, self.test_loader)
        result.test = {"top1": test.top1, "top5": test.top5, "loss": test.loss, "samples": test.samples}
        payload = load_checkpoint(self.dir.iteration_checkpoint(best.task_id))
        payload["extras"].update(
            baseline_top1=result.dense.get("top1"), test=result.test, best_iteration=best.task_id
        )
        save_checkpoint(self.dir.best, payload)
        self.write_report(result)
        self.reporter.info(
            f"best: iteration {best.task_id} (meets {self.spec.budget}), test top-1 "
            f"{100 * (test.top1 or 0):.2f}% (dense {100 * (result.dense.get('top1') or 0):.2f}%), "
            f"MACs {best.result.measured.macs:.3f} of dense; {self.dir.best}"
        )
        return result

    def write_report(self, result: IterativeRunResult) -> None:
        from prunecli.report.build import ReportOptions, build_report
        from prunecli.report.html import to_html
        from prunecli.report.render import to_json

        options = ReportOptions(latency_runs=5, latency_warmup=1, deployed_latency=False)
        report = build_report(self.dir.path, options, model_spec=self.config.model)
        self.dir.write_text(self.dir.report, to_json(report))
        self.dir.write_text(self.dir.report_html, to_html(report))
        result.report_path, result.html_path = str(self.dir.report), str(self.dir.report_html)


def run_iterative(
    config: RunConfig | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    resume: str | Path | None = None,
    resume_overrides: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
) -> IterativeRunResult:
    """Run (or, with ``resume=RUN_DIR``, continue) an iterative pruning run.

    ``config.schedule`` names a schedule with an ``iterative:`` section; ``overrides`` holds the
    command line's ``budget``, ``iterations`` and ``generator`` (None = not given).
    """
    if reporter is None:
        from rich.console import Console

        reporter = Reporter(Console(), quiet=bool(config.quiet if config else False))
    if resume is not None:
        run = _Run(RunConfig(), IterativeSpec(), reporter)
        run.start_resumed(Path(resume), dict(resume_overrides or {}))
    else:
        assert config is not None
        spec = iterative_spec_of(config.schedule)
        if spec is None:
            raise ConfigError(
                "the schedule has no iterative section",
                location=SourceLocation(config.schedule) if config.schedule else None,
                hint="add an 'iterative:' section (docs/iterative.md), or run it without --budget/--iterations/--generator",
            )
        run = _Run(config, with_overrides(spec, overrides or {}), reporter)
        run.start_fresh()
    handler = run.dir.attach_log()
    try:
        reporter.info(f"run directory: {run.dir.path}")
        if run.header.get("phase") == "pretrain" or not run.dir.dense_model.is_file():
            run.pretrain()
        else:
            run.model.load_state_dict(load_checkpoint(run.dir.dense_model)["state_dict"])
        run.build_scheduler()
        run.search()
        return run.finish()
    finally:
        RunDir.detach_log(handler)
