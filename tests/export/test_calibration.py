"""representative_samples: calibration inputs from arrays, datasets, generators."""

import numpy as np
import pytest
import tensorflow as tf

from export_fixtures import random_images
from kprune.errors import ExportError
from kprune.export.calibration import representative_samples


def test_representative_data_forms(convnet):
    x = random_images(10)
    y = np.arange(10)
    from_array = representative_samples(x, convnet, 4)
    from_dataset = representative_samples(tf.data.Dataset.from_tensor_slices((x, y)).batch(3), convnet, 4)
    from_unbatched = representative_samples(tf.data.Dataset.from_tensor_slices(x), convnet, 4)

    def generator():
        for i in range(10):
            yield [x[i : i + 1]]

    from_callable = representative_samples(generator, convnet, 4)
    for samples in (from_array, from_dataset, from_unbatched, from_callable):
        assert len(samples) == 4
        assert all(len(s) == 1 and s[0].shape == (1, 12, 12, 3) for s in samples)
        np.testing.assert_array_equal(samples[3][0][0], x[3])


def test_representative_data_wrong_rank_is_clear(convnet):
    with pytest.raises(ExportError, match=r"shape \(12, 12\).*rank 4"):
        representative_samples(np.zeros((12, 12), "float32"), convnet, 4)


def test_multi_input_elements_and_dicts():
    import keras

    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    xa, xb = np.arange(12.0).reshape(4, 3), np.arange(8.0).reshape(4, 2)
    from_tuple = representative_samples([((xa, xb), np.zeros(4))], model, 3)
    from_dict = representative_samples([{"a": xa, "b": xb}], model, 3)
    for samples in (from_tuple, from_dict):
        assert len(samples) == 3
        np.testing.assert_array_equal(samples[2][0], xa[2:3])
        np.testing.assert_array_equal(samples[2][1], xb[2:3])
        assert samples[0][0].dtype == np.float32
    with pytest.raises(ExportError, match=r"lacks model inputs \['b'\]"):
        representative_samples([{"a": xa}], model, 3)


def test_empty_and_wrong_types():
    with pytest.raises(ExportError, match="yielded no samples"):
        representative_samples([], dense_model(), 3)
    with pytest.raises(ExportError, match="Received: int"):
        representative_samples(5, dense_model(), 3)


def dense_model():
    import keras

    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))
