"""Per-example preprocessing: scaling to [0, 1], resizing and standard augmentation.

Standard augmentation: images of at most 64x64 get a random crop after zero padding
(4 pixels; 2 for 28x28 and smaller) plus a horizontal flip unless the dataset's labels
are not mirror-invariant (digits and characters: MNIST, EMNIST, KMNIST, SVHN); larger or
variable-size images get a random resized crop (scale 0.08-1, aspect 3/4-4/3) plus flip.
Without augmentation, large images are resized (shorter side to ``size / 0.875``) and
center-cropped. All randomness is stateless, driven by a per-example seed pair.
"""

from __future__ import annotations

NO_FLIP = frozenset({"mnist", "emnist", "kmnist", "svhn_cropped"})


def preprocess_image(image, rng, *, small, out_hw, pad, flip, augment):
    """Turns one uint8 HWC image into a float32 image in [0, 1] of size ``out_hw``.

    Args:
        image: uint8 tensor ``(H, W, C)``; H and W may be unknown (variable-size data).
        rng: int64 seed pair ``(2,)`` of this example (stateless randomness).
        small: treat the image as small (pad-and-crop) rather than ImageNet-style.
        out_hw: output ``(height, width)``.
        pad: zero padding of the small-image random crop, in pixels.
        flip: allow the random horizontal flip.
        augment: apply the standard augmentation (else only scale/resize/center-crop).

    Returns:
        A float32 tensor ``(*out_hw, C)`` with values in [0, 1].

    Example:
        >>> x = preprocess_image(tf.zeros((28, 28, 1), tf.uint8), tf.constant([1, 2], tf.int64),
        ...                      small=True, out_hw=(28, 28), pad=2, flip=False, augment=True)
    """
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
