"""Image-classification datasets as batched ``tf.data`` pipelines, offline first.

``load(name, split)`` yields ``(image, label)`` batches: images ``float32`` scaled to
``[0, 1]`` (or standardized with the dataset's channel mean/std when ``normalize=True``),
labels ``int32``. Sources are tried in this order:

1. a local copy: MNIST / Fashion-MNIST IDX files (``*-images-idx3-ubyte[.gz]``,
   ``*-labels-idx1-ubyte[.gz]``) in ``$KPRUNE_DATA_DIR/<name>/``, or for Fashion-MNIST
   Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``);
   CIFAR-10/100 python-pickle or binary batches in ``$KPRUNE_DATA_DIR/cifar10/`` (or
   ``cifar100/``), either directly or inside the archives' folder
   (``cifar-10-batches-py``, ``cifar-10-batches-bin``, ``cifar-100-python``,
   ``cifar-100-binary``);
2. tensorflow-datasets (``tfds.load(..., as_supervised=True)``), which downloads into
   ``data_dir`` (default ``~/tensorflow_datasets``) when the network is reachable.

If both fail, :class:`~kprune.errors.DataError` says how to provide either.

Splits: ``"train"``, ``"test"`` (ImageNet's labelled ``validation`` split stands in for
its test split) and ``"validation"``, carved from the *end* of the training split: the
last ``floor(n_train * validation_fraction)`` examples (``validation_fraction`` defaults
to 0.1 for ``split="validation"``). ``split="train"`` excludes them only when
``validation_fraction`` is given, so ``load(n, "train", validation_fraction=0.1)`` and
``load(n, "validation")`` are disjoint and together make the whole training split.

Standard augmentation (train split only; ignored for the others): 32x32 images get a
random crop after 4-pixel zero padding plus a horizontal flip; 28x28 images a random
crop after 2-pixel padding, with the flip only for Fashion-MNIST (a mirrored shirt is
still a shirt; a mirrored digit is not a digit, so MNIST, EMNIST, KMNIST and SVHN are not
flipped); larger or variable-size images a random resized crop (scale 0.08-1, aspect
3/4-4/3) plus flip. Without augmentation, large images are resized (shorter side to
``image_size / 0.875``) and center-cropped. All randomness (shuffle and augmentation) is
stateless and derived from ``seed``: the same seed gives the same batches.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np

from kprune.errors import DataError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "KPRUNE_DATA_DIR"
AUGMENTS = ("none", "standard")
SPLITS = ("train", "test", "validation")
DEFAULT_VALIDATION_FRACTION = 0.1
_NO_FLIP = frozenset({"mnist", "emnist", "kmnist", "svhn_cropped"})


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    ``input_shape`` is the shape of one image as :func:`load` yields it by default
    (variable-size datasets such as ImageNet are yielded at 224x224). Example counts are
    ``None`` when tensorflow-datasets has not prepared the dataset yet.
    """

    name: str
    input_shape: tuple
    num_classes: int
    train_examples: int | None
    test_examples: int | None


KNOWN = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 60000, 10000),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10, 60000, 10000),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, 50000, 10000),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, 50000, 10000),
    "imagenet2012": DatasetInfo("imagenet2012", (224, 224, 3), 1000, 1281167, 50000),
}
_TFDS_TEST_SPLIT = {"imagenet2012": "validation"}
# Channel mean and std of the training images scaled to [0, 1] (Fashion-MNIST measured
# on the Debian copy: 0.2860 / 0.3530).
_NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_LAYOUTS = {  # name -> [(subfolder, {split: files}, format)]
    "cifar10": [
        ("cifar-10-batches-py",
         {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}, "pickle"),
        ("cifar-10-batches-bin",
         {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
         "bin"),
    ],
    "cifar100": [
        ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "pickle"),
        ("cifar-100-binary", {"train": ["train.bin"], "test": ["test.bin"]}, "bin"),
    ],
}


def _canonical(name) -> str:
    if not isinstance(name, str) or not name:
        raise DataError(f"Expected a dataset name (a non-empty string). Received: name={name!r}")
    return name.strip().lower().replace("-", "_")


def info(name: str, data_dir: str | None = None) -> DatasetInfo:
    """Returns the shape, class count and split sizes of a dataset.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"mnist"``, ``"fashion_mnist"``,
            ``"imagenet2012"`` (known offline) or any tensorflow-datasets
            image-classification name (read from the tfds builder; needs no download).
        data_dir: tensorflow-datasets data directory (default ``None``: tfds' default).

    Returns:
        A :class:`DatasetInfo`.

    Example:
        >>> info("cifar10").input_shape
        (32, 32, 3)
    """
    name = _canonical(name)
    if name in KNOWN:
        return KNOWN[name]
    import tensorflow_datasets as tfds

    try:
        tinfo = tfds.builder(name, data_dir=data_dir).info
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"Unknown dataset name. Received: name={name!r}. Known names: "
            f"{', '.join(sorted(KNOWN))}, or any tensorflow-datasets image-classification "
            "dataset (see https://www.tensorflow.org/datasets/catalog)."
        ) from None
    feats = tinfo.features
    image, label = (feats[k] if k in feats.keys() else None for k in ("image", "label"))
    if image is None or not hasattr(label, "num_classes") or len(image.shape) != 3:
        raise DataError(
            f"Dataset {name!r} is not an image-classification dataset: kprune needs an "
            f"'image' feature and a class 'label' feature. Received features: "
            f"{sorted(tinfo.features.keys())}."
        )
    shape = tuple(image.shape)
    if None in shape[:2]:
        shape = (224, 224, shape[2])
    splits = tinfo.splits
    counts = [splits[s].num_examples if s in splits else None for s in ("train", "test")]
    return DatasetInfo(name, shape, int(label.num_classes), counts[0], counts[1])


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), plain or gzip-compressed (detected by content).

    Args:
        path: file path.

    Returns:
        A read-only numpy array with the file's dtype and shape (e.g. ``(60000, 28, 28)``
        uint8 for images, ``(60000,)`` for labels).

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
        (10000,)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r}).")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[raw[2]])
    expected = 4 + 4 * ndim + dtype.itemsize * math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, expected {expected}.")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _local_dirs(name: str) -> list[Path]:
    dirs = []
    root = os.environ.get(ENV_VAR)
    if root:
        dirs += [Path(root) / name, Path(root) / name.replace("_", "-")]
    if name == "fashion_mnist":
        dirs.append(Path(DEBIAN_FASHION_MNIST))
    return dirs


def _expected_files(name: str) -> str:
    if name in ("mnist", "fashion_mnist"):
        return ", ".join(f + "[.gz]" for pair in _IDX_FILES.values() for f in pair)
    if name in _CIFAR_LAYOUTS:
        return " or ".join(f"{sub}/ ({', '.join(sum(files.values(), []))})"
                           for sub, files, _ in _CIFAR_LAYOUTS[name])
    return ""


@functools.lru_cache(maxsize=8)
def _read_cached(kind: str, paths: tuple, num_label_bytes: int = 1):
    if kind == "idx":
        return read_idx(paths[0]), read_idx(paths[1])
    images, labels = [], []
    for p in paths:
        if kind == "pickle":
            with open(p, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], np.uint8)
            lab = batch.get(b"labels", batch.get(b"fine_labels"))
        else:  # CIFAR binary: label byte(s) then 3072 pixel bytes per record
            rec = np.fromfile(p, np.uint8).reshape(-1, num_label_bytes + 3072)
            data, lab = rec[:, num_label_bytes:], rec[:, num_label_bytes - 1]
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(lab, np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _local_arrays(name: str, split: str):
    """(images NHWC uint8, labels) of a local copy of ``split`` ("train"/"test"), or None."""
    for folder in _local_dirs(name):
        if not folder.is_dir():
            continue
        if name in ("mnist", "fashion_mnist"):
            found = [_find(folder, base) for base in _IDX_FILES[split]]
            if all(found):
                images, labels = _read_cached("idx", tuple(str(p) for p in found))
                images = images[..., None]
                break
        elif name in _CIFAR_LAYOUTS:
            for sub, files, fmt in _CIFAR_LAYOUTS[name]:
                base = folder / sub if (folder / sub).is_dir() else folder
                paths = [base / f for f in files[split]]
                if all(p.is_file() for p in paths):
                    break
            else:
                continue
            images, labels = _read_cached(fmt, tuple(str(p) for p in paths),
                                          2 if name == "cifar100" else 1)
            break
    else:
        return None
    n_classes = KNOWN[name].num_classes
    if len(images) != len(labels) or labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(
            f"The local copy of {name!r} in {folder} is inconsistent: {len(images)} images, "
            f"{len(labels)} labels in [{labels.min()}, {labels.max()}] (expected labels in "
            f"[0, {n_classes - 1}]). Replace the files ({_expected_files(name)})."
        )
    return images, labels


def _fix_message(name: str, data_dir, cause: BaseException) -> str:
    ways = []
    if name in ("mnist", "fashion_mnist") or name in _CIFAR_LAYOUTS:
        ways.append(f"put a local copy in ${ENV_VAR}/{name}/ (expected files: "
                    f"{_expected_files(name)})")
    if name == "fashion_mnist":
        ways.append("install Debian's dataset-fashion-mnist (`apt-get install "
                    f"dataset-fashion-mnist`, files in {DEBIAN_FASHION_MNIST})")
    where = data_dir or "~/tensorflow_datasets"
    ways.append(f"run once with network access so tensorflow-datasets can download it into "
                f"{where}")
    if isinstance(cause, AssertionError):
        ways[-1] = f"place the archives tensorflow-datasets asks for ({cause}) and rerun"
    if isinstance(cause, ImportError):
        ways.append(f"install the missing module ({cause}; e.g. `pip install importlib_resources`)")
    return (f"Cannot load dataset {name!r}: no local copy was found and tensorflow-datasets "
            f"failed ({type(cause).__name__}: {cause}). To fix it, " + "; or ".join(ways) + ".")


def _tfds_split(name: str, split: str, data_dir):
    """The tfds dataset of ``split`` ("train"/"test") as (uint8 image, int64 label)."""
    import tensorflow_datasets as tfds

    candidates = [split] if split == "train" else [_TFDS_TEST_SPLIT.get(name, "test")]
    if split == "test" and name not in KNOWN:
        candidates.append("validation")
    for i, tsplit in enumerate(candidates):
        try:
            return tfds.load(name, split=tsplit, as_supervised=True, data_dir=data_dir)
        except (tfds.core.download.DownloadError, OSError, ImportError) as e:
            raise DataError(_fix_message(name, data_dir, e)) from e
        except AssertionError as e:  # manual-download datasets (ImageNet) without archives
            if "Manual directory" not in str(e):
                raise
            raise DataError(_fix_message(name, data_dir, e)) from e
        except ValueError as e:
            if "Unknown split" not in str(e) or i == len(candidates) - 1:
                raise DataError(f"Dataset {name!r} has no split to use as {split!r}: {e}") from e
    raise AssertionError("unreachable")


def _augment_and_scale(image, rng, *, small, out_hw, pad, flip, augment):
    """One example: uint8 HWC -> float32 [0, 1] of size ``out_hw``, augmented if asked."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(rng, 2)
    image = tf.image.convert_image_dtype(image, tf.float32)
    static = tuple(image.shape[:2])
    if small:  # pad-and-crop at the native size, then resize if asked
        if augment:
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(padded, tf.shape(image), seeds[0])
        if static != out_hw:
            image = tf.image.resize(image, out_hw)
    elif augment:  # random resized crop
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seeds[0],
            min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
        image = tf.image.resize(tf.slice(image, begin, extent), out_hw)
    elif static != out_hw:  # shorter side to size/0.875, then center crop
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = (max(out_hw) / 0.875) / tf.reduce_min(shape)
        image = tf.image.resize(image, tf.cast(tf.math.ceil(shape * scale), tf.int32))
        image = tf.image.resize_with_crop_or_pad(image, *out_hw)
    if augment and flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image.set_shape((*out_hw, image.shape[-1]))
    return tf.clip_by_value(image, 0.0, 1.0)


def load(name: str, split: str = "train", batch_size: int = 128, augment: str = "none",
         shuffle: bool = True, seed: int = 0, data_dir: str | None = None,
         image_size: int | None = None, take: int | None = None,
         validation_fraction: float | None = None, normalize: bool = False):
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
            held out for ``split="train"``).
        normalize: subtract the dataset's channel mean and divide by its std (known for
            the five built-in names) instead of leaving images in ``[0, 1]`` (default
            ``False``).

    Returns:
        A ``tf.data.Dataset`` of ``(images float32 [B, H, W, C], labels int32 [B])``.

    Example:
        >>> ds = load("fashion_mnist", "test", batch_size=32, take=64)
        >>> [tuple(x.shape) for x, _ in ds]
        [(32, 28, 28, 1), (32, 28, 28, 1)]
    """
    import tensorflow as tf

    name = _canonical(name)
    _check_args(name, split, batch_size, augment, take, validation_fraction, image_size,
                normalize)
    meta = info(name, data_dir)
    source_split = "test" if split == "test" else "train"
    arrays = _local_arrays(name, source_split) if name in KNOWN else None
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
        held = int(n * (validation_fraction if validation_fraction is not None
                        else DEFAULT_VALIDATION_FRACTION))
        ds, n = (ds.skip(n - held), held) if split == "validation" else (ds.take(n - held), n - held)
    if take is not None:
        ds, n = ds.take(take), (min(n, take) if n and n > 0 else take)
    if shuffle:
        ds = ds.shuffle(min(n, 10000) if n and n > 0 else 10000, seed=seed,
                        reshuffle_each_iteration=True)
    src = ds.element_spec[0].shape
    small = src[0] is not None and src[1] is not None and max(src[0], src[1]) <= 64
    out_hw = (image_size, image_size) if image_size else tuple(meta.input_shape[:2])
    fn = functools.partial(_augment_and_scale, small=small, out_hw=out_hw,
                           pad=2 if small and max(src[0], src[1]) <= 28 else 4,
                           flip=name not in _NO_FLIP,
                           augment=augment == "standard" and split == "train")
    mean_std = _NORMALIZATION.get(name) if normalize else None

    def _map(example, r):
        image = fn(example[0], tf.stack([r, tf.constant(seed, tf.int64)]))
        if mean_std is not None:
            image = (image - mean_std[0]) / mean_std[1]
        return image, tf.cast(example[1], tf.int32)

    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, rng)).map(_map, num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _check_args(name, split, batch_size, augment, take, validation_fraction, image_size,
                normalize):
    if split not in SPLITS:
        raise DataError(f"Unknown split. Received: split={split!r}. Allowed: {', '.join(SPLITS)}.")
    if augment not in AUGMENTS:
        raise DataError(
            f"Unknown augmentation. Received: augment={augment!r}. Allowed: {', '.join(AUGMENTS)}.")
    for key, value in (("batch_size", batch_size), ("take", take), ("image_size", image_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise DataError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
    if validation_fraction is not None and not 0.0 < validation_fraction < 1.0:
        raise DataError("`validation_fraction` must be in (0, 1). Received: "
                        f"validation_fraction={validation_fraction!r}")
    if normalize and name not in _NORMALIZATION:
        raise DataError(f"`normalize=True` needs known channel statistics, available for "
                        f"{', '.join(sorted(_NORMALIZATION))}. Received: name={name!r}. "
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
        raise DataError("calibration_batches received an empty dataset; it needs at least one batch.")
    return out
