"""Test configuration: float64 on, rank promotion errors (as in equinox's test suite), a bounded hypothesis budget."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# The suite's cost is XLA compilation of many tiny programs, not running them: skip most of XLA's optimisation
# passes (1.3-3.5x faster measured on 2 cores; the same programs, only less fused, so tolerances are unaffected).
# Set TNKIT_TEST_OPTIMIZE=1 to test with full optimisation.
if os.environ.get("TNKIT_TEST_OPTIMIZE", "0") != "1":
    jax.config.update("jax_disable_most_optimizations", True)

settings.register_profile(
    "tnkit",
    max_examples=int(os.environ.get("TNKIT_HYPOTHESIS_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("tnkit")


@pytest.fixture
def key():
    return jax.random.key(0)
