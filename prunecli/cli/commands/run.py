"""``prunecli run``: train a classifier under a compression schedule (Distiller's compress_classifier)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from prunecli.cli.console import console, err_console

if TYPE_CHECKING:
    from rich.console import Console

    from prunecli.training.config import RunConfig
    from prunecli.training.progress import Reporter

#: CLI option -> config field, for options that map one to one
_DIRECT = (
    "model",
    "initial_weights",
    "dataset",
    "data_dir",
    "optimizer",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "device",
    "workers",
    "threads",
    "max_steps_per_epoch",
    "max_eval_batches",
    "checkpoint_every",
    "out_dir",
    "name",
    "auto_dependency",
    "amp",
    "channels_last",
    "sync_batchnorm",
    "prune_normalized",
    "narrow_heads",
    "round_to",
    "strict",
    "pruner",
)


@click.command("run")
@click.argument("schedule", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Run configuration YAML."
)
@click.option(
    "--resume",
    type=click.Path(),
    help="Continue the run in this directory; or, given a checkpoint file (prunecli or Distiller), start a "
    "new run from its weights, thinning, masks, optimizer state and next epoch.",
)
@click.option("-a", "--model", "--arch", "model", help="Model spec (zoo name, torchvision:NAME, ...).")
@click.option("--initial-weights", type=click.Path(dir_okay=False), help="Start from these weights.")
@click.option("--dataset", help="digits, mnist, cifar10, cifar100, imagefolder or fake.")
@click.option("--data-dir", help="Where the data set lives.")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), help="Optimizer.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs to run (policies keep absolute epochs).")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), help="Minibatch size.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--momentum", type=float, help="SGD momentum.")
@click.option("--weight-decay", "--wd", "weight_decay", type=float, help="Weight decay.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), help="Where to train.")
@click.option("-j", "--workers", type=click.IntRange(min=0), help="Data-loading worker processes.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch intra-op threads.")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), help="Cut every epoch to K steps.")
@click.option("--max-eval-batches", type=click.IntRange(min=1), help="Cut validation and test to K batches.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), help="Write checkpoint.pt every N epochs.")
@click.option("-o", "--out-dir", help="Run directory (default runs/<name>-<timestamp>).")
@click.option("-n", "--name", help="Run name used in the default run directory.")
@click.option(
    "--auto-dependency/--no-auto-dependency", default=None, help="Derive Leader groups automatically."
)
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    help="Train on N processes of this machine (starts torchrun's launcher; see docs/distributed.md).",
)
@click.option(
    "--amp", type=click.Choice(["bf16", "fp16"]), help="Mixed precision (autocast; fp16 scales gradients)."
)
@click.option("--channels-last", is_flag=True, default=None, help="NHWC memory format for model and images.")
@click.option(
    "--sync-batchnorm", is_flag=True, default=None, help="BatchNorm statistics over all processes' batches."
)
@click.option(
    "--prune-normalized",
    is_flag=True,
    default=None,
    help="With --auto-dependency (implied): also prune channels that LayerNorm/GroupNorm normalise "
    "(ViT/ConvNeXt embedding width); the compact model then deviates slightly and the deviation is reported.",
)
@click.option(
    "--narrow-heads",
    is_flag=True,
    default=None,
    help="With --prune-normalized: narrow every attention head alike (head_dim shrinks, the number of heads "
    "stays) instead of removing whole heads.",
)
@click.option(
    "--round-to",
    type=click.IntRange(min=1),
    help="With --auto-dependency: round every kept channel count up to a multiple of N (e.g. 8).",
)
@click.option(
    "--strict", is_flag=True, default=None, help="Refuse a schedule with a key given twice (default: warn)."
)
@click.option(
    "--pruner",
    metavar="NAME",
    help="The NNI pruner (L1NormPruner, FPGMPruner, ...) of an NNI config_list schedule that names none.",
)
@click.option(
    "--budget",
    metavar="'METRIC <= VALUE'",
    help="Iterative schedules: what the final model may cost, e.g. 'macs <= 0.4' or 'latency_ms <= 3.0' "
    "(overrides the schedule's budget; see docs/iterative.md).",
)
@click.option(
    "--iterations",
    type=int,
    help="Iterative schedules: how many pruning iterations (overrides the schedule).",
)
@click.option(
    "--generator",
    help="Iterative schedules: the task generator (agp, linear, lottery_ticket, ... or module:Class).",
)
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE", help="Override any config field.")
@click.option("-q", "--quiet", is_flag=True, default=None, help="No progress bars or per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the run result as one JSON document.")
@click.option(
    "--stop-after-epoch", type=int, hidden=True, help="Testing aid: stop (resumable) after epoch N."
)
def command(
    schedule: str | None,
    config_file: str | None,
    resume: str | None,
    set_pairs: tuple[str, ...],
    quiet: bool | None,
    as_json: bool,
    stop_after_epoch: int | None,
    nproc_per_node: int | None,
    budget: str | None,
    iterations: int | None,
    generator: str | None,
    **options,
) -> None:
    """Train a classifier under SCHEDULE (a Distiller YAML), then thin and report it.

    Settings come from, lowest first: built-in defaults, the schedule's thinning extension
    (arch, dataset), the config file (--config, or configs/<schedule name>.yaml next to the
    schedule's folder), then these options and --set KEY=VALUE. See docs/run.md.
    """
    from prunecli.errors import ConfigError
    from prunecli.training import run_training

    if nproc_per_node is not None:
        import sys

        from prunecli.training.distributed_launch import launch

        launch(nproc_per_node, sys.argv[1:], resume_dir=resume if resume and Path(resume).is_dir() else None)
        return
    from prunecli.training.config import parse_set_options
    from prunecli.training.progress import Reporter

    overrides = {key: options.get(key) for key in _DIRECT}
    overrides.update(parse_set_options(set_pairs))
    if quiet or as_json:
        overrides["quiet"] = True
    out = err_console if as_json else console
    if resume and Path(resume).is_file():  # Distiller's --resume-from: a new run from a checkpoint file
        overrides["resume_from"] = resume
        resume = None
    iterative = {"budget": budget, "iterations": iterations, "generator": generator}
    if resume or any(v is not None for v in iterative.values()) or _is_iterative(schedule):
        from prunecli.iterative.app import is_iterative_run, run_iterative

        if resume and is_iterative_run(resume) or not resume:
            if resume:
                if schedule or config_file or any(v is not None for v in iterative.values()):
                    raise ConfigError(
                        "--resume takes its schedule, budget and configuration from the run directory",
                        hint="drop the SCHEDULE argument, --config, --budget, --iterations and --generator",
                    )
                given = {k: v for k, v in overrides.items() if v is not None}
                reporter = Reporter(out, quiet=bool(given.get("quiet")))
                outcome = run_iterative(resume=resume, resume_overrides=given, reporter=reporter)
            else:
                config, reporter = _configured(schedule, config_file, overrides, out)
                outcome = run_iterative(config, overrides=iterative, reporter=reporter)
            if as_json:
                click.echo(json.dumps(outcome.to_dict(), default=str))
            return
    if resume:
        if schedule or config_file:
            raise ConfigError(
                "--resume takes its schedule and configuration from the run directory",
                hint="drop the SCHEDULE argument and --config when resuming",
            )
        allowed = {"epochs", "quiet", "device", "workers", "model"}
        given = {k: v for k, v in overrides.items() if v is not None}
        extra = sorted(set(given) - allowed)
        if extra:
            raise ConfigError(
                f"cannot change {', '.join(extra)} when resuming",
                hint="only --epochs, --device, --workers and --quiet may change (--model only to name "
                "the run's own model, which a model defined by your code needs); start a new run otherwise",
            )
        reporter = Reporter(out, quiet=bool(given.get("quiet")))
        result = run_training(
            resume=resume, resume_overrides=given, stop_after_epoch=stop_after_epoch, reporter=reporter
        )
    else:
        config, reporter = _configured(schedule, config_file, overrides, out)
        result = run_training(config, stop_after_epoch=stop_after_epoch, reporter=reporter)
    from prunecli.training.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone prints the result
        return
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    elif result.stopped_early:
        out.print(
            f"stopped after epoch {result.epochs_completed - 1}; continue with: "
            f"prunecli run --resume {result.run_dir}",
            highlight=False,
            soft_wrap=True,
        )


def _configured(
    schedule: str | None, config_file: str | None, overrides: dict[str, Any], out: Console
) -> tuple[RunConfig, Reporter]:
    """The run configuration from every source, and a reporter that has named the config file used."""
    from prunecli.training import resolve_run_config
    from prunecli.training.progress import Reporter

    config, used = resolve_run_config(schedule, config_file, overrides)
    reporter = Reporter(out, quiet=config.quiet)
    if used is not None:
        reporter.info(f"configuration: {used}")
    return config, reporter


def _is_iterative(schedule: str | None) -> bool:
    """Whether SCHEDULE has an ``iterative:`` section (read as plain YAML: errors come later, located)."""
    if not schedule or not Path(schedule).is_file():
        return False
    import yaml

    try:
        document = yaml.safe_load(Path(schedule).read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError:
        return False
    return isinstance(document, dict) and "iterative" in document
