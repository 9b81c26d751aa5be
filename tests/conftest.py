import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.backend.clear_session()


#: Debian's dataset-fashion-mnist: the offline data of the tests that run whole recipes
FMNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def recipe_file(tmp_path):
    """``recipe_file(text, name="recipe.yaml")`` writes a recipe on the offline Fashion-MNIST to
    ``tmp_path / name`` and returns its path; the test skips without the offline data."""

    def write(text: str, name: str = "recipe.yaml"):
        if not os.path.isdir(FMNIST):
            pytest.skip("needs Debian's dataset-fashion-mnist")
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
