"""``ArrayBatches``: the batches of a local dataset copy with NumPy only (no TensorFlow).

:func:`kprune.data.load` returns one when TensorFlow is not installed (Keras on JAX or PyTorch)
or when asked with ``pipeline="numpy"``. It is a ``keras.utils.PyDataset``, so ``model.fit``
takes it on every backend, and a plain sequence of ``(x, y)`` numpy batches otherwise
(``for x, y in batches``, ``len(batches)``).

It reproduces ``load``'s preprocessing for the images a local copy holds (28x28 and 32x32):
uint8 → float32 in ``[0, 1]`` (or standardized), labels int32, and the standard augmentation —
a random crop after zero padding (2 pixels for 28x28 and smaller, 4 otherwise) and a random
horizontal flip unless the dataset's labels are not mirror-invariant. What differs from the
``tf.data`` pipeline, by design: the shuffle is a full permutation per epoch (tf.data's is a
10,000-example buffer) and the random numbers come from NumPy, so the same seed gives the
same batches within this path but not the same as ``tf.data``'s. Resizing (``image_size``
other than the native size) needs TensorFlow.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled, optionally augmented ``(x float32 [B, H, W, C], y int32 [B])`` batches.

    Args:
        images: uint8 ``[N, H, W, C]``.
        labels: integer ``[N]``.
        batch_size: examples per batch; the last batch may be smaller.
        shuffle: a new permutation each epoch (default True).
        seed: seed of the shuffle and the augmentation.
        pad: zero padding of the random crop, in pixels; 0 turns the crop off.
        flip: random horizontal flips.
        mean_std: ``(mean, std)`` per channel to standardize with, or None (images in [0, 1]).

    Example:
        >>> b = ArrayBatches(np.zeros((10, 28, 28, 1), np.uint8), np.arange(10), 4, shuffle=False)
        >>> len(b), b[2][0].shape
        (3, (2, 28, 28, 1))
    """

    def __init__(self, images, labels, batch_size: int, shuffle: bool = True, seed: int = 0, pad: int = 0,
                 flip: bool = False, mean_std=None):
        super().__init__()
        self.images, self.labels = images, np.asarray(labels).astype(np.int32)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.pad, self.flip, self.mean_std = int(pad), bool(flip), mean_std
        self.epoch = 0
        self._order = None

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's example order."""
        if self._order is None:
            n = len(self.labels)
            self._order = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle
                           else np.arange(n))
        return self._order

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        idx = self.order()[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.images[idx].astype(np.float32) / 255.0
        if self.pad or self.flip:
            x = self._augment(x, np.random.default_rng([self.seed, self.epoch, i, 1]))
        if self.mean_std is not None:
            x = (x - np.asarray(self.mean_std[0], np.float32)) / np.asarray(self.mean_std[1], np.float32)
        return x, self.labels[idx]

    def _augment(self, x, rng):
        n, h, w, _ = x.shape
        if self.pad:
            p = self.pad
            padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
            dy, dx = rng.integers(0, 2 * p + 1, n), rng.integers(0, 2 * p + 1, n)
            x = np.stack([padded[k, dy[k]:dy[k] + h, dx[k]:dx[k] + w] for k in range(n)])
        if self.flip:
            flipped = rng.random(n) < 0.5
            x[flipped] = x[flipped, :, ::-1]
        return x

    def on_epoch_end(self):
        """Called by ``fit`` at epoch boundaries: what follows is a new shuffle and new crops."""
        self.epoch += 1
        self._order = None

    def take(self, n: int) -> list:
        """The first ``n`` batches of this epoch, as a list (``tf.data.Dataset.take``'s role)."""
        return [self[i] for i in range(min(int(n), len(self)))]
