"""Reports: sparsity tables, compute summaries, latency, formats and CI gates."""
