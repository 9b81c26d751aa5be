"""MirroredStrategy on 2 logical CPU devices vs one device: same masks, same accuracy.

Runs the same pruning (``taylor_fo`` filter pruning under an AGP schedule, so gradient
statistics are collected at each mask update) twice in one process, from the same initial
weights on the same batches: once without a strategy, once under
``tf.distribute.MirroredStrategy`` over two logical CPU devices. Reports whether the final
masks are identical, whether every replica holds the same mask and weight values, that
every mask update ran in cross-replica context, the largest weight difference and the test
accuracy of both runs.

Logical devices must be configured before TensorFlow initializes, so run this as its own
process:

    python benchmarks/mirrored.py                   # Fashion-MNIST, 2 epochs of 4096 images
    python benchmarks/mirrored.py --synthetic --quick --json out.json   # the CI test's run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def _setup_devices(n: int):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def build_model(input_shape, classes):
    import keras
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    return keras.Model(inp, keras.layers.Dense(classes, name="logits")(x))


def recipe(end_step: int):
    return {"prune": {"criterion": "taylor_fo", "granularity": "filter", "round_to": 1, "statistics_batches": 2,
                      "schedule": {"name": "agp", "start_step": 0, "end_step": end_step,
                                   "frequency": max(1, end_step // 4)},
                      "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5},
                                      {"op_names": ["fc1"], "sparsity": 0.5}]}}


def load_data(synthetic: bool, n_train: int, n_test: int):
    import numpy as np
    if synthetic:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n_train + n_test, 12, 12, 1)).astype("float32")
        y = (x[:, :6].mean(axis=(1, 2, 3)) > 0).astype("int32") + (x[:, :, :6].mean(axis=(1, 2, 3)) > 0)
        return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), 3
    from kprune.data.local import local_arrays
    got = local_arrays("fashion_mnist", "train"), local_arrays("fashion_mnist", "test")
    if got[0] is None or got[1] is None:
        sys.exit("Fashion-MNIST IDX files not found (/usr/share/datasets/fashion-mnist or KPRUNE_DATA_DIR)")
    (xt, yt), (xs, ys) = got
    f = lambda a: (a.astype("float32") / 255.0)  # noqa: E731
    return (f(xt[:n_train]), yt[:n_train].astype("int32")), (f(xs[:n_test]), ys[:n_test].astype("int32")), 10


def train_once(strategy, init, shape, classes, train, test, batch, epochs, lr):
    """Wraps, trains and prunes under ``strategy`` (None: default device); returns measurements."""
    import keras
    import numpy as np
    import tensorflow as tf

    import kprune
    from kprune.wrappers.prune_wrapper import PruneWrapper

    contexts = []
    original = PruneWrapper.set_mask

    def probed(self, *a, **k):  # records the context every mask assignment runs in
        contexts.append(bool(tf.distribute.in_cross_replica_context()) and tf.distribute.has_strategy())
        return original(self, *a, **k)

    PruneWrapper.set_mask = probed
    try:
        steps = int(np.ceil(len(train[0]) / batch))
        ds = tf.data.Dataset.from_tensor_slices(train).batch(batch)
        scope = strategy.scope() if strategy is not None else _null()
        with scope:
            base = build_model(shape, classes)
            base.set_weights(init)
            model = kprune.wrap(base, recipe(end_step=steps * epochs // 2))
            model.compile(keras.optimizers.SGD(lr, momentum=0.9),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        t0 = time.time()
        hist = model.fit(ds, epochs=epochs, verbose=0, callbacks=[kprune.PruningCallback(data=ds)])
        seconds = time.time() - t0
    finally:
        PruneWrapper.set_mask = original
    pred = np.argmax(np.asarray(model.predict(test[0], batch_size=256, verbose=0)), axis=-1)
    masks, replicas_equal = {}, True
    for w in kprune.wrappers.find_wrappers(model):
        for attr, m in w.masks.items():
            masks[f"{w.name}/{attr}"] = np.asarray(m.numpy())
        for var in list(w.masks.values()) + list(w.weights_by_attr().values()):
            parts = getattr(var.value, "values", None)
            if parts is not None:
                first = np.asarray(parts[0])
                replicas_equal &= all(np.array_equal(first, np.asarray(p)) for p in parts[1:])
    weights = [np.asarray(v.numpy()) for v in model.weights]
    return {"masks": masks, "weights": weights, "replicas_equal": replicas_equal,
            "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
            "updates": len(contexts), "all_cross_replica": bool(contexts) and all(contexts),
            "accuracy": float(np.mean(pred == test[1])), "loss": [float(v) for v in hist.history["loss"]],
            "sparsity": kprune.sparsity(model)["total"], "seconds": round(seconds, 2)}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic", action="store_true", help="random data (for the CI test only)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    ap.add_argument("--json", default=None, help="write the summary here")
    args = ap.parse_args(argv)
    devices = _setup_devices(2)
    import keras
    import numpy as np
    import tensorflow as tf

    n_train, n_test, batch, epochs = (128, 128, 32, 2) if args.quick else (4096, 2000, 64, 2)
    train, test, classes = load_data(args.synthetic, n_train, n_test)
    shape = train[0].shape[1:]
    keras.utils.set_random_seed(0)
    init = build_model(shape, classes).get_weights()
    one = train_once(None, init, shape, classes, train, test, batch, epochs, 0.05)
    two = train_once(tf.distribute.MirroredStrategy(devices[:2]), init, shape, classes, train, test, batch,
                     epochs, 0.05)
    same_masks = sorted(one["masks"]) == sorted(two["masks"]) and all(
        np.array_equal(one["masks"][k], two["masks"][k]) for k in one["masks"])
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one["weights"], two["weights"]))
    summary = {"data": "synthetic" if args.synthetic else "fashion_mnist", "train_examples": n_train,
               "test_examples": n_test, "global_batch": batch, "epochs": epochs,
               "same_masks": same_masks, "max_weight_diff": max_diff,
               "replicas_equal": two["replicas_equal"], "mask_assignments": [one["updates"], two["updates"]],
               "updates_cross_replica": two["all_cross_replica"],
               "accuracy": {"one_device": one["accuracy"], "mirrored_2": two["accuracy"]},
               "loss": {"one_device": one["loss"], "mirrored_2": two["loss"]},
               "sparsity": {"one_device": one["sparsity"], "mirrored_2": two["sparsity"]},
               "seconds": {"one_device": one["seconds"], "mirrored_2": two["seconds"]},
               "tensorflow": tf.__version__, "keras": keras.__version__}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return summary


if __name__ == "__main__":
    main()
