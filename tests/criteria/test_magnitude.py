import numpy as np
import pytest

from kprune import criteria
from kprune.errors import RecipeError


def test_level_is_abs():
    w = np.array([[1.0, -2.0], [0.5, -0.1]])
    np.testing.assert_array_equal(criteria.get("level")(w), np.abs(w))


def test_l1_l2_per_output_channel_of_conv_kernel():
    # kernel (kh, kw, in, out) = (1, 2, 1, 3); filter j holds values k[0, :, 0, j]
    k = np.zeros((1, 2, 1, 3))
    k[0, :, 0, 0] = [3, -4]
    k[0, :, 0, 1] = [1, 1]
    k[0, :, 0, 2] = [0, -2]
    np.testing.assert_allclose(criteria.get("l1")(k, axis=3), [7, 2, 2])
    np.testing.assert_allclose(criteria.get("l2")(k, axis=-1), [5, np.sqrt(2), 2])


def test_unknown_criterion_lists_names():
    with pytest.raises(RecipeError, match="l1"):
        criteria.get("l9")
    assert {"level", "l1", "l2"} <= set(criteria.names())
