"""Side-by-side benchmarks of prunecli against the tools users would otherwise pick.

Every number that compares tools is a ratio of measurements taken in alternating rounds
within one run, so the shared, noisy machine affects all variants alike.
Run ``python -m bench all [--quick] [--output PATH]``.
"""
