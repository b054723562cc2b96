"""Hypothesis settings shared by the fuzz tests (test/test_fuzz_*.py).

A fixed budget: ``derandomize=True`` draws the same inputs on every run (no example
database, no deadline: CI machines are busy), ``max_examples`` per test. For a deeper
hunt outside CI, ``ALPAMAYO_FUZZ_SCALE=20`` multiplies every budget (and
``ALPAMAYO_FUZZ_RANDOM=1`` draws fresh random inputs instead of the fixed ones).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(int(os.environ.get("ALPAMAYO_FUZZ_SCALE", "1")), 1)
RANDOM = os.environ.get("ALPAMAYO_FUZZ_RANDOM", "") == "1"


def fuzz_settings(max_examples: int) -> settings:
    """Settings for one fuzz test: ``max_examples`` x the scale, deterministic by default."""
    return settings(max_examples=max_examples * SCALE, derandomize=not RANDOM, deadline=None,
                    database=None, print_blob=RANDOM,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])
