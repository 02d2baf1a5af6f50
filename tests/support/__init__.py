"""Helpers shared by the tests: small models, schedules built in code, training loops, fixtures.

Nothing here is a test; pytest does not collect these modules (their names do not start with ``test_``).
"""
