"""Shared helpers of the Python tests."""

import numpy as np
import pytest

import ocellus


@pytest.fixture(autouse=True)
def fixed_seed():
    """Every test builds its layers from the same initial weights."""
    ocellus.manual_seed(0)


def distinct_values(shape, rng, spacing=0.1):
    """An array of `shape` whose values are all different, at least `spacing` apart, in
    random order and centred on zero: no max-pool window holds a tie, and no value sits
    near a ReLU's kink at 0, even after a finite-difference step smaller than spacing/2."""
    n = int(np.prod(shape))
    values = (np.arange(n) - (n - 1) / 2 + 0.5) * spacing
    return rng.permutation(values).reshape(shape)
