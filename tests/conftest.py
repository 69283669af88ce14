"""Test configuration: float64 on, rank promotion errors (as in equinox's test suite), a bounded hypothesis budget."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

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
