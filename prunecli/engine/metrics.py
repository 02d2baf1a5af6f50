"""Metrics: *which* groups go. A metric scores every group of a unit; higher scores are kept.

Weight metrics reduce each row of the target's grouped view (so one metric serves elements,
blocks, filters and heads alike). Gradient metrics accumulate an element-wise product over the
steps between prunes and reduce it the same way. Activation and BatchNorm metrics score output
channels, so they only pair with targets whose groups are output channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunecli.engine.registry import Registry
from prunecli.engine.targets import Target, Unit
from prunecli.pruners.stats import ActivationStats, GradientStats


@dataclass
class ScoreContext:
    """What a metric may read: the tensors to rank (possibly BN-folded) and the model."""

    params: Mapping[str, torch.Tensor]
    model: nn.Module | None = None


class Metric:
    """Base class. ``score`` returns one value per group of the unit."""

    name: str = ""
    #: the metric reads activations, so a forward pass must reach the pruned layers
    needs_forward: bool = False
    #: the metric accumulates gradient products between prunes
    needs_gradients: bool = False
    #: the metric scores output channels only (activations, BatchNorm scales)
    channels_only: bool = False
    #: the metric compares groups with each other, so single weights cannot be scored
    needs_groups: bool = False

    def score(self, target: Target, unit: Unit, ctx: ScoreContext) -> torch.Tensor:
        raise NotImplementedError

    def attach(self, model: nn.Module, names: Iterable[str]) -> None:
        """Install observation hooks on the tensors it will score."""

    def detach(self) -> None:
        """Remove the hooks of :meth:`attach`."""

    def observe(self, params: Mapping[str, torch.Tensor]) -> None:
        """Called after every backward pass (gradients are in ``param.grad``)."""

    def reset(self) -> None:
        """Forget per-shape state (the model was thinned)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the training loss (network slimming's L1 on BatchNorm scales)."""
        return None


METRICS: Registry[Callable[..., Metric]] = Registry("metric")


class RowMetric(Metric):
    """Reduces each row of the grouped weights with :meth:`reduce`."""

    def reduce(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, target, unit, ctx):
        with torch.no_grad():
            return self.reduce(target.view(unit, ctx.params).detach().float())


@METRICS.register("l1")
class L1Metric(RowMetric):
    """Sum of magnitudes."""

    name = "l1"

    def reduce(self, rows):
        return rows.abs().sum(dim=1)


@METRICS.register("l2")
class L2Metric(RowMetric):
    """Euclidean norm."""

    name = "l2"

    def reduce(self, rows):
        return rows.pow(2).sum(dim=1).sqrt()


@METRICS.register("max")
class MaxMetric(RowMetric):
    """The largest magnitude in the group (Distiller's ``Max`` threshold criterion)."""

    name = "max"

    def reduce(self, rows):
        return rows.abs().amax(dim=1)


class MeanMetric(RowMetric):
    """A norm divided by the group's element count, so groups of different sizes compare."""

    base: RowMetric

    def reduce(self, rows):
        return self.base.reduce(rows) / rows.size(1)


@METRICS.register("mean_l1")
class MeanL1Metric(MeanMetric):
    """Mean magnitude (Distiller's ``Mean_Abs``; its ranked pruners' L1 score)."""

    name = "mean_l1"
    base = L1Metric()


@METRICS.register("mean_l2")
class MeanL2Metric(MeanMetric):
    """Euclidean norm over the element count (Distiller's ``Mean_L2``)."""

    name = "mean_l2"
    base = L2Metric()


@METRICS.register("lp")
class LpMetric(RowMetric):
    """``(sum |w|^p)^(1/p)``."""

    name = "lp"

    def __init__(self, p: float = 2.0) -> None:
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = float(p)

    def reduce(self, rows):
        return rows.abs().pow(self.p).sum(dim=1).pow(1.0 / self.p)


@METRICS.register("fpgm")
class FPGMMetric(RowMetric):
    """Distance to the geometric median (He et al. 2019): ``sum_j ||g_i - g_j||_2``.

    A group close to every other group is replaceable by them, so it scores low and goes first.
    The distances are taken within each layer (:meth:`Target.parts`) and added over the layers of
    a coupled group (NNI and Torch-Pruning take the mean over a dependency group's layers, which
    orders the groups the same way).
    """

    name = "fpgm"
    needs_groups = True

    def reduce(self, rows):
        return torch.cdist(rows[None], rows[None]).squeeze(0).sum(dim=1)

    def score(self, target, unit, ctx):
        with torch.no_grad():
            parts = target.parts(unit, ctx.params)
            if len(parts) == 1 and parts[0][0] == 0:
                return self.reduce(parts[0][1].detach().float())
            total = torch.zeros(target.count(unit, ctx.params))
            for first, rows in parts:
                total[first : first + rows.size(0)] += self.reduce(rows.detach().float())
            return total


@METRICS.register("random")
class RandomMetric(Metric):
    """Uniform random scores (the sanity baseline), from its own seeded generator."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def score(self, target, unit, ctx):
        return torch.rand(target.count(unit, ctx.params), generator=self.generator)


class GradientProductMetric(Metric):
    """Accumulates an element-wise ``f(w, grad)`` after every backward pass; groups sum it.

    ``decay`` scales what was accumulated before each new step is added: 1 (the default) sums
    every step, 0.9 is a momentum (Neural Compressor's snip_momentum), 0 keeps the last step
    only (its snip).
    """

    needs_gradients = True

    def __init__(self, decay: float = 1.0) -> None:
        if not 0 <= float(decay) <= 1:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.sums: dict[str, torch.Tensor] = {}
        self.names: list[str] = []

    def product(self, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attach(self, model, names):
        self.names = list(names)

    def observe(self, params):
        with torch.no_grad():
            for name in self.names:
                param = params.get(name)
                if param is None or param.grad is None:
                    continue
                value = self.product(param.detach(), param.grad.detach()).float()
                if name in self.sums and self.sums[name].shape == value.shape:
                    if self.decay != 1.0:
                        self.sums[name].mul_(self.decay)
                    self.sums[name] += value
                else:
                    self.sums[name] = value

    def score(self, target, unit, ctx):
        missing = [n for n in unit.tensors if n not in self.sums]
        if missing:
            # no backward pass seen yet: the weights' magnitudes stand in (and are replaced later)
            sums = {
                n: self.sums.get(n, torch.zeros_like(ctx.params[n], dtype=torch.float)) for n in unit.tensors
            }
        else:
            sums = {n: self.sums[n] for n in unit.tensors}
        return target.view(unit, sums).sum(dim=1)

    def reset(self):
        self.sums.clear()

    def state_dict(self):
        return {"sums": dict(self.sums)}

    def load_state_dict(self, state):
        self.sums = dict(state.get("sums", {}))


@METRICS.register("taylor")
class TaylorMetric(GradientProductMetric):
    """First-order Taylor importance (Molchanov et al. 2019): ``|w * grad|``, summed over steps."""

    name = "taylor"

    def product(self, weight, grad):
        return (weight * grad).abs()


@METRICS.register("movement")
class MovementMetric(GradientProductMetric):
    """Movement score (Sanh et al. 2020): ``-w * grad`` summed over steps; weights moving to zero go."""

    name = "movement"

    def product(self, weight, grad):
        return -(weight * grad)


class ActivationMetric(Metric):
    """Per output channel statistics of ``relu(layer output)``, gathered by forward hooks in training."""

    needs_forward = True
    channels_only = True
    statistic = "mean"

    def __init__(self) -> None:
        self.stats = ActivationStats(self.statistic)
        self.last: dict[str, torch.Tensor] = {}

    def attach(self, model, names):
        self.stats.attach(model, names)

    def detach(self):
        self.stats.detach()

    def value(self, stat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, target, unit, ctx):
        name = unit.tensors[0]
        taken = self.stats.take(name)
        if taken is not None:
            self.last[name] = taken
        stat = self.last.get(name)
        if stat is None:
            return torch.zeros(target.count(unit, ctx.params))  # nothing observed yet: all tie
        return self.value(stat)

    def reset(self):
        self.stats.reset()
        self.last.clear()

    def state_dict(self):
        return {"stats": self.stats.state_dict(), "last": dict(self.last)}

    def load_state_dict(self, state):
        self.stats.load_state_dict(state.get("stats", {}))
        self.last = dict(state.get("last", {}))


@METRICS.register("apoz")
class APoZMetric(ActivationMetric):
    """Average percentage of zeros (Hu et al. 2016): channels that are mostly zero go."""

    name = "apoz"
    statistic = "apoz"

    def value(self, stat):
        return -stat


@METRICS.register("activation_mean")
class ActivationMeanMetric(ActivationMetric):
    """Mean activation (Molchanov et al. 2017): channels with the smallest mean go."""

    name = "activation_mean"
    statistic = "mean"

    def value(self, stat):
        return stat


class RankingStatisticsMetric(Metric):
    """Distiller's data-driven filter rankings: a per-filter statistic gathered by hooks during
    training and consumed by each ranking (the next one sees only what came after it).

    ``sign`` turns the statistic into a score (higher kept): Distiller removes the filters with
    the largest activation statistic (APoZ or mean) and the smallest gradient product. ``None``
    until a statistic arrives, so the pruner asks again at the next minibatch. The running sums
    are its state (``stats``), so a resumed run ranks exactly as before.
    """

    channels_only = True

    def __init__(self, stats: Any, sign: float) -> None:
        self.stats = stats
        self.sign = sign

    def attach(self, model, names):
        self.stats.attach(model, names)

    def detach(self):
        self.stats.detach()

    def values(self, name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        return self.stats.take(name)

    def score(self, target, unit, ctx):
        name = unit.tensors[0]
        values = self.values(name, ctx.params[name])
        return None if values is None else self.sign * values

    def reset(self):
        self.stats.reset()

    def state_dict(self):
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state):
        self.stats.load_state_dict(state.get("stats", {}))


class ActivationRankingMetric(RankingStatisticsMetric):
    """``relu(conv output)`` per filter, APoZ or mean (Distiller's activation rankers)."""

    needs_forward = True

    def __init__(self, statistic: str) -> None:
        super().__init__(ActivationStats(statistic), -1.0)


class GradientRankingMetric(RankingStatisticsMetric):
    """``sum(grad * w)`` per filter, summed over the backward passes since the last ranking
    (Distiller's gradient ranker); before any, the current gradient stands in when there is one."""

    needs_gradients = True

    def __init__(self) -> None:
        super().__init__(GradientStats(), 1.0)

    def values(self, name, tensor):
        values = self.stats.take(name)
        if values is None and tensor.grad is not None:
            values = (tensor.grad * tensor).detach().reshape(tensor.size(0), -1).sum(dim=1)
        return values


class GlobalRandomMetric(Metric):
    """Distiller's random ranking: draws from torch's global generator, so a seeded run repeats;
    the lowest draws are kept."""

    def score(self, target, unit, ctx):
        return -torch.rand(target.count(unit, ctx.params))


@METRICS.register("bn_scale")
class BNScaleMetric(Metric):
    """Network slimming (Liu et al. 2017): ``|gamma|`` of the BatchNorm after each convolution.

    With ``l1`` > 0 it also adds ``l1 * sum |gamma|`` over those BatchNorms to the training loss,
    the sparsity-inducing regularizer the method trains with.
    """

    name = "bn_scale"
    channels_only = True

    def __init__(self, l1: float = 0.0) -> None:
        self.l1 = float(l1)
        self.pairs: dict[str, str] = {}
        self.model: nn.Module | None = None

    def attach(self, model, names):
        from prunecli.compression.batchnorm import BatchNormFolder

        self.model = model
        pairs = BatchNormFolder(model).pairs
        self.pairs = {}
        for name in names:
            module = name.rsplit(".", 1)[0]
            if module in pairs:
                self.pairs[name] = pairs[module]

    def bn_of(self, name: str) -> nn.Module | None:
        if self.model is None or name not in self.pairs:
            return None
        return self.model.get_submodule(self.pairs[name])

    def score(self, target, unit, ctx):
        bn = self.bn_of(unit.tensors[0])
        if bn is None:
            raise ValueError(f"{unit.tensors[0]} is not followed by a BatchNorm layer")
        return bn.weight.detach().abs().float()

    def extra_loss(self, model):
        if not self.l1 or self.model is None:
            return None
        terms = [self.bn_of(n).weight.abs().sum() for n in self.pairs]  # type: ignore[union-attr]
        return self.l1 * torch.stack(terms).sum() if terms else None


class CallableMetric(RowMetric):
    """A user function ``rows [groups, elements] -> scores [groups]`` as a metric."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str = "") -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "callable")

    def reduce(self, rows):
        scores = self.function(rows)
        if not isinstance(scores, torch.Tensor) or scores.shape != (rows.size(0),):
            raise ValueError(
                f"metric {self.name} must return one score per group ({rows.size(0)}), "
                f"got {getattr(scores, 'shape', type(scores).__name__)}"
            )
        return scores.float()


def register_metric(
    name: str, metric: Callable[..., Metric] | Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """Make ``metric: NAME`` usable in schedules.

    ``metric`` is either a :class:`Metric` subclass (or factory returning one) or a plain function
    ``rows -> scores`` that reduces each group's weights to one score (higher is kept).
    """
    if isinstance(metric, type) and issubclass(metric, Metric):
        METRICS.register(name, metric)
    else:
        METRICS.register(name, lambda: _as_metric(metric, name))


def _as_metric(value: Any, name: str) -> Metric:
    if isinstance(value, Metric):
        return value
    if isinstance(value, type) and issubclass(value, Metric):
        return value()
    return CallableMetric(value, name)


def build_metric(spec: Mapping[str, Any]) -> Metric:
    """A metric from its native-syntax mapping.

    ``kind`` is a registered name, or ``package.module:name`` naming a :class:`Metric` subclass
    (built with the other keys as arguments) or a plain row function ``rows -> scores``.
    """
    kind = str(spec["kind"])
    options = {k: v for k, v in spec.items() if k != "kind"}
    factory = METRICS.get(kind)
    if isinstance(factory, type) and issubclass(factory, Metric):
        return factory(**options)
    if kind in METRICS:
        return _as_metric(factory(**options), kind)
    if options:
        raise ValueError(f"metric {kind} is a function of the grouped weights and takes no options")
    return CallableMetric(factory, kind)
