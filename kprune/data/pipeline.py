"""``load``: a dataset split as a batched, prefetched ``tf.data.Dataset`` (or, without
TensorFlow, :class:`~kprune.data.arrays.ArrayBatches` of a local copy), offline first."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from kprune.data import local, network
from kprune.data.augment import NO_FLIP, preprocess_image
from kprune.data.catalog import KNOWN, NORMALIZATION, TFDS_TEST_SPLIT, canonical, info
from kprune.errors import DataError

AUGMENTS = ("none", "standard")
PIPELINES = ("auto", "tf.data", "numpy")
SPLITS = ("train", "test", "validation")
DEFAULT_VALIDATION_FRACTION = 0.1


class _Offline(OSError):
    """No network, and tensorflow-datasets has not prepared the dataset before."""


def _fix_message(name: str, data_dir, cause: BaseException) -> str:
    """The DataError text when no local copy exists and tensorflow-datasets failed."""
    ways = []
    if name in ("mnist", "fashion_mnist") or name in local.CIFAR_LAYOUTS:
        ways.append(f"put a local copy in ${local.ENV_VAR}/{name}/ (expected files: "
                    f"{local.expected_files(name)})")
    if name == "fashion_mnist":
        ways.append("install Debian's dataset-fashion-mnist (`apt-get install "
                    f"dataset-fashion-mnist`, files in {local.DEBIAN_FASHION_MNIST})")
    where = data_dir or "~/tensorflow_datasets"
    ways.append(f"run once with network access so tensorflow-datasets can download it into "
                f"{where}")
    if isinstance(cause, _Offline):
        return (f"Cannot load dataset {name!r}: no local copy was found and {cause}. To fix it, "
                + "; or ".join(ways) + ".")
    if isinstance(cause, AssertionError):
        ways[-1] = f"place the archives tensorflow-datasets asks for ({cause}) and rerun"
    if isinstance(cause, ImportError):
        ways.append(f"install the missing module ({cause}; e.g. `pip install importlib_resources`)")
    return (f"Cannot load dataset {name!r}: no local copy was found and tensorflow-datasets "
            f"failed ({type(cause).__name__}: {cause}). To fix it, " + "; or ".join(ways) + ".")


def _tfds_split(name: str, split: str, data_dir):
    """The tfds dataset of ``split`` ("train"/"test") as (uint8 image, int64 label)."""
    import tensorflow_datasets as tfds

    candidates = [split] if split == "train" else [TFDS_TEST_SPLIT.get(name, "test")]
    if split == "test" and name not in KNOWN:
        candidates.append("validation")
    # without a network tfds would retry every URL for minutes: read only what it already
    # prepared, and fail at once otherwise (see kprune.data.network)
    online = network.reachable()
    for i, tsplit in enumerate(candidates):
        try:
            return tfds.load(name, split=tsplit, as_supervised=True, data_dir=data_dir, download=online)
        except (tfds.core.download.DownloadError, OSError, ImportError) as e:
            raise DataError(_fix_message(name, data_dir, e)) from e
        except AssertionError as e:  # manual-download datasets (ImageNet) without archives
            if not online and "could not find data" in str(e):
                raise DataError(_fix_message(name, data_dir, _Offline(
                    f"the network is unreachable ({network.last_error()}) and {name!r} is not in "
                    f"{data_dir or '~/tensorflow_datasets'} yet"))) from None
            if "Manual directory" not in str(e):
                raise
            raise DataError(_fix_message(name, data_dir, e)) from e
        except ValueError as e:
            if "Unknown split" in str(e) and i < len(candidates) - 1:
                continue  # no "test" split: fall back to "validation"
            raise DataError(f"tensorflow-datasets cannot provide split {tsplit!r} of {name!r} "
                            f"as (image, label) pairs: {e}") from e
    raise AssertionError("unreachable")


def load(name: str, split: str = "train", batch_size: int = 128, augment: str = "none",
         shuffle: bool = True, seed: int = 0, data_dir: str | None = None,
         image_size: int | None = None, take: int | None = None,
         validation_fraction: float | None = None, normalize: bool = False, pipeline: str = "auto"):
    """Loads a dataset split as a batched, prefetched ``tf.data.Dataset``.

    Args:
        name: dataset name (see :func:`info`).
        split: ``"train"``, ``"test"`` or ``"validation"`` (default ``"train"``).
        batch_size: examples per batch (default 128); the last batch may be smaller.
        augment: ``"none"`` (default) or ``"standard"`` (see the module docstring); applied
            to the train split only.
        shuffle: shuffle the examples, reshuffled each epoch (default ``True``; pass
            ``False`` for evaluation in file order).
        seed: seed of the shuffle and the augmentation (default 0).
        data_dir: tensorflow-datasets data directory (default ``None``).
        image_size: output height and width (default ``None``: the native size for
            fixed-size datasets, 224 for variable-size ones such as ImageNet).
        take: use only the first ``take`` examples of the split (default ``None``: all).
        validation_fraction: fraction of the training split held out at its end as the
            validation split (default ``None``: 0.1 for ``split="validation"``, nothing
            held out for ``split="train"``); ignored for ``split="test"``.
        normalize: subtract the dataset's channel mean and divide by its std (known for
            the five built-in names) instead of leaving images in ``[0, 1]`` (default
            ``False``).
        pipeline: ``"tf.data"``, ``"numpy"`` (a local copy read and batched with NumPy, no
            TensorFlow: :class:`~kprune.data.arrays.ArrayBatches`) or ``"auto"`` (default:
            ``tf.data`` when TensorFlow is installed, else ``numpy``).

    Returns:
        A ``tf.data.Dataset`` of ``(images float32 [B, H, W, C], labels int32 [B])``, or an
        :class:`~kprune.data.arrays.ArrayBatches` of the same batches with the numpy pipeline.

    Example:
        >>> ds = load("fashion_mnist", "test", batch_size=32, take=64)
        >>> [tuple(x.shape) for x, _ in ds]
        [(32, 28, 28, 1), (32, 28, 28, 1)]
    """
    name = canonical(name)
    _check_args(name, split, batch_size, augment, take, validation_fraction, image_size,
                normalize, pipeline)
    if pipeline == "numpy" or (pipeline == "auto" and importlib.util.find_spec("tensorflow") is None):
        return _numpy_load(name, split, batch_size, augment, shuffle, seed, image_size, take,
                           validation_fraction, normalize, pipeline)
    import tensorflow as tf

    meta = info(name, data_dir)
    source_split = "test" if split == "test" else "train"
    arrays = local.local_arrays(name, source_split) if name in KNOWN else None
    if arrays is not None:
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        n = len(arrays[1])
    else:
        ds = _tfds_split(name, source_split, data_dir)
        n = int(ds.cardinality())
        if n < 0:
            n = meta.train_examples if source_split == "train" else meta.test_examples
    if split != "test" and (split == "validation" or validation_fraction is not None):
        if n is None or n < 0:
            raise DataError(f"Cannot carve a validation split from {name!r}: its size is unknown.")
        held = _held_out(name, n, validation_fraction)
        if split == "validation":
            ds, n = ds.skip(n - held), held
        else:
            ds, n = ds.take(n - held), n - held
    if take is not None:
        ds, n = ds.take(take), (min(n, take) if n and n > 0 else take)
    if shuffle:
        ds = ds.shuffle(min(n, 10000) if n and n > 0 else 10000, seed=seed,
                        reshuffle_each_iteration=True)
    src = ds.element_spec[0].shape
    small = src[0] is not None and src[1] is not None and max(src[0], src[1]) <= 64
    out_hw = (image_size, image_size) if image_size else tuple(meta.input_shape[:2])
    fn = functools.partial(preprocess_image, small=small, out_hw=out_hw,
                           pad=2 if small and max(src[0], src[1]) <= 28 else 4,
                           flip=name not in NO_FLIP,
                           augment=augment == "standard" and split == "train")
    mean_std = NORMALIZATION.get(name) if normalize else None

    def _map(example, r):
        image = fn(example[0], tf.stack([r, tf.constant(seed, tf.int64)]))
        if mean_std is not None:
            image = (image - mean_std[0]) / mean_std[1]
        return image, tf.cast(example[1], tf.int32)

    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rng)).map(_map, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _held_out(name: str, n: int, validation_fraction) -> int:
    """Examples held out at the end of the ``n`` training examples for the validation split."""
    fraction = validation_fraction or DEFAULT_VALIDATION_FRACTION
    held = int(n * fraction)
    if held == 0:
        raise DataError(f"`validation_fraction` holds out no example of the {n} training "
                        f"examples of {name!r}. Received: validation_fraction={fraction!r}. "
                        f"Use a fraction of at least {1 / n:.3g}.")
    return held


def _numpy_load(name, split, batch_size, augment, shuffle, seed, image_size, take, validation_fraction,
                normalize, pipeline):
    """``load`` without TensorFlow: a local copy as :class:`~kprune.data.arrays.ArrayBatches`."""
    from kprune.data.arrays import ArrayBatches

    why = "asked for with pipeline='numpy'" if pipeline == "numpy" else "TensorFlow is not installed"
    source_split = "test" if split == "test" else "train"
    arrays = local.local_arrays(name, source_split) if name in KNOWN else None
    if arrays is None:
        ways = (f"put a local copy in ${local.ENV_VAR}/{name}/ (expected files: {local.expected_files(name)})"
                if name in ("mnist", "fashion_mnist") or name in local.CIFAR_LAYOUTS else
                "install TensorFlow and tensorflow-datasets (the numpy pipeline reads only local copies of "
                f"{', '.join(sorted(set(local.CIFAR_LAYOUTS) | {'mnist', 'fashion_mnist'}))})")
        raise DataError(f"Cannot load dataset {name!r} with the numpy pipeline ({why}): it reads local copies "
                        f"only, and none was found. To fix it, {ways}.")
    images, labels = arrays
    hw = tuple(images.shape[1:3])
    if image_size is not None and (image_size, image_size) != hw:
        raise DataError(f"The numpy pipeline ({why}) does not resize images: {name!r} is {hw[0]}x{hw[1]}. "
                        f"Received: image_size={image_size!r}. Use image_size=None (or {hw[0]}), or the "
                        "tf.data pipeline (TensorFlow installed).")
    n = len(labels)
    if split != "test" and (split == "validation" or validation_fraction is not None):
        held = _held_out(name, n, validation_fraction)
        cut = slice(n - held, n) if split == "validation" else slice(0, n - held)
        images, labels = images[cut], labels[cut]
    if take is not None:
        images, labels = images[:take], labels[:take]
    standard = augment == "standard" and split == "train"
    return ArrayBatches(images, labels, batch_size, shuffle=shuffle, seed=seed,
                        pad=(2 if max(hw) <= 28 else 4) if standard else 0, flip=standard and name not in NO_FLIP,
                        mean_std=NORMALIZATION.get(name) if normalize else None)


def _check_args(name, split, batch_size, augment, take, validation_fraction, image_size,
                normalize, pipeline="auto"):
    if pipeline not in PIPELINES:
        raise DataError(f"Unknown data pipeline. Received: pipeline={pipeline!r}. Allowed: {', '.join(PIPELINES)}.")
    if split not in SPLITS:
        raise DataError(f"Unknown split. Received: split={split!r}. Allowed: {', '.join(SPLITS)}.")
    if augment not in AUGMENTS:
        raise DataError(
            f"Unknown augmentation. Received: augment={augment!r}. Allowed: {', '.join(AUGMENTS)}.")
    for key, value in (("batch_size", batch_size), ("take", take), ("image_size", image_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise DataError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
    fraction = validation_fraction
    if fraction is not None and (not isinstance(fraction, (int, float))
                                 or isinstance(fraction, bool) or not 0.0 < fraction < 1.0):
        raise DataError("`validation_fraction` must be in (0, 1). Received: "
                        f"validation_fraction={validation_fraction!r}")
    if normalize and name not in NORMALIZATION:
        raise DataError(f"`normalize=True` needs known channel statistics, available for "
                        f"{', '.join(sorted(NORMALIZATION))}. Received: name={name!r}. "
                        "Use normalize=False (images in [0, 1]) and normalize in the model.")


def calibration_batches(dataset, n: int) -> list:
    """Materializes the first ``n`` batches of a dataset, e.g. for activation statistics.

    Unlike ``dataset.take(n)``, the result is a fixed list, so repeated passes see the
    same examples even when the dataset reshuffles each epoch.

    Args:
        dataset: an iterable of ``(x, y)`` batches (a ``tf.data.Dataset`` from :func:`load`).
        n: number of batches (at least 1); fewer are returned if the dataset is shorter.

    Returns:
        A list of ``(x, y)`` numpy tuples.

    Example:
        >>> batches = calibration_batches(load("fashion_mnist", "train", batch_size=8), 2)
        >>> len(batches), batches[0][0].shape
        (2, (8, 28, 28, 1))
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DataError(f"`n` must be a positive integer. Received: n={n!r}")
    out = []
    for batch in dataset:
        if len(out) == n:
            break
        out.append(tuple(np.asarray(t) for t in batch))
    if not out:
        raise DataError("calibration_batches received an empty dataset; it needs at least "
                        "one batch.")
    return out
