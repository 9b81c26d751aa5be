"""Tests of kprune.data: IDX/CIFAR readers, local-copy precedence, the tfds path (mocked),
augmentation, validation carving, determinism and the offline error message."""

import gzip
import os
import pickle
import socket
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kprune import data
from kprune.data import local
from kprune.errors import DataError

DEBIAN = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test may touch the network, and no machine-wide local copy leaks in by default."""

    def refuse(*args, **kwargs):
        raise RuntimeError("test attempted network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setattr(local, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))
    local._read_cached.cache_clear()


def write_idx(path, array, gz=False):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "i" * array.ndim, *array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.tobytes())


def write_mnist_like(folder, n_train=12, n_test=4, gz=True, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[split] = (images, labels)
    return arrays


#: both data pipelines: tf.data, and numpy (ArrayBatches, used when TensorFlow is not installed)
PIPELINES = ["tf.data", "numpy"]


def collect(ds):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_hand_values(tmp_path, gz):
    images = np.array([[[0, 1], [2, 255]], [[10, 20], [30, 40]], [[7, 7], [7, 128]]])
    write_idx(tmp_path / "img", images, gz)
    write_idx(tmp_path / "lab", [3, 1, 4], gz)
    got = data.read_idx(tmp_path / "img")
    assert got.dtype == np.uint8 and got.shape == (3, 2, 2)
    assert got[0, 1, 1] == 255 and got[1, 1, 0] == 30 and got[2, 1, 1] == 128
    np.testing.assert_array_equal(data.read_idx(tmp_path / "lab"), [3, 1, 4])


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((2, 3, 3)))
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("gz", [False, True])
def test_local_mnist_copy_values_and_order(tmp_path, monkeypatch, gz):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    arrays = write_mnist_like(tmp_path / "mnist", gz=gz)
    x, y = collect(data.load("mnist", "train", batch_size=5, shuffle=False))
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[..., 0], arrays["train"][0] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(y, arrays["train"][1])
    x, y = collect(data.load("mnist", "test", batch_size=5))
    assert x.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(np.sort(y), [0, 1, 2, 3])


def test_env_dir_takes_precedence_over_debian(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "debian", n_train=6, seed=1)
    monkeypatch.setattr(local, "DEBIAN_FASHION_MNIST", str(tmp_path / "debian"))
    x, _ = collect(data.load("fashion_mnist", "train", shuffle=False))
    assert len(x) == 6  # the Debian path is used when the env dir has no copy
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    arrays = write_mnist_like(tmp_path / "env" / "fashion_mnist", n_train=9, seed=2)
    x, _ = collect(data.load("fashion_mnist", "train", shuffle=False))
    assert len(x) == 9
    np.testing.assert_allclose(x[0, ..., 0], arrays["train"][0][0] / 255.0, atol=1e-6)


@pytest.mark.skipif(not os.path.isdir(DEBIAN), reason="dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.setattr(local, "DEBIAN_FASHION_MNIST", DEBIAN)
    meta = data.info("fashion_mnist")
    assert meta.input_shape == (28, 28, 1) and meta.num_classes == 10
    train = data.load("fashion_mnist", "train", batch_size=1000, shuffle=False)
    test = data.load("fashion_mnist", "test", batch_size=1000, shuffle=False)
    assert int(train.cardinality()) * 1000 == 60000 and int(test.cardinality()) * 1000 == 10000
    x, y = next(iter(test))
    x = x.numpy()
    assert x.shape == (1000, 28, 28, 1) and 0.0 <= x.min() < x.max() <= 1.0
    assert set(np.unique(y.numpy())) <= set(range(10)) and len(np.unique(y.numpy())) == 10
    assert y.numpy()[0] == 9  # the first test image of Fashion-MNIST is an ankle boot


def _cifar_record(label, value):
    pixels = np.zeros((3, 32, 32), np.uint8)
    pixels[0], pixels[1], pixels[2] = value, value + 1, value + 2  # R, G, B planes
    pixels[0, 0, 1] = 200
    return label, pixels.reshape(-1)


def test_local_cifar10_pickle_and_cifar100_binary(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        recs = [_cifar_record(i % 10, 10 * i), _cifar_record((i + 1) % 10, 10 * i + 5)]
        batch = {b"labels": [r[0] for r in recs], b"data": np.stack([r[1] for r in recs])}
        with open(folder / fname, "wb") as f:
            pickle.dump(batch, f)
    x, y = collect(data.load("cifar10", "train", batch_size=4, shuffle=False))
    assert x.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(y, [0, 1, 1, 2, 2, 3, 3, 4, 4, 5])
    np.testing.assert_allclose(x[3, 5, 5] * 255, [15, 16, 17], atol=1e-4)  # batch 2, 2nd record
    np.testing.assert_allclose(x[0, 0, 1] * 255, [200, 1, 2], atol=1e-4)  # HWC layout
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    folder.mkdir(parents=True)
    for fname, fine in (("train.bin", [99, 42, 7]), ("test.bin", [5])):
        rows = [np.concatenate([[f % 20, f], _cifar_record(f, 3)[1]]) for f in fine]
        np.stack(rows).astype(np.uint8).tofile(folder / fname)
    x, y = collect(data.load("cifar100", "train", shuffle=False))
    np.testing.assert_array_equal(y, [99, 42, 7])
    np.testing.assert_allclose(x[1, 9, 9] * 255, [3, 4, 5], atol=1e-4)


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_tfds_path_with_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=50):
        for augment in ("none", "standard"):
            x, y = collect(data.load(name, "train", batch_size=16, augment=augment))
            assert x.shape == (50, *shape) and x.dtype == np.float32 and y.dtype == np.int32
            assert 0.0 <= x.min() and x.max() <= 1.0 and 0 <= y.min() and y.max() < 10
        sizes = {s: len(collect(data.load(name, s, batch_size=7, validation_fraction=0.1))[1])
                 for s in ("train", "validation")}
        assert sizes == {"train": 45, "validation": 5}
        assert len(collect(data.load(name, "validation", batch_size=7))[1]) == 5  # default 0.1
        assert len(collect(data.load(name, "test", take=20))[1]) == 20
        x, _ = collect(data.load(name, "test", image_size=40, take=3))
        assert x.shape == (3, 40, 40, shape[2])


def test_imagenet_style_mock_random_resized_crop():
    with tfds.testing.mock_data(num_examples=4):
        for augment in ("none", "standard"):
            x, y = collect(data.load("imagenet2012", "train", batch_size=2, augment=augment,
                                     image_size=64))
            assert x.shape == (4, 64, 64, 3) and 0.0 <= x.min() and x.max() <= 1.0
            assert y.max() < 1000


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_validation_is_the_end_of_train(tmp_path, monkeypatch, pipeline):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    arrays = write_mnist_like(tmp_path / "mnist", n_train=20)
    _, y_train = collect(data.load("mnist", "train", validation_fraction=0.25, shuffle=False, pipeline=pipeline))
    x_val, _ = collect(data.load("mnist", "validation", validation_fraction=0.25, shuffle=False, pipeline=pipeline))
    assert len(y_train) == 15 and len(x_val) == 5
    np.testing.assert_allclose(x_val[..., 0], arrays["train"][0][15:] / 255.0, atol=1e-6)
    with pytest.raises(DataError, match="holds out no example of the 20"):
        data.load("mnist", "validation", validation_fraction=0.01, pipeline=pipeline)


def _is_shift(aug, orig, pad, allow_flip):
    candidates = [orig, orig[:, ::-1]] if allow_flip else [orig]
    for img in candidates:
        padded = np.pad(img, pad)
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if np.allclose(padded[dy:dy + img.shape[0], dx:dx + img.shape[1]], aug, atol=1e-6):
                    return True
    return False


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("name,flip", [("mnist", False), ("fashion_mnist", True)])
def test_standard_augmentation_is_pad_crop_and_flip(tmp_path, monkeypatch, name, flip, pipeline):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    arrays = write_mnist_like(tmp_path / name, n_train=8)
    x, y = collect(data.load(name, "train", augment="standard", shuffle=False, seed=3, pipeline=pipeline))
    originals = arrays["train"][0] / 255.0
    assert all(_is_shift(x[i, ..., 0], originals[i], 2, flip) for i in range(8))
    assert not np.allclose(x[..., 0], originals)  # something moved
    flipped = [not _is_shift(x[i, ..., 0], originals[i], 2, False) for i in range(8)]
    assert any(flipped) == flip
    x_test, _ = collect(data.load(name, "test", augment="standard", shuffle=False, pipeline=pipeline))
    np.testing.assert_allclose(x_test[..., 0], arrays["t10k"][0] / 255.0, atol=1e-6)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_same_seed_same_batches(tmp_path, monkeypatch, pipeline):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=32)

    def first(seed):
        ds = data.load("mnist", "train", batch_size=8, augment="standard", seed=seed, pipeline=pipeline)
        return [(np.asarray(x), np.asarray(y)) for x, y in ds.take(1)][0], ds

    (xa, ya), ds = first(0)
    (xb, yb), _ = first(0)
    (xc, yc), _ = first(1)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(xa, xc)
    if pipeline == "numpy":
        ds.on_epoch_end()  # what fit calls between epochs
    second_epoch = [np.asarray(x) for x, _ in ds.take(1)][0]
    assert not np.array_equal(xa, second_epoch)  # reshuffled and re-augmented each epoch


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_normalize_uses_channel_statistics(tmp_path, monkeypatch, pipeline):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    arrays = write_mnist_like(tmp_path / "mnist", n_train=4)
    x, _ = collect(data.load("mnist", "train", shuffle=False, normalize=True, pipeline=pipeline))
    np.testing.assert_allclose(x[..., 0], (arrays["train"][0] / 255.0 - 0.1307) / 0.3081,
                               atol=1e-5)


@pytest.mark.parametrize("name,needles", [
    ("fashion_mnist", ["$KPRUNE_DATA_DIR/fashion_mnist/", "train-images-idx3-ubyte[.gz]",
                       "dataset-fashion-mnist", "network access"]),
    ("cifar10", ["$KPRUNE_DATA_DIR/cifar10/", "cifar-10-batches-py/", "network access"]),
])
def test_offline_error_names_both_fixes(monkeypatch, name, needles):
    def fail(*args, **kwargs):
        raise tfds.core.download.DownloadError("Failed to get url https://x: no network")

    monkeypatch.setattr(tfds, "load", fail)
    with pytest.raises(DataError) as err:
        data.load(name, "train")
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_connection_error_is_caught_too(monkeypatch):
    def fail(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds, "load", fail)
    with pytest.raises(DataError, match="network access"):
        data.load("mnist", "test")


def test_unknown_names_and_bad_arguments():
    with pytest.raises(DataError, match="Known names: cifar10, cifar100, fashion_mnist"):
        data.info("no_such_dataset_xyz")
    with pytest.raises(DataError, match="not an image-classification dataset"):
        data.info("imdb_reviews")
    assert data.info("Fashion-MNIST") == data.KNOWN["fashion_mnist"]
    assert data.info("cifar100").num_classes == 100
    with pytest.raises(DataError, match="split='dev'"):
        data.load("mnist", "dev")
    with pytest.raises(DataError, match="augment='autoaugment'"):
        data.load("mnist", augment="autoaugment")
    with pytest.raises(DataError, match="validation_fraction=1.5"):
        data.load("mnist", "validation", validation_fraction=1.5)
    with pytest.raises(DataError, match="batch_size=0"):
        data.load("mnist", batch_size=0)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_calibration_batches_are_fixed(tmp_path, monkeypatch, pipeline):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=20)
    ds = data.load("mnist", "train", batch_size=4, pipeline=pipeline)
    batches = data.calibration_batches(ds, 3)
    assert len(batches) == 3 and batches[0][0].shape == (4, 28, 28, 1)
    assert isinstance(batches[0][0], np.ndarray)
    assert len(data.calibration_batches(ds, 100)) == 5
    with pytest.raises(DataError, match="n=0"):
        data.calibration_batches(ds, 0)


def test_manual_download_error_is_a_data_error(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("Manual directory /x/downloads/manual does not exist or is empty.")

    monkeypatch.setattr(tfds, "load", fail)
    with pytest.raises(DataError, match="place the archives tensorflow-datasets asks for"):
        data.load("imagenet2012", "test")


# -- the numpy pipeline (no TensorFlow) ---------------------------------------------------------

def test_numpy_pipeline_gives_the_tf_data_batches(tmp_path, monkeypatch):
    """Without shuffling and augmentation both pipelines give the same batches, in order."""
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "fashion_mnist", n_train=20, n_test=10)
    for split, kwargs in (("train", {"take": 18}), ("test", {}), ("validation", {"validation_fraction": 0.5})):
        tf_batches = [(np.asarray(x), np.asarray(y)) for x, y in
                      data.load("fashion_mnist", split, batch_size=4, shuffle=False, **kwargs)]
        np_batches = list(data.load("fashion_mnist", split, batch_size=4, shuffle=False, pipeline="numpy", **kwargs))
        assert len(tf_batches) == len(np_batches)
        for (xa, ya), (xb, yb) in zip(tf_batches, np_batches):
            assert xb.dtype == np.float32 and yb.dtype == np.int32
            np.testing.assert_allclose(xa, xb, atol=1e-6)
            np.testing.assert_array_equal(ya, yb)


def test_numpy_pipeline_shuffles_every_example_once_per_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=30)
    ds = data.load("mnist", "train", batch_size=8, seed=5, pipeline="numpy")
    first = np.concatenate([y for _, y in ds])
    ds.on_epoch_end()
    second = np.concatenate([y for _, y in ds])
    assert sorted(first) == sorted(second) == sorted(np.arange(30) % 10)
    assert len(ds) == 4 and not np.array_equal(first, second)


def test_auto_pipeline_is_numpy_without_tensorflow(tmp_path, monkeypatch):
    from kprune.data import pipeline
    from kprune.data.arrays import ArrayBatches
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=8)
    assert not isinstance(data.load("mnist", "train"), ArrayBatches)
    find_spec = pipeline.importlib.util.find_spec
    monkeypatch.setattr(pipeline.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else find_spec(name, *a))
    assert isinstance(data.load("mnist", "train"), ArrayBatches)


def test_numpy_pipeline_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=8)
    with pytest.raises(DataError, match=r"does not resize images: 'mnist' is 28x28.*image_size=32"):
        data.load("mnist", "train", image_size=32, pipeline="numpy")
    with pytest.raises(DataError, match=r"numpy pipeline .*reads local copies only.*\$KPRUNE_DATA_DIR/cifar10/"):
        data.load("cifar10", "train", pipeline="numpy")
    with pytest.raises(DataError, match=r"Unknown data pipeline. Received: pipeline='torch'. Allowed: auto, tf.data, numpy"):
        data.load("mnist", "train", pipeline="torch")


def test_fit_takes_the_numpy_batches(tmp_path, monkeypatch):
    import keras
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    write_mnist_like(tmp_path / "mnist", n_train=24)
    ds = data.load("mnist", "train", batch_size=8, augment="standard", pipeline="numpy")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    model.fit(ds, epochs=2, verbose=0, callbacks=[keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(ds.epoch))])
    assert len(model.history.history["loss"]) == 2
    # Keras calls on_epoch_end when each epoch's iterator starts and ends: a new order each epoch
    assert len(seen) == 2 and seen[1] == seen[0] + 1
