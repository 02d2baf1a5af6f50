"""The Distiller sparsity table, checked column by column on tensors with known zero patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from prunecli.report.sparsity import COLUMNS, TOTAL_NAME, sparsity_row, sparsity_table


def _conv_weight() -> torch.Tensor:
    """8 filters x 4 channels x 3x3 with zeroed filters, channels and single kernels."""
    torch.manual_seed(0)
    w = torch.rand(8, 4, 3, 3) + 0.1  # strictly non-zero to start with
    w[2] = 0  # filter 2
    w[5] = 0  # filter 5
    w[:, 1] = 0  # channel 1 in every filter
    w[0, 3] = 0  # one extra kernel
    w[7, 0, 1, 1] = 0  # one extra element (not a whole kernel)
    return w


def test_conv_columns_by_hand():
    w = _conv_weight()
    row = sparsity_row("conv.weight", w)
    # Independent oracles, counted with plain loops.
    zero_filters = sum(1 for f in range(8) if all(w[f, c].abs().sum() == 0 for c in range(4)))
    zero_channels = sum(1 for c in range(4) if all(w[f, c].abs().sum() == 0 for f in range(8)))
    zero_kernels = sum(1 for f in range(8) for c in range(4) if w[f, c].abs().sum() == 0)
    zeros = sum(1 for v in w.flatten().tolist() if v == 0)
    assert zero_filters == 2 and zero_channels == 1
    assert zero_kernels == 2 * 4 + 6 * 1 + 1  # 2 whole filters, channel 1 elsewhere, kernel (0,3)
    assert row.shape == [8, 4, 3, 3]
    assert row.nnz_dense == 288
    assert row.nnz_sparse == 288 - zeros
    assert row.pct_3d == pytest.approx(100 * zero_filters / 8)
    assert row.ch_pct == pytest.approx(100 * zero_channels / 4)
    assert row.pct_2d == pytest.approx(100 * zero_kernels / 32)
    assert row.fine_pct == pytest.approx(100 * zeros / 288)
    assert row.cols_pct == 0 and row.rows_pct == 0  # matrix columns only apply to 2D weights
    assert row.std == pytest.approx(float(w.std()))
    assert row.mean == pytest.approx(float(w.mean()))
    assert row.abs_mean == pytest.approx(float(w.abs().mean()))


def test_linear_rows_are_input_features_as_in_distiller():
    """Distiller names Linear structures on the transposed matrix: 'Rows' = zero input features."""
    w = torch.ones(6, 10)  # [out=6, in=10]
    w[:, [0, 3, 4]] = 0  # 3 input features removed (stored columns)
    w[5, :] = 0  # 1 output neuron removed (stored row)
    row = sparsity_row("fc.weight", w)
    assert row.rows_pct == pytest.approx(100 * 3 / 10)
    assert row.cols_pct == pytest.approx(100 * 1 / 6)
    assert row.pct_2d == pytest.approx(100 * 1 / 6)  # 2D of a matrix = zero stored rows
    assert row.ch_pct == 0 and row.pct_3d == 0
    assert row.nnz_sparse == 5 * 7


def test_table_selection_and_total():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[0] = 0
        model[3].weight[:, 0] = 0
    table = sparsity_table(model)
    # BN weights and all biases are 1-D: Distiller leaves them out.
    assert [r.name for r in table.rows] == ["0.weight", "3.weight"]
    assert table.total_nnz_dense == 4 * 3 * 9 + 8
    assert table.total_nnz_sparse == 3 * 3 * 9 + 6
    assert table.total_fine_pct == pytest.approx(100 * (1 - (27 + 6) / (36 + 8)))
    assert table.total_cells()[0] == TOTAL_NAME
    assert len(table.rows[0].cells()) == len(COLUMNS) == 13
    assert table.rows[0].cells()[1] == "(4, 3, 3, 3)"


_ROW = re.compile(
    r"^#\s*\|\s*\d+\s*\|\s*(?:module\.)?(\S+)\s*\|\s*\(([\d, ]+)\)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
    r"\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|"
)


def _distiller_rows(path: Path) -> list[tuple[str, tuple[int, ...], int]]:
    rows = []
    for line in path.read_text().splitlines():
        m = _ROW.match(line)
        if m and "Total" not in line:
            rows.append((m.group(1), tuple(int(s) for s in m.group(2).split(",")), int(m.group(3))))
    return rows


def test_resnet20_dense_names_shapes_match_distiller_table(examples_dir):
    models = pytest.importorskip("prunecli.models")
    if not hasattr(models, "create_model"):
        pytest.skip("prunecli.models.create_model not available yet")
    model, _ = models.create_model("resnet20_cifar", dataset="cifar10")
    expected = _distiller_rows(Path(examples_dir) / "network_surgery" / "resnet20.network_surgery.yaml")
    assert len(expected) == 22
    table = sparsity_table(model)
    got = [(r.name, tuple(r.shape), r.nnz_dense) for r in table.rows]
    assert got == expected
    assert table.total_nnz_dense == 270896  # "# of parameters: 270,896" in the schedule's comments


def test_pattern_reproduces_published_row_percentages(examples_dir):
    """Rebuild published rows' zero structure and compare the structure columns.

    fc.weight in resnet20_filters.schedule_agp.yaml: 32 of 64 input features removed by a
    'Rows' pruner -> Rows 50%, Fine 50%, Cols 0%, 2D 0%.
    """
    rows = _distiller_rows(Path(examples_dir) / "agp-pruning" / "resnet20_filters.schedule_agp.yaml")
    assert ("fc.weight", (10, 64), 640) in rows
    w = torch.randn(10, 64)
    w[:, ::2] = 0
    row = sparsity_row("fc.weight", w)
    assert (row.cols_pct, row.rows_pct, row.pct_2d, row.fine_pct) == (0.0, 50.0, 0.0, 50.0)
    assert row.nnz_sparse == 320
