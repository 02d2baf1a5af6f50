"""Drop-in hook APIs of other pruning tools, driving prunecli's compression scheduler.

:mod:`prunecli.compat.lpot` is Intel LPOT's ``Pruning`` object, :mod:`prunecli.compat.inc` Neural
Compressor 2.x's ``prepare_compression`` callbacks; their schedules are the dialects of
:mod:`prunecli.schedule.dialects` (docs/dialects.md).
"""
