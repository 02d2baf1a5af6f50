"""The two learning-rate schedules Distiller adds to torch's (``distiller/learning_rate.py``)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class PolynomialLR(LRScheduler):
    """``lr = base_lr * (1 - epoch / t_max) ** power`` (Distiller's; not torch's ``PolynomialLR``)."""

    def __init__(self, optimizer: Optimizer, t_max: int, power: float, last_epoch: int = -1) -> None:
        if t_max <= 0:
            raise ValueError(f"t_max must be positive, got {t_max}")
        self.t_max = t_max
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        return [base * (1 - self.last_epoch / self.t_max) ** self.power for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        return self._get_closed_form_lr()


class MultiStepMultiGammaLR(LRScheduler):
    """Like MultiStepLR, but milestone ``i`` multiplies the rate by its own ``gammas[i]``."""

    def __init__(
        self, optimizer: Optimizer, milestones: Sequence[int], gammas: Sequence[float], last_epoch: int = -1
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        if len(milestones) != len(gammas):
            raise ValueError(
                f"milestones and gammas must have the same length ({len(milestones)} != {len(gammas)})"
            )
        self.milestones = list(milestones)
        self.multiplicative_gammas = [1.0]
        for gamma in gammas:
            self.multiplicative_gammas.append(self.multiplicative_gammas[-1] * gamma)
        super().__init__(optimizer, last_epoch)

    def _get_closed_form_lr(self) -> list[float]:
        factor = self.multiplicative_gammas[bisect_right(self.milestones, self.last_epoch)]
        return [base * factor for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        return self._get_closed_form_lr()
