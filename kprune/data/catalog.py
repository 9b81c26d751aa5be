"""The dataset catalog: shapes, class counts and split sizes, known offline for the
built-in names and read from tensorflow-datasets' builder for any other name."""

from __future__ import annotations

import dataclasses

from kprune.errors import DataError


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
TFDS_TEST_SPLIT = {"imagenet2012": "validation"}
# Channel mean and std of the training images scaled to [0, 1] (Fashion-MNIST measured
# on the Debian copy: 0.2860 / 0.3530).
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
def canonical(name) -> str:
    """Returns the catalog spelling of a dataset name (lower case, ``-`` -> ``_``)."""
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
    name = canonical(name)
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
