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

If both fail, :class:`~kprune.errors.DataError` says how to provide either. Without TensorFlow
installed (Keras on JAX or PyTorch), or with ``pipeline="numpy"``, ``load`` reads the local
copies with NumPy and returns :class:`~kprune.data.arrays.ArrayBatches` (a
``keras.utils.PyDataset`` with the same preprocessing and standard augmentation).

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
derived from ``seed``: the same seed gives the same batches.
"""


from kprune.data.catalog import KNOWN, NORMALIZATION, DatasetInfo, info
from kprune.data.local import ENV_VAR, read_idx
from kprune.data.pipeline import AUGMENTS, SPLITS, calibration_batches, load

__all__ = [
    "AUGMENTS", "ENV_VAR", "KNOWN", "NORMALIZATION", "SPLITS",
    "DatasetInfo", "calibration_batches", "info", "load", "read_idx",
]
