"""Quantizer classes by the name a schedule's ``class:`` gives; the catalog declares the same names
and arguments (``tests/test_catalog_implementations.py`` checks that they agree)."""

from __future__ import annotations

from .nni import NNIQuantizer
from .quantizers import (
    DorefaQuantizer,
    PACTQuantizer,
    PostTrainLinearQuantizer,
    QuantAwareTrainRangeLinearQuantizer,
    Quantizer,
    WRPNQuantizer,
)

QUANTIZERS: dict[str, type[Quantizer]] = {
    cls.__name__: cls
    for cls in (
        PostTrainLinearQuantizer,
        QuantAwareTrainRangeLinearQuantizer,
        DorefaQuantizer,
        PACTQuantizer,
        WRPNQuantizer,
        NNIQuantizer,
    )
}
