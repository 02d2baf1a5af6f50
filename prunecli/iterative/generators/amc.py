"""AMC (He et al. 2018; Distiller's ``AutomatedDeepCompression``, NNI's ``AMCPruner``): a DDPG
agent walks the searched layers in order and picks each one's level.

* **State** of layer ``t`` (the paper's layer embedding, every feature scaled to ``[0, 1]``): its
  index, input and output channels, feature-map height and width, stride, kernel size, its share
  of the budgeted cost, the cost already removed by earlier layers, the cost of the layers still
  to come, and the previous action. Without layer shapes (an unbound generator) the shape
  features are left out.
* **Action**: the level of layer ``t`` in ``[0, max_level]``, from the actor plus clipped normal
  exploration noise whose sigma decays each episode; the first ``warmup`` episodes act at random.
  It is then **clipped from below** to the smallest level that still lets the budget be met with
  every later layer at ``max_level``, so each episode's allocation meets the budget.
* **Reward**: the evaluator's score of the allocation (accuracy under the budget), minus a moving
  average (the baseline); every transition of the episode gets it. The critic learns
  ``r + discount * Q'(s', mu'(s'))``; actor and critic are small MLPs with soft target updates.

After ``episodes`` probes the allocation with the best reward is fine-tuned as the final task.
Which layers are searched can come from a Distiller AMC network list
(``auto_compression/amc/*.yaml``, ``network: {arch: [module names]}``): see
:func:`load_network_list`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunecli.errors import ConfigError
from prunecli.iterative.cost import LayerInfo, level_for_target
from prunecli.iterative.generators import GENERATORS
from prunecli.iterative.generators.search import SearchGenerator
from prunecli.iterative.task import SearchSpace, Task, TaskResult


# ---------------------------------------------------------------------------------- network lists
def load_network_list(path: str | Path, arch: str, parameter_names: Sequence[str] | None = None) -> list[str]:
    """The weights a Distiller AMC network file lists for ``arch`` (``module.`` prefixes dropped).

    With ``parameter_names`` every listed module must own a weight of the model; an unknown
    architecture or module is a :class:`ConfigError` naming the file, line and column.
    """
    from prunecli.schedule.names import normalise
    from prunecli.schedule.yamlio import load_yaml

    data, locate = load_yaml(Path(path), error_type=ConfigError, what="AMC network list")
    network = data.get("network") if isinstance(data, dict) else None
    if not isinstance(network, dict):
        raise ConfigError(
            "not an AMC network list: no 'network' mapping of architecture -> module names",
            location=locate(()),
            hint="give the amc generator network: FILE with a file such as auto_compression/amc/auto_compression_channels.yaml",
        )
    if arch not in network:
        raise ConfigError(
            f"architecture {arch!r} is not in this AMC network list",
            location=locate(("network",)),
            hint=f"use one of: {', '.join(sorted(network))}",
        )
    modules = network[arch]
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(
            f"network.{arch} must be a list of module names",
            location=locate(("network", arch)),
            hint='write it as ["module.conv1", "module.fc"]',
        )
    weights = [f"{normalise(m)}.weight" for m in modules]
    if parameter_names is not None:
        known = set(parameter_names)
        for position, weight in enumerate(weights):
            if weight not in known:
                raise ConfigError(
                    f"module {modules[position]!r} listed for {arch!r} has no weight in this model",
                    location=locate(("network", arch, position)),
                    hint="list modules of the model being pruned (see 'prunecli summary' for its layers)",
                )
    return weights


# ---------------------------------------------------------------------------------- the agent
def _mlp(sizes: Sequence[int], out_activation: nn.Module | None, generator: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        bound = 1.0 / np.sqrt(a)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


def _to_plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"tensor": value.detach().cpu().tolist(), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"tensor", "dtype"}:
        return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
    if isinstance(value, dict):
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = optimizer.state_dict()
    return _to_plain(
        {"state": {str(k): v for k, v in state["state"].items()}, "param_groups": state["param_groups"]}
    )


def _load_optimizer(optimizer: torch.optim.Optimizer, plain: Mapping[str, Any]) -> None:
    data = _from_plain(dict(plain))
    data["state"] = {int(k): v for k, v in data["state"].items()}
    optimizer.load_state_dict(data)


class DDPG:
    """Actor-critic with target networks and a replay buffer, sized for a few dozen layers."""

    def __init__(
        self,
        state_dim: int,
        *,
        hidden: int = 64,
        lr_actor: float = 1e-4,
        lr_critic: float = 1e-3,
        tau: float = 0.01,
        discount: float = 1.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.actor = _mlp([state_dim, hidden, hidden, 1], nn.Sigmoid(), generator)
        self.critic = _mlp([state_dim + 1, hidden, hidden, 1], None, generator)
        self.actor_target = _mlp([state_dim, hidden, hidden, 1], nn.Sigmoid(), generator)
        self.critic_target = _mlp([state_dim + 1, hidden, hidden, 1], None, generator)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=lr_critic)
        self.tau, self.discount, self.batch_size = tau, discount, batch_size
        #: (state, action, reward, next state, done)
        self.buffer: list[list[Any]] = []

    def act(self, state: Sequence[float]) -> float:
        with torch.no_grad():
            return float(self.actor(torch.tensor([state], dtype=torch.float32))[0, 0])

    def remember(self, transitions: Sequence[Sequence[Any]]) -> None:
        self.buffer.extend([list(t) for t in transitions])

    def update(self, rng: np.random.Generator) -> None:
        """One gradient step of critic and actor on a random minibatch, then soft target updates."""
        if not self.buffer:
            return
        picks = rng.integers(0, len(self.buffer), min(self.batch_size, len(self.buffer)))
        batch = [self.buffer[int(i)] for i in picks]
        s = torch.tensor([b[0] for b in batch], dtype=torch.float32)
        a = torch.tensor([[b[1]] for b in batch], dtype=torch.float32)
        r = torch.tensor([[b[2]] for b in batch], dtype=torch.float32)
        s1 = torch.tensor([b[3] for b in batch], dtype=torch.float32)
        done = torch.tensor([[float(b[4])] for b in batch], dtype=torch.float32)
        with torch.no_grad():
            q_next = self.critic_target(torch.cat([s1, self.actor_target(s1)], dim=1))
            target = r + self.discount * (1.0 - done) * q_next
        critic_loss = nn.functional.mse_loss(self.critic(torch.cat([s, a], dim=1)), target)
        self.critic_optim.zero_grad()
        critic_loss.backward()
        self.critic_optim.step()
        actor_loss = -self.critic(torch.cat([s, self.actor(s)], dim=1)).mean()
        self.actor_optim.zero_grad()
        actor_loss.backward()
        self.actor_optim.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, q in zip(net.parameters(), tgt.parameters()):
                    q.mul_(1.0 - self.tau).add_(self.tau * p)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": _to_plain(self.actor.state_dict()),
            "critic": _to_plain(self.critic.state_dict()),
            "actor_target": _to_plain(self.actor_target.state_dict()),
            "critic_target": _to_plain(self.critic_target.state_dict()),
            "actor_optim": _optimizer_state(self.actor_optim),
            "critic_optim": _optimizer_state(self.critic_optim),
            "buffer": [list(b) for b in self.buffer],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("actor", "critic", "actor_target", "critic_target"):
            getattr(self, key).load_state_dict(_from_plain(dict(state[key])))
        _load_optimizer(self.actor_optim, state["actor_optim"])
        _load_optimizer(self.critic_optim, state["critic_optim"])
        self.buffer = [list(b) for b in state["buffer"]]


# ---------------------------------------------------------------------------------- the generator
@GENERATORS.register("amc")
class AMC(SearchGenerator):
    name = "amc"

    def __init__(
        self,
        episodes: int = 20,
        warmup: int = 5,
        *,
        hidden: int = 64,
        noise: float = 0.5,
        noise_decay: float = 0.95,
        moving_alpha: float = 0.5,
        updates_per_episode: int = 0,
        final_finetune: bool = True,
        layers_to_search: Sequence[str] | None = None,
        network: str | None = None,
        arch: str | None = None,
        seed: int = 0,
    ) -> None:
        if episodes < 1 or warmup < 0:
            raise ValueError(f"amc needs episodes >= 1 and warmup >= 0, got {episodes} and {warmup}")
        super().__init__(seed=seed)
        self.episodes, self.warmup = int(episodes), int(warmup)
        self.hidden = int(hidden)
        self.noise, self.noise_decay, self.moving_alpha = (
            float(noise),
            float(noise_decay),
            float(moving_alpha),
        )
        self.updates_per_episode = int(updates_per_episode)
        self.final_finetune = final_finetune
        if network is not None and arch is None:
            raise ValueError("amc: 'network' (a Distiller AMC network list) needs 'arch', the entry to read")
        if network is not None and layers_to_search is not None:
            raise ValueError("amc: give either 'network' + 'arch' or 'layers_to_search', not both")
        self.layers_to_search = list(layers_to_search) if layers_to_search is not None else None
        self.network, self.arch = network, arch
        self.agent: DDPG | None = None
        self.episode = 0
        self.baseline: float | None = None
        self.best: dict[str, float] | None = None
        self.best_reward: float | None = None
        #: this episode's transitions, rewarded when its score arrives
        self.pending: list[list[Any]] = []
        self.finished = False

    # ------------------------------------------------------------------ the layer walk
    @property
    def order(self) -> list[str]:
        """The searched tensors in the model's order (the network list's, or the layers')."""
        assert self.space is not None
        if self.layers_to_search is not None:
            return [n for n in self.layers_to_search if n in self.space.shares]
        if self.layers is not None:
            listed = [layer.weight for layer in self.layers if layer.weight in self.space.shares]
            return listed + [n for n in self.names if n not in listed]
        return self.names

    def _static_features(self) -> list[list[float]]:
        """Per layer: index and (when known) channels, feature-map size, stride, kernel; scaled to [0, 1]."""
        assert self.space is not None
        order = self.order
        by_name = {layer.weight: layer for layer in self.layers or []}
        rows = []
        for t, name in enumerate(order):
            row = [float(t)]
            layer = by_name.get(name)
            if self.layers is not None:
                hw = layer.ifm_hw if layer is not None and layer.ifm_hw else (1, 1)
                row += (
                    [
                        float(layer.in_channels),
                        float(layer.out_channels),
                        float(hw[0]),
                        float(hw[-1]),
                        float(layer.stride),
                        float(layer.kernel),
                    ]
                    if layer is not None
                    else [0.0] * 6
                )
            row.append(float(self.space.shares.get(name, 0.0)))
            rows.append(row)
        table = np.asarray(rows, dtype=np.float64)
        low, high = table.min(axis=0), table.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        return ((table - low) / span).tolist()

    def _state(self, t: int, levels: Mapping[str, float], previous: float) -> list[float]:
        assert self.cost is not None
        order = self.order
        dense = self.cost.dense
        reduced = (dense - self.cost.predict(levels)) / dense
        rest = sum(self.space.shares.get(n, 0.0) for n in order[t + 1 :]) if self.space else 0.0
        return [*self._statics[t], reduced, rest, previous]

    def clip_action(self, t: int, action: float, levels: Mapping[str, float]) -> float:
        """Raise ``action`` to the smallest level that keeps the budget reachable with every later
        layer at ``max_level``; never above ``max_level``."""
        assert self.space is not None and self.cost is not None
        order = self.order
        max_level = self.space.max_level
        assumed = {**levels, **{n: max_level for n in order[t + 1 :]}}
        lowest = level_for_target(assumed, order[t], self.cost, self.target, max_level)
        if lowest is None:
            lowest = max_level
        return float(min(max(action, lowest, 0.0), max_level))

    def _episode(self) -> Task:
        """Walk the layers once with the current policy; the allocation is one probe task."""
        assert self.space is not None and self.agent is not None
        levels: dict[str, float] = {}
        previous = 0.0
        transitions: list[list[Any]] = []
        order = self.order
        sigma = self.noise * self.noise_decay ** max(0, self.episode - self.warmup)
        for t, name in enumerate(order):
            state = self._state(t, levels, previous)
            if self.episode < self.warmup:
                action = float(self.rng.uniform(0.0, self.space.max_level))
            else:
                action = self.agent.act(state) * self.space.max_level
                action = float(np.clip(self.rng.normal(action, sigma), 0.0, self.space.max_level))
            action = self.clip_action(t, action, levels)
            levels[name] = action
            transitions.append([state, action / self.space.max_level, 0.0, None, t == len(order) - 1])
            previous = action
        for t in range(len(transitions)):
            following = transitions[t + 1][0] if t + 1 < len(transitions) else transitions[t][0]
            transitions[t][3] = following
        self.pending = transitions
        return self.make_task(
            levels,
            note=f"AMC episode {self.episode + 1}/{self.episodes}"
            + (" (warm-up)" if self.episode < self.warmup else ""),
            finetune=False,
            extra={"role": "probe", "episode": self.episode},
        )

    # ------------------------------------------------------------------ generator protocol
    def initial_tasks(self, space: SearchSpace) -> Sequence[Task]:
        self.start(space)
        if self.network is not None and self.arch is not None:
            self.layers_to_search = load_network_list(self.network, self.arch)
        if self.layers_to_search is not None and not self.order:
            raise ValueError(
                f"amc: none of the layers to search ({', '.join(self.layers_to_search)}) is pruned by this "
                f"run (it prunes {', '.join(self.names)})"
            )
        self._statics = self._static_features()
        state_dim = len(self._statics[0]) + 3
        self.agent = DDPG(state_dim, hidden=self.hidden, seed=self.seed)
        return [self._episode()]

    def next_tasks(self, result: TaskResult) -> Sequence[Task]:
        assert self.agent is not None
        if self.finished or result.task.extra.get("role") == "final":
            self.finished = True
            return []
        reward = float(result.score)
        if self.best_reward is None or reward > self.best_reward:
            self.best, self.best_reward = dict(result.task.levels), reward
        self.baseline = (
            reward
            if self.baseline is None
            else (self.moving_alpha * self.baseline + (1 - self.moving_alpha) * reward)
        )
        advantage = reward - self.baseline
        for transition in self.pending:
            transition[2] = advantage
        self.agent.remember(self.pending)
        self.pending = []
        self.episode += 1
        if self.episode > self.warmup:
            for _ in range(self.updates_per_episode or len(self.order)):
                self.agent.update(self.rng)
        if self.episode < self.episodes:
            return [self._episode()]
        self.finished = not self.final_finetune
        if not self.final_finetune:
            return []
        assert self.best is not None
        return [
            self.make_task(
                self.best,
                note=f"AMC best of {self.episodes} episodes (score {self.best_reward:.4g}), fine-tuned",
                finetune=True,
                extra={"role": "final"},
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.base_state(),
            "agent": None if self.agent is None else self.agent.state_dict(),
            "episode": self.episode,
            "baseline": self.baseline,
            "best": self.best,
            "best_reward": self.best_reward,
            "pending": self.pending,
            "finished": self.finished,
            "layers": None if self.layers is None else [layer.to_dict() for layer in self.layers],
            "layers_to_search": self.layers_to_search,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("layers") is not None and self.layers is None:
            self.layers = [LayerInfo.from_dict(d) for d in state["layers"]]
        if state.get("layers_to_search") is not None:
            self.layers_to_search = list(state["layers_to_search"])
        self.load_base_state(state)
        if self.space is not None:
            self._statics = self._static_features()
            self.agent = DDPG(len(self._statics[0]) + 3, hidden=self.hidden, seed=self.seed)
            if state["agent"] is not None:
                self.agent.load_state_dict(state["agent"])
        self.episode = int(state["episode"])
        self.baseline = state["baseline"]
        self.best = None if state["best"] is None else dict(state["best"])
        self.best_reward = state["best_reward"]
        self.pending = [list(p) for p in state["pending"]]
        self.finished = bool(state["finished"])
