"""Task generators: each decides, from the results so far, which per-tensor levels to try next."""
