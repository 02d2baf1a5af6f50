"""``run_training``: the compress-classifier application behind ``prunecli run``.

One run = one directory. Every epoch the latest state is written atomically to ``checkpoint.pt``
(``best.pt`` follows Distiller's ranking: fewest non-zero parameters, then top-1, top-5, epoch);
``metrics.jsonl`` gains one line; at the end the model is tested, thinned into ``compact.pt``
(verified by reloading it) and ``report.json`` is written.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.checkpoint.plain import own_storage, stored_state_dict
from prunecli.devices import resolve_device
from prunecli.errors import CheckpointError, ConfigError, Interrupted, SourceLocation, TrainingDiverged
from prunecli.rundir import CHECKPOINT, RunDir

from . import distributed_run
from .config import RunConfig
from .loop import NoCompression, steps_in_epoch, train_epoch
from .progress import Reporter
from .schema import OPTIMIZERS
from .seeding import epoch_seed, rng_state, seed_everything, set_deterministic, set_rng_state
from .setup import (
    build_optimizer,
    check_optimizer_state,
    dataset_options_for_model,
    first_pruning_epoch,
    load_initial_weights,
    model_stats,
    unreachable_policies,
)
from .tasks import task_for

log = logging.getLogger("prunecli.run")


@dataclass
class RunResult:
    """What a finished (or deliberately stopped) run produced; plain data for ``--json``."""

    run_dir: str
    epochs_completed: int
    stopped_early: bool
    metrics: list[dict[str, Any]]
    test: dict[str, Any] = field(default_factory=dict)
    pre_pruning: dict[str, Any] | None = None
    dense: dict[str, Any] = field(default_factory=dict)
    compressed: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    report_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def macs_reduction(self) -> float | None:
        dense, comp = self.dense.get("macs"), self.compressed.get("macs")
        return None if not dense or comp is None else 1 - comp / dense

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "macs_reduction": self.macs_reduction}


def _to_device(inputs: Any, device: torch.device) -> Any:
    """A batch's inputs on the device: a tensor, or a tuple of them (detection images)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    return [_to_device(i, device) for i in inputs]


def _tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, list | tuple):
        return [t for v in output for t in _tensors(v)]
    return []


def _state_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(stored_state_dict(model), buffer)
    return buffer.tell()


class _Run:
    """The state of one run, built fresh or from a run directory."""

    dir: RunDir

    def __init__(self, config: RunConfig, reporter: Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.metrics: list[dict[str, Any]] = []
        self.extras: dict[str, Any] = {"best": None, "pre_pruning": None, "dense": None}
        self.start_epoch = 0
        self.warnings: list[str] = []
        self.recipe: dict[str, Any] | None = None  # thinning so far, relative to the dense model
        self._recipes_seen = 0
        self.trusted_model: str | None = None  # a model spec the user gave on this command line
        self.parallel = distributed_run.Parallel()  # one process until _load_inputs joins torchrun's group

    @property
    def run_dir(self) -> Path:
        return self.dir.path

    # ------------------------------------------------------------------ building blocks
    def _load_inputs(self) -> None:
        from prunecli.data import load_dataset
        from prunecli.schedule import load_schedule

        cfg = self.config
        if not cfg.model or not cfg.dataset:
            missing = [k for k in ("model", "dataset") if not getattr(cfg, k)]
            raise ConfigError(
                f"no {' and no '.join(missing)} given for the run",
                hint="pass --model/--dataset, set them in the config file, or name them in the "
                "schedule's thinning extension (arch:, dataset:)",
            )
        self.schedule = (
            load_schedule(cfg.schedule, strict=cfg.strict, pruner=cfg.pruner) if cfg.schedule else None
        )
        self._epochs()  # a schedule counting steps needs --epochs: refused before any data is read
        self.parallel = distributed_run.Parallel.join(cfg, resolve_device(cfg.device), self.reporter)
        self.device = self.parallel.device
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        options = dataset_options_for_model(cfg.dataset, cfg.dataset_options, cfg.model)
        self.bundle = load_dataset(
            cfg.dataset, cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction, **options
        )
        loaders = self.bundle.loaders(cfg.batch_size, workers=cfg.workers, seed=cfg.seed)
        self.train_loader, val_loader, self.test_loader = self.parallel.loaders(*loaders)
        # no validation split (val_fraction 0): validate on the test split, as Distiller does
        self.val_loader = val_loader if len(self.bundle.val) else self.test_loader
        self.steps_per_epoch = steps_in_epoch(self.train_loader, cfg.max_steps_per_epoch)
        self.task = task_for(self.bundle)
        self.objective = self.task.objective()
        self.example_input = self.task.example_input(self.bundle, self.device)
        self.criterion = nn.CrossEntropyLoss()

    def _build_scheduler(self) -> Any:
        if self.schedule is None:
            return NoCompression()
        from prunecli.compression import build_compression

        return build_compression(
            self.schedule,
            self.model,
            self.optimizer,
            example_input=self.example_input,
            auto_dependency=self.config.auto_dependency,
            round_to=self.config.round_to,
            steps_per_epoch=self.steps_per_epoch,
            prune_normalized=self.config.prune_normalized,
            narrow_heads=self.config.narrow_heads,
        )

    def _epochs(self) -> int:
        if self.config.epochs:
            return self.config.epochs
        if self.schedule is not None and self.schedule.counts_steps():
            raise ConfigError(
                f"{self.config.schedule}: its pruning events are training steps, which do not tell how many "
                "epochs to train",
                hint="pass --epochs N (or set 'epochs:' in the config file)",
            )
        last = self.schedule.last_epoch() if self.schedule is not None else -1
        return max(last + 1, 1)

    # ------------------------------------------------------------------ fresh / resumed
    def start_fresh(self) -> None:
        from prunecli.models import create_model

        cfg = self.config
        seed_everything(cfg.seed)
        set_deterministic(cfg.deterministic)
        self._defaults_from_checkpoint()
        self._load_inputs()
        self.trusted_model = cfg.model
        self.model, self.spec = create_model(
            cfg.model, dataset=cfg.dataset, num_classes=self.bundle.num_classes, **cfg.model_args
        )
        self.parallel.place(self.model)
        if self.schedule is not None:  # a misspelled weight name is reported before any forward pass
            from prunecli.schedule.names import module_classes, resolve_names

            shapes = {n: tuple(p.shape) for n, p in self.model.named_parameters()}
            resolve_names(self.schedule, shapes, module_classes(self.model))
        dense = {**model_stats(self.model, self.example_input), "checkpoint_bytes": _state_bytes(self.model)}
        start = self._starting_point()
        self.optimizer = build_optimizer(cfg, self.model)
        resumed = start if cfg.resume_from else None
        if resumed is not None:  # before the LR schedulers, which start from the optimizer's rates
            self._load_optimizer_state(resumed, cfg.resume_from)
        self.scheduler = self._build_scheduler()
        self.start_epoch = 0
        if resumed is not None:
            self._continue_from(resumed, cfg.resume_from)
        self.trainable = self.parallel.replicate(self.model, self.scheduler)
        name = cfg.name or (Path(cfg.schedule).stem if cfg.schedule else str(cfg.model))
        self.dir = self.parallel.on_main(lambda: RunDir.create(cfg.out_dir, cfg.runs_dir, name))
        self.extras["dense"] = dense
        if not self.parallel.is_main:
            return
        resolved = {**cfg.to_dict(), "epochs": self._epochs(), "out_dir": str(self.run_dir)}
        self.dir.write_config(resolved)
        if self.schedule is not None:
            self.dir.write_schedule(self.schedule.text)
        self.dir.write_metrics([])

    def _defaults_from_checkpoint(self) -> None:
        """``--resume FILE`` / ``--initial-weights``: model and data set default to the checkpoint's."""
        from prunecli.checkpoint.model import stored_model

        cfg = self.config
        path = cfg.resume_from or cfg.initial_weights
        if cfg.resume_from and cfg.initial_weights:
            raise ConfigError(
                "both resume_from and initial_weights are set",
                hint="--resume FILE already loads the weights; drop --initial-weights",
            )
        if path and not (cfg.model and cfg.dataset):
            model, dataset = stored_model(path)
            cfg.model = cfg.model or model
            cfg.dataset = cfg.dataset or dataset

    def _starting_point(self) -> dict[str, Any] | None:
        """Load ``initial_weights`` / ``resume_from``; a thinned checkpoint replaces the dense model."""
        from prunecli.models import ModelSpec

        cfg = self.config
        path = cfg.resume_from or cfg.initial_weights
        if not path:
            return None
        model, checkpoint = load_initial_weights(self.model, path, model_spec=cfg.model)
        if model is not self.model:  # thinned: train on its architecture, keep its recipe for our files
            self.parallel.place(model)
            self.model = model
            self.recipe = checkpoint["recipe"]
            if checkpoint["model"] is not None:
                self.spec = ModelSpec.from_dict(checkpoint["model"])
        return checkpoint

    def _load_optimizer_state(self, checkpoint: dict[str, Any], path: str) -> None:
        """Distiller's ``--resume-from`` keeps the saved optimizer (its learning rates included)."""
        cfg = self.config
        saved = checkpoint.get("optimizer")
        if saved:
            kind, wanted = checkpoint.get("optimizer_type"), OPTIMIZERS[cfg.optimizer]
            if kind and kind != wanted:
                option = next((k for k, v in OPTIMIZERS.items() if v == kind), None)
                raise ConfigError(
                    f"{path} holds {kind} optimizer state, but the run uses {wanted}",
                    hint=f"pass --optimizer {option}" if option else "use --initial-weights FILE instead",
                )
            check_optimizer_state(self.optimizer, saved, path)
            self.optimizer.load_state_dict(saved)

    def _continue_from(self, checkpoint: dict[str, Any], path: str) -> None:
        """The rest of ``--resume-from``: the saved masks, and the epoch after the saved one."""
        masks = {k: v for k, v in (checkpoint.get("masks") or {}).items() if v is not None}
        if masks and self.schedule is not None:
            self.scheduler.load_state_dict({"masks_dict": masks}, strict=False)
        elif masks:
            message = f"{path}: its {len(masks)} pruning masks are not enforced without a schedule"
            self.warnings.append(message)
            self.reporter.warn(message)
        epoch = checkpoint.get("epoch")
        self.start_epoch = epoch + 1 if isinstance(epoch, int) else 0

    def start_resumed(self, run_dir: Path, overrides: dict[str, Any]) -> None:
        from prunecli.checkpoint import load_checkpoint, load_model

        self.dir = RunDir(run_dir)
        path = self.dir.checkpoint
        if not path.is_file():
            raise CheckpointError(
                f"{run_dir} has no {CHECKPOINT} to resume from",
                hint=f"pass the run directory that 'prunecli run' created (it holds {CHECKPOINT})",
            )
        payload = load_checkpoint(path)
        saved = payload.get("extras", {}).get("config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{path} was not written by 'prunecli run'; it holds no run configuration")
        trusted = _confirmed_model(overrides.get("model"), saved.get("model"), path)
        overrides = {k: v for k, v in overrides.items() if k != "model"}
        self.config = RunConfig.from_dict({**saved, **overrides}, source=str(path))
        self.config.batch_size = distributed_run.resumed_batch_size(payload, self.config, path)
        cfg = self.config
        if cfg.schedule is not None:
            cfg.schedule = str(self.dir.schedule)
        set_deterministic(cfg.deterministic)
        self._load_inputs()
        self.model = load_model(path, model=trusted)
        self.parallel.place(self.model)
        self.trusted_model = trusted
        from prunecli.models import ModelSpec

        self.spec = ModelSpec.from_dict(payload["model"])
        self.optimizer = build_optimizer(cfg, self.model)
        saved_optimizer = payload.get("optimizer")
        # a quantizer adds its learned clip values/steps as an optimizer group when it is built
        extra_groups = bool(saved_optimizer) and len(saved_optimizer["param_groups"]) > len(
            self.optimizer.param_groups
        )
        if saved_optimizer and not extra_groups:
            self.optimizer.load_state_dict(saved_optimizer)
        self.scheduler = self._build_scheduler()
        if extra_groups:
            self.optimizer.load_state_dict(saved_optimizer)
        if payload.get("scheduler"):
            self.scheduler.load_state_dict(payload["scheduler"])
        self.trainable = self.parallel.replicate(self.model, self.scheduler)
        self.parallel.precision.load_state_dict(payload["extras"].get("precision"))
        if payload.get("rng"):
            set_rng_state(payload["rng"])
        self.metrics = [row for row in payload.get("metrics") or [] if row["epoch"] <= payload["epoch"]]
        self.extras.update({k: payload["extras"].get(k) for k in ("best", "pre_pruning", "dense")})
        self.start_epoch = int(payload["epoch"]) + 1
        self.recipe = payload.get("recipe")
        if not self.parallel.is_main:
            return
        self.dir.write_metrics(self.metrics)
        resolved = {**cfg.to_dict(), "epochs": self._epochs(), "out_dir": str(run_dir)}
        self.dir.write_config(resolved)

    # ------------------------------------------------------------------ checkpoints
    def _collect_recipes(self) -> None:
        """Fold recipes of thinning done by the schedule since the last call into ``self.recipe``."""
        from prunecli.thinning.compact import compose_recipes

        made = list(getattr(self.scheduler, "thinning_recipes", []))
        if made[self._recipes_seen :]:
            self.recipe = compose_recipes(self.recipe, *made[self._recipes_seen :]).to_dict()
            for recipe in made[self._recipes_seen :]:
                self._warn_all(getattr(recipe, "warnings", []))
        self._recipes_seen = len(made)

    def _warn_all(self, messages: list[str]) -> None:
        for message in messages:
            if message not in self.warnings:
                self.warnings.append(message)
                self.reporter.warn(message)

    def payload(self, epoch: int, *, model: nn.Module | None = None, full: bool = True) -> dict[str, Any]:
        from prunecli.checkpoint import build_checkpoint

        model = model or self.model
        config = {**self.config.to_dict(), "epochs": self._epochs()}
        if self.config.schedule:
            config["schedule"] = str(self.dir.schedule)
        masks = {k: v for k, v in (self.scheduler.masks or {}).items() if v is not None}
        return build_checkpoint(
            model=self.spec,
            recipe=self.recipe,
            state_dict=stored_state_dict(model),
            masks={k: own_storage(v) for k, v in masks.items()},
            optimizer=self.optimizer.state_dict() if full else None,
            optimizer_type=type(self.optimizer).__name__,
            lr_scheduler=None,
            scheduler=self.scheduler.state_dict() if full else None,
            epoch=epoch,
            schedule_text=self.schedule.text if self.schedule is not None else None,
            metrics=list(self.metrics),
            rng=rng_state() if full else None,
            extras={
                **self.extras,
                "config": config,
                # one sample's shape as trained (an image folder's crop size is the run's choice)
                "input_shape": list(self.bundle.input_shape),
                **self.parallel.checkpoint_extras(),
            },
        )

    def save(self, epoch: int, *, improved: bool) -> None:
        from prunecli.checkpoint import save_checkpoint

        self._collect_recipes()
        payload = self.payload(epoch)  # on every process: gathering ranking statistics is collective
        if not self.parallel.is_main:
            return
        save_checkpoint(self.dir.checkpoint, payload)
        if improved:
            self.dir.mark_best()

    def _is_best(self, row: dict[str, Any]) -> bool:
        # tasks without accuracy (detection) rank by validation loss instead
        accuracy = [row["top1"], row["top5"]] if row["top1"] is not None else [-row["val_loss"], 0.0]
        key = [-row["nnz_params"], *accuracy, row["epoch"]]
        best = self.extras["best"]
        if best is None or key > best["key"]:
            self.extras["best"] = {"key": key, "epoch": row["epoch"], "top1": row["top1"]}
            return True
        return False

    # ------------------------------------------------------------------ the loop
    def _maybe_record_pre_pruning(self, epoch: int, first_prune: int | None) -> None:
        if first_prune is None or epoch != first_prune or self.extras["pre_pruning"] is not None:
            return
        stats = self._evaluate(self.test_loader)
        self.extras["pre_pruning"] = {
            "epoch": epoch,
            "top1": stats.top1,
            "top5": stats.top5,
            "loss": stats.loss,
            **self.task.metrics(stats),
        }
        log.info("test before pruning (start of epoch %d): %s", epoch, self.extras["pre_pruning"])

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        began = time.perf_counter()
        seed_everything(epoch_seed(self.config.seed, epoch))
        self.train_loader.sampler.set_epoch(epoch)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.scheduler.on_epoch_begin(epoch)
        with self.reporter.epoch_progress(epoch, self.steps_per_epoch) as on_step:
            train = train_epoch(
                self.trainable,
                self.train_loader,
                self.criterion,
                self.optimizer,
                self.scheduler,
                epoch,
                self.steps_per_epoch,
                self.device,
                on_step,
                objective=self.objective,
                **self.parallel.step_options(),
            )
        self.parallel.after_training(self.model)
        val = self._evaluate(self.val_loader)
        self.scheduler.on_epoch_end(epoch, self.optimizer, metrics={"min": val.loss, "max": val.top1})
        self.parallel.verify_masks(self.scheduler, epoch)
        stats = model_stats(self.model, self.example_input)
        return {
            "epoch": epoch,
            "train_loss": train.loss,
            "val_loss": val.loss,
            "top1": val.top1,
            "top5": val.top5,
            "lr": lr,
            "sparsity": stats["sparsity"],
            "params": stats["params"],
            "nnz_params": stats["nnz_params"],
            "macs": stats["macs"],
            "effective_macs": stats["effective_macs"],
            **self.task.metrics(val),
            "time_s": time.perf_counter() - began,
        }

    def _evaluate(self, loader: Any) -> Any:
        """Loss and accuracy over the whole set (each process evaluates its share, then the sums meet)."""
        return self.task.evaluate(
            self.model, loader, self.device, self.config.max_eval_batches, **self.parallel.step_options()
        )

    def train(self, stop_after_epoch: int | None) -> tuple[int, bool]:
        epochs = self._epochs()
        first_prune = first_pruning_epoch(self.schedule) if self.schedule is not None else None
        if self.schedule is not None:
            notes = [w.render() for w in self.schedule.warnings]
            for message in [*notes, *unreachable_policies(self.schedule, epochs)]:
                self.warnings.append(message)
                self.reporter.warn(message)
                log.warning(message)
        fresh = self.parallel.on_main(lambda: not self.dir.checkpoint.exists())
        if self.start_epoch == 0 and fresh:
            self.save(-1, improved=False)  # a resumable starting point before the first epoch
        last_done = self.start_epoch - 1
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, epochs):
                self._maybe_record_pre_pruning(epoch, first_prune)
                row = self.run_epoch(epoch)
                self.metrics.append(row)
                if (
                    (epoch + 1) % self.config.checkpoint_every == 0
                    or epoch == epochs - 1
                    or (stop_after_epoch is not None and epoch >= stop_after_epoch)
                ):
                    # only saved epochs compete for best.pt: it is a link to one of them
                    self.save(epoch, improved=self._is_best(row))
                    last_done = epoch
                if self.parallel.is_main:
                    self.dir.append_metrics(row)
                log.info("epoch %s", row)
                self.reporter.epoch_line(row)
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    return epoch + 1, True
        except KeyboardInterrupt:
            log.warning("interrupted during epoch %d; checkpoint.pt holds epoch %d", epoch, last_done)
            raise Interrupted(
                f"interrupted during epoch {epoch}; {self.dir.checkpoint} holds the state "
                f"after epoch {last_done}",
                hint=f"continue with: prunecli run --resume {self.run_dir} "
                f"(training restarts at epoch {last_done + 1} and ends as an uninterrupted run would)",
            ) from None
        except TrainingDiverged as exc:
            log.error("%s", exc.message)
            raise TrainingDiverged(
                f"{exc.message}; {self.dir.checkpoint} keeps the last good state (epoch {last_done})",
                hint=exc.hint,
            ) from None
        return epochs, False

    # ------------------------------------------------------------------ the end
    def finish(self, result: RunResult) -> None:
        stage = getattr(self.scheduler, "quantization", None)
        if stage is not None:
            stage.apply_post_training()
        test = self._evaluate(self.test_loader)
        if stage is not None:
            from prunecli.quantization.stored import PLAN_KEY

            # the model keeps its effective float weights; the plan travels in the checkpoint,
            # where the end of the run (or `prunecli thin`) converts it to int8
            self.extras[PLAN_KEY] = stage.finalize().to_dict()
        result.test = {
            "top1": test.top1,
            "top5": test.top5,
            "loss": test.loss,
            "samples": test.samples,
            **self.task.metrics(test),
        }
        log.info("test: %s", result.test)
        if not self.parallel.is_main:
            return
        if self.config.compact:
            self._write_compact(result)
        self._write_report(result)

    def _prunes_normalized(self) -> bool:
        """Whether the run asked for channels normalised by LayerNorm/GroupNorm to be pruned."""
        policies = getattr(self.scheduler, "policy_order", None) or []
        pruners = [getattr(policy, "pruner", None) for _, policy in policies]
        return self.config.prune_normalized or any(getattr(p, "prune_normalized", False) for p in pruners)

    def _write_compact(self, result: RunResult) -> None:
        import copy

        from prunecli.checkpoint import load_model, save_checkpoint
        from prunecli.checkpoint.compact import thin_checkpoint
        from prunecli.thinning.compact import ThinOptions

        self._collect_recipes()
        model = copy.deepcopy(self.model).eval()
        payload = self.payload(self.metrics[-1]["epoch"] if self.metrics else -1, model=model, full=False)
        options = ThinOptions(prune_normalized=self._prunes_normalized(), narrow_heads=self.config.narrow_heads)
        compact = thin_checkpoint(
            payload,
            model,
            self.example_input,
            masks=self.scheduler.masks or {},
            options=options,
            root=self.task.thinning_root,
        )
        self._warn_all(compact.compact.step.warnings)
        payload = compact.payload
        pre = self.extras.get("pre_pruning") or {}
        payload["extras"].update(
            baseline_top1=pre.get("top1"),
            baseline_top5=pre.get("top5"),
            baseline_perplexity=pre.get("perplexity"),
            test=result.test,
        )
        path = self.dir.compact
        save_checkpoint(path, payload)
        # the user named this model (at the start, or with --model on resume): its code may run
        reloaded = load_model(path, model=self.trusted_model).to(self.device).eval()
        batch = _to_device(next(iter(self.test_loader))[0][:8], self.device)
        with torch.no_grad():
            # a language model also returns its hidden state, a detector a list of dicts
            pairs = list(zip(_tensors(model(batch)), _tensors(reloaded(batch))))
        worst = max((float((a - b).abs().max()) for a, b in pairs if a.numel()), default=0.0)
        if not all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in pairs):
            raise CheckpointError(
                f"{path} does not reproduce the thinned model (max difference {worst:.3g})",
                hint="this is a bug in thinning or checkpoint reloading; checkpoint.pt is intact",
            )
        stats = model_stats(reloaded, self.example_input)
        state_bytes = _state_bytes(reloaded)
        self._write_int8(payload, compact.compact.step, path, batch)
        result.compressed = {
            **stats,
            "checkpoint_bytes": state_bytes,
            "file_bytes": path.stat().st_size,
        }

    def _write_int8(self, payload: dict[str, Any], step: Any, path: Path, batch: torch.Tensor) -> None:
        """Replace ``compact.pt`` by its int8 conversion when the run carries a quantization plan.

        The int8 kernels run on the CPU; the written file is reloaded and must give exactly the
        converted model's outputs.
        """
        from prunecli.checkpoint import load_model, save_checkpoint
        from prunecli.checkpoint.compact import quantize_checkpoint
        from prunecli.quantization.int8 import thin_plan
        from prunecli.quantization.stored import stored_plan

        plan = stored_plan(payload)
        if plan is None or not self.config.int8:
            return
        model = load_model(path, model=self.trusted_model).cpu().eval()
        example = self.example_input.detach().cpu()
        converted = quantize_checkpoint(payload, model, example, thin_plan(plan, step.tensors))
        save_checkpoint(path, converted.payload)
        reloaded = load_model(path, model=self.trusted_model)
        batch = batch.detach().cpu()
        with torch.no_grad():
            same = torch.equal(converted.model(batch), reloaded(batch))
        if not same:
            raise CheckpointError(
                f"{path} does not reproduce the int8 model it was converted to",
                hint="this is a bug in int8 conversion or reloading; checkpoint.pt is intact "
                "(convert it with `prunecli thin`, or skip the conversion with --set int8=false)",
            )
        log.info(
            "int8: %d layers on int8 kernels, %d simulated",
            len(converted.model.kernels),
            len(converted.model.simulated),
        )

    def _write_report(self, result: RunResult) -> None:
        from prunecli.report.build import ReportOptions, build_report
        from prunecli.report.render import to_json

        options = ReportOptions(latency_runs=5, latency_warmup=1)
        report = build_report(self.run_dir, options, model_spec=self.trusted_model)
        path = self.dir.report
        self.dir.write_text(path, to_json(report))
        result.report_path = str(path)


def _confirmed_model(given: str | None, saved: Any, path: Path) -> str | None:
    """``--model`` on resume: allowed only to name the run's own model (so its code may run)."""
    if given is None:
        return None
    from prunecli.checkpoint.model import same_model
    from prunecli.models import parse_spec

    if not isinstance(saved, str) or not same_model(parse_spec(given), parse_spec(saved)):
        raise ConfigError(
            f"--model {given} is not the model of the run being resumed ({saved})",
            location=SourceLocation(str(path)),
            hint=f"resume with --model {saved}, or start a new run to train another model",
        )
    return given


@distributed_run.job_failures
def run_training(
    config: RunConfig | None = None,
    *,
    resume: str | Path | None = None,
    resume_overrides: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run (or continue, with ``resume=RUN_DIR``) a training/compression run.

    ``reporter`` shows progress; the CLI passes one on its own console. Without one, progress
    goes to a console on stdout (the library does not know the CLI exists).
    """
    if reporter is None:
        from rich.console import Console

        quiet = bool(config.quiet if config else (resume_overrides or {}).get("quiet"))
        reporter = Reporter(Console(), quiet=quiet)
    reporter = distributed_run.reporter_for_this_process(reporter)
    run = _Run(config or RunConfig(), reporter)
    if resume is not None:
        run.start_resumed(Path(resume), dict(resume_overrides or {}))
    else:
        run.start_fresh()
    handler = run.parallel.attach_log(run.dir)
    finished = False
    try:
        log.info("run directory %s; config %s", run.run_dir, run.config.to_dict())
        reporter.info(f"run directory: {run.run_dir}")
        done, stopped = run.train(stop_after_epoch)
        result = RunResult(
            run_dir=str(run.run_dir),
            epochs_completed=done,
            stopped_early=stopped,
            metrics=list(run.metrics),
            pre_pruning=run.extras.get("pre_pruning"),
            dense=dict(run.extras.get("dense") or {}),
            best_epoch=(run.extras.get("best") or {}).get("epoch"),
            warnings=run.warnings,
        )
        if not stopped:
            run.finish(result)
            reporter.summary(result)
        finished = True
        return result
    finally:
        run.parallel.close(finished=finished)
        if handler is not None:
            RunDir.detach_log(handler)
