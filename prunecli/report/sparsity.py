"""Distiller's weights-sparsity table (``--summary sparsity``), column for column.

Distiller stores Linear weights as ``[out, in]`` but names its 2D structures as if the matrix
were transposed (the GEMM operand): its "Rows (%)" of a Linear weight is the share of all-zero
*input features* (stored columns) and "Cols (%)" the share of all-zero *output neurons* (stored
rows). "2D (%)" is the share of all-zero kernels of a 4D weight, or of all-zero stored rows of a
2D weight. The per-structure figures are reproduced here so tables are comparable with the
published ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

#: Column titles, exactly as Distiller prints them.
COLUMNS: tuple[str, ...] = (
    "Name",
    "Shape",
    "NNZ (dense)",
    "NNZ (sparse)",
    "Cols (%)",
    "Rows (%)",
    "Ch (%)",
    "2D (%)",
    "3D (%)",
    "Fine (%)",
    "Std",
    "Mean",
    "Abs-Mean",
)
TOTAL_NAME = "Total sparsity:"


def _zero_share(per_structure_abs_sum: torch.Tensor) -> float:
    """Fraction of structures whose absolute sum is zero."""
    n = per_structure_abs_sum.numel()
    return 0.0 if n == 0 else float((per_structure_abs_sum == 0).sum()) / n


def sparsity_fine(t: torch.Tensor) -> float:
    return 0.0 if t.numel() == 0 else 1.0 - float((t != 0).sum()) / t.numel()


def sparsity_cols(t: torch.Tensor) -> float:
    """Distiller's "Cols": all-zero stored rows (output neurons) of a 2D weight; 0 otherwise."""
    return _zero_share(t.abs().sum(dim=1)) if t.dim() == 2 else 0.0


def sparsity_rows(t: torch.Tensor) -> float:
    """Distiller's "Rows": all-zero stored columns (input features) of a 2D weight; 0 otherwise."""
    return _zero_share(t.abs().sum(dim=0)) if t.dim() == 2 else 0.0


def sparsity_ch(t: torch.Tensor) -> float:
    """All-zero input channels (dim 1 across every filter) of a 4D weight; 0 otherwise."""
    return _zero_share(t.abs().sum(dim=(0, 2, 3))) if t.dim() == 4 else 0.0


def sparsity_2d(t: torch.Tensor) -> float:
    """All-zero kernels of a 4D weight, or all-zero stored rows of a 2D weight."""
    if t.dim() == 4:
        return _zero_share(t.abs().reshape(t.shape[0] * t.shape[1], -1).sum(dim=1))
    if t.dim() == 2:
        return _zero_share(t.abs().sum(dim=1))
    return 0.0


def sparsity_3d(t: torch.Tensor) -> float:
    """All-zero filters (dim 0) of a 4D weight; 0 otherwise."""
    return _zero_share(t.abs().reshape(t.shape[0], -1).sum(dim=1)) if t.dim() == 4 else 0.0


@dataclass
class SparsityRow:
    """One line of the table; percentages are 0..100 as Distiller prints them."""

    name: str
    shape: list[int]
    nnz_dense: int
    nnz_sparse: int
    cols_pct: float
    rows_pct: float
    ch_pct: float
    pct_2d: float
    pct_3d: float
    fine_pct: float
    std: float
    mean: float
    abs_mean: float
    #: weight bits when the model is quantized (None: float); not one of Distiller's columns
    bits: int | None = None

    def cells(self) -> list:
        """Values in :data:`COLUMNS` order (shape rendered like Distiller's ``(16, 3, 3, 3)``)."""
        shape = "(" + ", ".join(str(s) for s in self.shape) + ")"
        return [
            self.name,
            shape,
            self.nnz_dense,
            self.nnz_sparse,
            self.cols_pct,
            self.rows_pct,
            self.ch_pct,
            self.pct_2d,
            self.pct_3d,
            self.fine_pct,
            self.std,
            self.mean,
            self.abs_mean,
        ]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SparsityTable:
    rows: list[SparsityRow]
    total_nnz_dense: int
    total_nnz_sparse: int
    total_fine_pct: float

    @property
    def total_sparsity(self) -> float:
        """Overall fine-grained sparsity of the tabulated tensors, as a fraction 0..1."""
        return self.total_fine_pct / 100.0

    def total_cells(self) -> list:
        return [TOTAL_NAME, "-", self.total_nnz_dense, self.total_nnz_sparse, 0, 0, 0, 0, 0,
                self.total_fine_pct, 0, 0, 0]  # fmt: skip

    def as_dict(self) -> dict:
        return {
            "columns": list(COLUMNS),
            "rows": [r.as_dict() for r in self.rows],
            "total": {
                "nnz_dense": self.total_nnz_dense,
                "nnz_sparse": self.total_nnz_sparse,
                "fine_pct": self.total_fine_pct,
            },
        }


def _included(name: str, t: torch.Tensor, dims: tuple[int, ...]) -> bool:
    return t.dim() in dims and ("weight" in name or "bias" in name) and t.is_floating_point()


def sparsity_row(name: str, t: torch.Tensor) -> SparsityRow:
    t = t.detach().float().cpu()
    nnz = int((t != 0).sum())
    return SparsityRow(
        name=name,
        shape=list(t.shape),
        nnz_dense=t.numel(),
        nnz_sparse=nnz,
        cols_pct=sparsity_cols(t) * 100,
        rows_pct=sparsity_rows(t) * 100,
        ch_pct=sparsity_ch(t) * 100,
        pct_2d=sparsity_2d(t) * 100,
        pct_3d=sparsity_3d(t) * 100,
        fine_pct=sparsity_fine(t) * 100,
        std=float(t.std()) if t.numel() > 1 else 0.0,
        mean=float(t.mean()) if t.numel() else 0.0,
        abs_mean=float(t.abs().mean()) if t.numel() else 0.0,
    )


def sparsity_table(
    source: nn.Module | Mapping[str, torch.Tensor],
    dims: tuple[int, ...] = (2, 4),
    *,
    bits: Mapping[str, int] | None = None,
) -> SparsityTable:
    """Tabulate every state-dict tensor of rank 2 or 4 whose name contains 'weight' or 'bias'.

    ``bits``: tensor name -> quantized bits, recorded in each row's ``bits`` (float tensors: None).
    """
    state = source.state_dict() if isinstance(source, nn.Module) else source
    rows = [sparsity_row(n, t) for n, t in state.items() if _included(n, t, dims)]
    for row in rows:
        row.bits = (bits or {}).get(row.name)
    dense = sum(r.nnz_dense for r in rows)
    sparse = sum(r.nnz_sparse for r in rows)
    fine = (1.0 - sparse / dense) * 100 if dense else 0.0
    return SparsityTable(rows=rows, total_nnz_dense=dense, total_nnz_sparse=sparse, total_fine_pct=fine)
