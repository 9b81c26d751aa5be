"""kprune next to Torch-Pruning: ResNet-20 on Fashion-MNIST, one-shot local filter pruning (issue 19).

Protocol, the same for both frameworks, each training its own model from its own seed
(nothing is copied between them):

1. ResNet-20 at ``--width`` (default 0.5: 8/16/32 channels, 68,642 trainable parameters at
   28x28x1): kprune's ``kprune.models.get("resnet20", ...)`` and its PyTorch mirror
   (``_torch_resnet.py``, written from the zoo's description; equal trainable parameter
   counts are asserted). Both are initialised with the scheme ``--init`` (default
   ``reference``, torchvision's: Kaiming normal fan-out convolutions).
2. Dense training on the first ``--train-images`` Fashion-MNIST training images for
   ``--epochs`` epochs: SGD momentum 0.9 (Nesterov), learning rate ``--lr`` decayed per step
   by cosine to 0, coupled L2 weight decay ``--weight-decay`` on every parameter, batch
   ``--batch-size``. kprune's side runs PyTorch's SGD update rule in a TensorFlow loop
   (``buf = m·buf + g + wd·w``; ``w -= lr·(g + wd·w + m·buf)``), so the optimisers match
   step for step (with ``KERAS_BACKEND=jax`` the same update is one jitted stateless JAX
   step; ``--merge`` refuses to pool runs of different backends); both frameworks see the
   same batch order (a NumPy permutation per epoch).
3. For each ``--targets`` fraction of MACs removed, a uniform per-layer pruning ratio r is
   bisected with Torch-Pruning (``BasePruner`` local pruning, ``pruning_ratio=r``, the
   classifier ignored) until the MACs removed are closest to the target; Torch-Pruning keeps
   ``int(C·(1−r))`` channels of each coupled group. Its per-layer channel counts are then
   given to kprune as per-layer sparsities (``config_list`` ``op_names`` entries with
   ``sparsity = 1 − keep/C``), so **both frameworks prune to the same architecture**, and the
   per-layer channel counts of kprune's compacted model are asserted equal to Torch-Pruning's.
4. Per criterion (``--criteria``: l1, l2, fpgm, taylor, random), a copy of each dense model
   is pruned once: Torch-Pruning ``MagnitudeImportance(p=1|2)``, ``FPGMImportance``,
   ``TaylorImportance`` (gradients summed over ``--calib-batches`` batches in training mode,
   BatchNorm statistics frozen), ``RandomImportance``, each with its default group
   reduction; kprune ``wrap`` + ``Pruner.prune_now`` + ``compact`` with ``l1``, ``l2``,
   ``fpgm``, ``taylor_fo`` (the same batches), ``random``. Accuracy on the ``--test-images``
   test images right after pruning, after BatchNorm recalibration (reset, cumulative average
   over ``--bn-batches`` training batches in training mode: ``kprune.recalibrate_bn`` and its
   PyTorch twin), and after ``--finetune-epochs`` of fine-tuning (SGD momentum 0.9, learning
   rate ``--finetune-lr`` cosine to 0, no weight decay, same batch order for both).

``--zoo-variant`` changes kprune's model only, to measure the two zoo fixes of issue 19
separately: ``fixed`` (default, the zoo as it is), ``old`` (Keras ``same`` padding of
strided convolutions and the pre-issue-19 Keras initialisers), ``pad`` (symmetric padding,
old initialisers), ``init`` (old padding, ``--init`` initialisation). ``--frameworks
kprune`` skips Torch-Pruning's training (its pruner still fixes the channel counts).

Seconds per training and fine-tuning epoch are recorded for each framework. Results go to
``--json`` (written atomically after every row); a table of mean ± std over seeds per
(target, criterion), and the kprune − Torch-Pruning gap, is printed at the end.

Usage::

    pip install -e ".[torch]"   # torch and torch-pruning
    python benchmarks/tp_compare.py --seeds 0 1 2                 # the full study
    python benchmarks/tp_compare.py --seeds 0 --targets 0.5 --train-images 2000 \\
        --test-images 1000 --epochs 1 --criteria l1 taylor        # a one-minute smoke run
    # two seeds side by side on 2 cores, then one table:
    python benchmarks/tp_compare.py --seeds 0 --threads 1 --json s0.json &
    python benchmarks/tp_compare.py --seeds 1 --threads 1 --json s1.json; wait
    python benchmarks/tp_compare.py --merge s0.json s1.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on
# an AVX2-only AMD EPYC it trained this ResNet-20 1.6x slower without them (1.07 vs 0.65 s per
# step, one thread, beside another busy process). On, unless the caller says otherwise, so every
# host runs the same kernels; the JSON records the setting.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402

from _results import check_mergeable, mean_std_pct, paired, write_json  # noqa: E402

CRITERIA = {"l1": "l1", "l2": "l2", "fpgm": "fpgm", "taylor": "taylor_fo", "random": "random"}
VARIANTS = {"fixed": ("INIT", "symmetric"), "old": ("keras", "same"), "pad": ("keras", "symmetric"),
            "init": ("INIT", "same")}


# -- data and schedules ----------------------------------------------------------------------

def load_arrays(split: str, n: int | None):
    """Fashion-MNIST ``(x float32 NHWC in [0, 1], y int64)``, the first ``n`` images (local copy)."""
    from kprune.data.local import local_arrays
    found = local_arrays("fashion_mnist", split)
    if found is None:
        raise SystemExit("Fashion-MNIST not found: install Debian's dataset-fashion-mnist or set KPRUNE_DATA_DIR.")
    images, labels = found
    n = len(images) if n is None else min(n, len(images))
    return images[:n].astype("float32") / 255.0, labels[:n].astype("int64")


def batch_order(n: int, batch_size: int, seed: int, phase: str, epoch: int) -> list:
    """Index arrays of one epoch's batches (last one partial), shared by both frameworks."""
    key = [seed, epoch, sum(map(ord, phase))]
    perm = np.random.default_rng(key).permutation(n)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def cosine(lr: float, step: int, total: int) -> float:
    """PyTorch's ``CosineAnnealingLR(T_max=total)`` learning rate at ``step`` (eta_min 0)."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * step / total))


# -- kprune side -----------------------------------------------------------------------------

def keras_trainer(model, momentum: float, nesterov: bool, weight_decay: float):
    """A callable ``step(x, y, lr) -> loss`` (NumPy batches, a float learning rate) doing one step
    of PyTorch's SGD on ``model`` with Keras' backend: a ``tf.function`` on TensorFlow, a jitted
    stateless step on JAX; ``step.sync()`` writes JAX's values back into ``model``'s variables
    (call it before reading them; nothing to do on TensorFlow)."""
    import keras
    if keras.backend.backend() == "jax":
        return _JaxSGD(model, momentum, nesterov, weight_decay)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"tp_compare's kprune side runs on TensorFlow or JAX, not {keras.backend.backend()!r}")
    import tensorflow as tf
    variables = list(model.trainable_variables)
    bufs = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in variables]

    @tf.function(jit_compile=False, reduce_retracing=True)
    def tf_step(x, y, lr):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        grads = tape.gradient(loss, variables)
        for g, v, b in zip(grads, variables, bufs):
            if weight_decay:
                g = g + weight_decay * v
            b.assign(momentum * b + g)
            v.assign_sub(lr * (g + momentum * b if nesterov else b))
        return loss

    def step(x, y, lr):  # tensors in, so that every learning rate shares one trace
        return tf_step(tf.constant(x), tf.constant(y), tf.constant(lr, tf.float32))

    step.sync = lambda: None
    return step


class _JaxSGD:
    """PyTorch's SGD (momentum buffer ``b = m·b + g``, coupled weight decay, Nesterov
    ``g + m·b``) on a Keras model under JAX: one ``jax.jit`` of ``stateless_call`` + the update,
    the state (weights, BatchNorm statistics, buffers) kept as arrays between steps."""

    def __init__(self, model, momentum: float, nesterov: bool, weight_decay: float):
        import jax
        import keras

        self.model = model
        self.tv = [v.value for v in model.trainable_variables]
        self.ntv = [v.value for v in model.non_trainable_variables]
        self.bufs = [jax.numpy.zeros_like(v) for v in self.tv]

        def loss_fn(tv, ntv, x, y):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            return loss, ntv

        def step(tv, ntv, bufs, x, y, lr):
            (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x, y)
            new_tv, new_bufs = [], []
            for g, v, b in zip(grads, tv, bufs):
                if weight_decay:
                    g = g + weight_decay * v
                b = momentum * b + g
                new_tv.append(v - lr * (g + momentum * b if nesterov else b))
                new_bufs.append(b)
            return loss, new_tv, ntv, new_bufs

        self._step = jax.jit(step)

    def __call__(self, x, y, lr):
        loss, self.tv, self.ntv, self.bufs = self._step(self.tv, self.ntv, self.bufs, x, y, np.float32(lr))
        return loss

    def sync(self) -> None:
        for v, a in zip(self.model.trainable_variables, self.tv):
            v.assign(a)
        for v, a in zip(self.model.non_trainable_variables, self.ntv):
            v.assign(a)


def check_trainer() -> float:
    """Asserts that :func:`keras_trainer` takes PyTorch's SGD steps (torch.optim.SGD's documented
    update, in NumPy) on a small Dense model: three steps, Nesterov and plain momentum, with
    weight decay. Returns the largest absolute difference."""
    import keras
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)).astype("float32"), rng.integers(0, 3, 8)
    worst = 0.0
    for nesterov in (True, False):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        w = [np.asarray(v, dtype=np.float64) for v in model.get_weights()]
        buf = [np.zeros_like(a) for a in w]
        step = keras_trainer(model, 0.9, nesterov, 5e-4)
        for lr in (0.05, 0.04, 0.03):
            logits = x @ w[0] + w[1]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            d = (p - np.eye(3)[y]) / len(x)  # d mean cross-entropy / d logits
            grads = [x.T @ d, d.sum(0)]
            for i, g in enumerate(grads):
                g = g + 5e-4 * w[i]
                buf[i] = 0.9 * buf[i] + g
                w[i] = w[i] - lr * (g + 0.9 * buf[i] if nesterov else buf[i])
            step(x, y, lr)
        step.sync()
        worst = max(worst, max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), w)))
    assert worst < 1e-5, f"the Keras loop does not take PyTorch's SGD steps (max difference {worst})"
    return worst


def keras_train(model, x, y, args, seed, phase, epochs, lr, nesterov, weight_decay) -> list:
    """Train ``model`` in place; returns the seconds of each epoch."""
    step = keras_trainer(model, 0.9, nesterov, weight_decay)
    total = epochs * -(-len(x) // args.batch_size)
    t, seconds = 0, []
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in batch_order(len(x), args.batch_size, seed, phase, epoch):
            loss = step(x[idx], y[idx], cosine(lr, t, total))
            t += 1
        float(loss)  # JAX dispatches asynchronously: time the epoch to its last step's end
        seconds.append(time.perf_counter() - start)
    step.sync()
    return seconds


def keras_accuracy(model, x, y, batch_size=1000) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), -1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def keras_channels(model) -> dict:
    import keras
    return {layer.name: layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}


def kprune_prune(dense, crit, channels, full, seed, calib, group_score="auto"):
    """Wrap, prune once to the per-layer ``channels`` and compact; returns the small model."""
    import kprune
    config = [{"op_names": [name], "sparsity": 1.0 - channels[name] / full[name]} for name in sorted(channels)]
    recipe = {"prune": {"criterion": crit, "granularity": "filter", "dependency_aware": True, "round_to": 1,
                        "scope": "layerwise", "group_score": group_score,
                        "schedule": {"name": "oneshot"}, "seed": int(seed), "statistics_batches": len(calib),
                        "config_list": config}}
    wrapped = kprune.wrap(dense, recipe)
    kprune.Pruner(wrapped, data=calib if crit == "taylor_fo" else None).prune_now()
    return kprune.compact(wrapped)


# -- Torch-Pruning side ----------------------------------------------------------------------

def torch_train(model, x, y, args, seed, phase, epochs, lr, nesterov, weight_decay) -> list:
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    total = epochs * -(-len(x) // args.batch_size)
    t, seconds = 0, []
    model.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in batch_order(len(x), args.batch_size, seed, phase, epoch):
            for group in opt.param_groups:
                group["lr"] = cosine(lr, t, total)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            t += 1
        seconds.append(time.perf_counter() - start)
    model.eval()
    return seconds


def tp_importance(crit: str):
    import torch_pruning as tp
    return {"l1": lambda: tp.importance.MagnitudeImportance(p=1), "l2": lambda: tp.importance.MagnitudeImportance(p=2),
            "fpgm": lambda: tp.importance.FPGMImportance(), "taylor": lambda: tp.importance.TaylorImportance(),
            "random": lambda: tp.importance.RandomImportance()}[crit]()


def tp_prune(model, crit: str, ratio: float, example, calib=(), seed=0):
    """Prune ``model`` in place with Torch-Pruning's local pruning at ``ratio``; returns it."""
    import torch
    import torch_pruning as tp
    from _torch_resnet import batchnorms
    pruner = tp.pruner.BasePruner(model, example, importance=tp_importance(crit), pruning_ratio=ratio,
                                  global_pruning=False, ignored_layers=[model.predictions])
    if crit == "taylor":
        bns = batchnorms(model)
        saved = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0  # training-mode BatchNorm, running statistics untouched (as kprune)
        model.train()
        model.zero_grad()
        for xb, yb in calib:
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
    torch.manual_seed(seed)
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    return model


def tp_macs(model, example) -> int:
    import torch_pruning as tp
    return int(tp.utils.count_ops_and_params(model, example)[0])


def bisect_ratio(model, example, target: float, iterations: int):
    """The uniform ratio whose pruned model has MACs removed closest to ``target`` (TP's counter)."""
    dense = tp_macs(model, example)

    def removed(r):
        return 1.0 - tp_macs(tp_prune(copy.deepcopy(model), "l1", r, example), example) / dense

    lo, hi, f_lo, f_hi = 0.0, 0.95, 0.0, removed(0.95)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        f = removed(mid)
        if f >= target:
            hi, f_hi = mid, f
        else:
            lo, f_lo = mid, f
    return (hi, f_hi) if abs(f_hi - target) <= abs(f_lo - target) else (lo, f_lo)


# -- one seed --------------------------------------------------------------------------------
#
# The PyTorch side runs in a child process that never imports TensorFlow: in one process with
# TensorFlow, PyTorch's CPU training of the same 32 steps took 42 s on this 2-core machine,
# against 1.7 s in its own process (smoke runs at load averages 3.8 and 1.8), which would make
# the seconds-per-epoch column meaningless.

def torch_onednn(args, dense: bool) -> None:
    """PyTorch's oneDNN on or off for the dense model's training or for pruned widths (``--torch-onednn``)."""
    import torch
    torch.backends.mkldnn.enabled = args.torch_onednn == "on" or (dense and args.torch_onednn == "dense")


def torch_side(seed: int, args, data, init: str) -> dict:
    """Train (if asked), find each target's ratio and channel counts, prune, recalibrate and
    fine-tune every criterion with Torch-Pruning. Runs in a spawned process."""
    import torch

    from _torch_resnet import CifarResNet, accuracy, conv_channels, recalibrate_bn, trainable_count

    if args.threads:
        torch.set_num_threads(args.threads)
    torch_onednn(args, dense=True)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in to_nchw(*data))
    example = xtr[:1]
    torch.manual_seed(seed)
    model = CifarResNet(in_channels=xtr.shape[1], width=args.width, init=init)
    out = {"trainable_params": trainable_count(model), "conv_channels": conv_channels(model),
           "threads": torch.get_num_threads(), "dense": {}, "targets": {}, "runs": []}
    train = "torch" in args.frameworks
    if train:
        sec = torch_train(model, xtr, ytr, args, seed, "train", args.epochs, args.lr, True, args.weight_decay)
        out["dense"] = {"accuracy": accuracy(model, xte, yte), "epoch_seconds": sec, "macs": tp_macs(model, example)}
        print(f"seed {seed}: torch  dense {out['dense']['accuracy']:.4f} ({statistics.fmean(sec):.1f} s/epoch, "
              f"{out['threads']} threads)", flush=True)
    calib = [(xtr[i], ytr[i]) for i in batch_order(len(xtr), args.batch_size, seed, "calib", 0)[:args.calib_batches]]
    bn = [xtr[i] for i in batch_order(len(xtr), args.batch_size, seed, "bn", 0)[:args.bn_batches]]
    torch_onednn(args, dense=False)
    for target in args.targets:
        ratio, removed = bisect_ratio(model, example, target, args.bisect_iterations)
        channels = conv_channels(tp_prune(copy.deepcopy(model), "l1", ratio, example))
        out["targets"][str(target)] = {"ratio": ratio, "macs_removed": removed, "channels": channels}
        for crit in args.criteria if train else ():
            t = time.perf_counter()
            pruned = tp_prune(copy.deepcopy(model), crit, ratio, example, calib, seed)
            assert conv_channels(pruned) == channels, "Torch-Pruning's criteria pruned to different widths"
            macs = tp_macs(pruned, example)
            row = {"target": target, "criterion": crit, "macs": macs, "macs_removed": 1 - macs / out["dense"]["macs"],
                   "prune_seconds": time.perf_counter() - t, "accuracy_pruned": accuracy(pruned, xte, yte)}
            recalibrate_bn(pruned, bn)
            row["accuracy_bn"] = accuracy(pruned, xte, yte)
            sec = torch_train(pruned, xtr, ytr, args, seed, "finetune", args.finetune_epochs, args.finetune_lr,
                              False, 0.0)
            row.update(accuracy_finetuned=accuracy(pruned, xte, yte), epoch_seconds=sec)
            out["runs"].append(row)
            print(f"seed {seed}: {target:.0%} {crit:<7} TP done ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


#: Flags that change Torch-Pruning's results; --torch-from requires them equal.
TORCH_PROTOCOL = ("train_images", "test_images", "epochs", "finetune_epochs", "lr", "finetune_lr", "weight_decay",
                  "batch_size", "width", "init", "calib_batches", "bn_batches", "bisect_iterations")


def earlier_torch(args, seed: int, targets: dict) -> dict:
    """Torch-Pruning's dense and per-(target, criterion) results for ``seed`` from the ``--torch-from``
    files, after checking that they ran the same protocol and pruned to the same channel counts."""
    import json
    for path in args.torch_from:
        run = json.load(open(path))
        differ = [k for k in TORCH_PROTOCOL if run["args"].get(k) != getattr(args, k)]
        if differ:
            raise SystemExit(f"--torch-from: {path} ran a different protocol ({', '.join(differ)})")
        for entry in run["seeds"]:
            if entry.get("seed") != seed or not entry.get("torch"):
                continue
            rows = {(r["target"], r["criterion"]): r["torch"] for r in entry["runs"] if "torch" in r}
            missing = [(t, c) for t in args.targets for c in args.criteria if (t, c) not in rows]
            if missing:
                raise SystemExit(f"--torch-from: {path} has no Torch-Pruning result for seed {seed} at {missing}")
            for t in args.targets:
                if entry["targets"][str(t)]["channels"] != targets[str(t)]["channels"]:
                    raise SystemExit(f"--torch-from: {path} pruned seed {seed} at {t} to other channel counts")
            return {"dense": entry["torch"], "threads": entry.get("torch_threads"), "torch_from": path,
                    "runs": [{"target": t, "criterion": c, **rows[(t, c)]} for t in args.targets for c in args.criteria]}
    raise SystemExit(f"--torch-from: no Torch-Pruning results for seed {seed} in {', '.join(args.torch_from)}")


def to_nchw(xtr, ytr, xte, yte):
    return (np.ascontiguousarray(xtr.transpose(0, 3, 1, 2)), ytr, np.ascontiguousarray(xte.transpose(0, 3, 1, 2)), yte)


def run_seed(seed: int, args, data, out: dict, save) -> dict:
    """Both frameworks for one seed: Torch-Pruning first (in a child process; it also fixes the
    channel counts), then kprune. Fills ``out`` and calls ``save()`` as results arrive."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import keras

    import kprune

    xtr, ytr, xte, yte = data
    init, padding = VARIANTS[args.zoo_variant]
    init = args.init if init == "INIT" else init
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        tside = pool.submit(torch_side, seed, args, data, args.init).result()
    if args.torch_from:
        tside.update(earlier_torch(args, seed, tside["targets"]))
    keras.utils.set_random_seed(seed)
    kmodel = kprune.models.get("resnet20", input_shape=xtr.shape[1:], num_classes=10, width=args.width,
                               init=init, strided_padding=padding)
    k_params = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    assert k_params == tside["trainable_params"], (k_params, tside["trainable_params"])
    full = keras_channels(kmodel)
    assert full == tside["conv_channels"], "the PyTorch mirror's layers differ from kprune's zoo model"
    out.update({"seed": seed, "trainable_params": k_params, "kprune": {}, "torch": tside["dense"],
                "torch_threads": tside["threads"], "targets": tside["targets"], "runs": []})
    if args.torch_from:
        out["torch_from"] = tside["torch_from"]
    sec = keras_train(kmodel, xtr, ytr, args, seed, "train", args.epochs, args.lr, True, args.weight_decay)
    out["kprune"] = {"accuracy": keras_accuracy(kmodel, xte, yte), "epoch_seconds": sec, "macs": kprune.count(kmodel).macs}
    print(f"seed {seed}: kprune dense {out['kprune']['accuracy']:.4f} ({statistics.fmean(sec):.1f} s/epoch, "
          f"zoo variant {args.zoo_variant}: init={init}, strided_padding={padding})", flush=True)
    save()
    k_calib = [(xtr[i], ytr[i]) for i in batch_order(len(xtr), args.batch_size, seed, "calib", 0)[:args.calib_batches]]
    k_bn = [xtr[i] for i in batch_order(len(xtr), args.batch_size, seed, "bn", 0)[:args.bn_batches]]
    t_rows = {(r["target"], r["criterion"]): r for r in tside["runs"]}
    for target in args.targets:
        tgt = tside["targets"][str(target)]
        channels = tgt["channels"]
        print(f"seed {seed}: target {target:.0%}: Torch-Pruning ratio {tgt['ratio']:.4f}, MACs removed "
              f"{tgt['macs_removed']:.4f} (its count)", flush=True)
        for crit in args.criteria:
            t = time.perf_counter()
            small = kprune_prune(kmodel, CRITERIA[crit], channels, full, seed, k_calib, args.group_score)
            got = keras_channels(small)
            assert got == channels, f"kprune kept {got}, Torch-Pruning {channels}"
            kc = kprune.count(small)
            k = {"macs": kc.macs, "macs_removed": 1 - kc.macs / out["kprune"]["macs"],
                 "prune_seconds": time.perf_counter() - t, "accuracy_pruned": keras_accuracy(small, xte, yte)}
            kprune.recalibrate_bn(small, k_bn, batches=len(k_bn))
            k["accuracy_bn"] = keras_accuracy(small, xte, yte)
            sec = keras_train(small, xtr, ytr, args, seed, "finetune", args.finetune_epochs, args.finetune_lr, False, 0.0)
            k.update(accuracy_finetuned=keras_accuracy(small, xte, yte), epoch_seconds=sec)
            row = {"target": target, "criterion": crit, "ratio": tgt["ratio"], "channels": channels, "kprune": k}
            if (target, crit) in t_rows:
                row["torch"] = t_rows[(target, crit)]
            out["runs"].append(row)
            save()
            line = " | ".join(f"{fw} pruned {r['accuracy_pruned']:.4f} BN {r['accuracy_bn']:.4f} "
                              f"fine-tuned {r['accuracy_finetuned']:.4f}"
                              for fw, r in (("kprune", k), ("TP", row.get("torch"))) if r)
            print(f"seed {seed}: {target:.0%} {crit:<7} MACs removed {k['macs_removed']:.4f}: {line}", flush=True)
    return out


# -- report ----------------------------------------------------------------------------------

def table(results) -> str:
    """Markdown: one row per (target, criterion), mean ± std over seeds, and the paired gap."""
    seeds = results["seeds"]
    lines = ["| target | criterion | seeds | MACs removed (kprune / TP count) | kprune pruned / BN / fine-tuned | "
             "Torch-Pruning pruned / BN / fine-tuned | kprune − TP fine-tuned |",
             "|---|---|---|---|---|---|---|"]
    keys = ("accuracy_pruned", "accuracy_bn", "accuracy_finetuned")
    targets = sorted({r["target"] for s in seeds for r in s["runs"]})
    criteria = [c for c in CRITERIA if any(r["criterion"] == c for s in seeds for r in s["runs"])]
    for target in targets:
        for crit in criteria:
            rows = [r for s in seeds for r in s["runs"] if r["target"] == target and r["criterion"] == crit]
            if not rows:
                continue
            k = " / ".join(mean_std_pct(r["kprune"][key] for r in rows) for key in keys)
            has_t = all("torch" in r for r in rows)
            tcol = " / ".join(mean_std_pct(r["torch"][key] for r in rows) for key in keys) if has_t else "—"
            gap = mean_std_pct(r["kprune"]["accuracy_finetuned"] - r["torch"]["accuracy_finetuned"]
                               for r in rows) if has_t else "—"
            macs = f"{statistics.fmean(r['kprune']['macs_removed'] for r in rows):.3f}"
            if has_t:
                macs += f" / {statistics.fmean(r['torch']['macs_removed'] for r in rows):.3f}"
            lines.append(f"| {target:.0%} | {crit} | {len(rows)} | {macs} "
                         f"| {k} | {tcol} | {gap} |")
    dense = " / ".join(f"{fw} {mean_std_pct(s[fw]['accuracy'] for s in seeds)} "
                       f"({statistics.fmean(t for s in seeds for t in s[fw]['epoch_seconds']):.1f} s/epoch)"
                       for fw in ("kprune", "torch") if all(s[fw] for s in seeds))
    ft = " / ".join(f"{fw} {statistics.fmean(t for s in seeds for r in s['runs'] for t in r[fw]['epoch_seconds']):.1f}"
                    for fw in ("kprune", "torch") if all(fw in r for s in seeds for r in s["runs"]) and seeds[0]["runs"])
    return "\n".join([f"dense accuracy (%): {dense}", f"fine-tuning s/epoch: {ft}", "", *lines, *gaps(seeds)])


def gaps(seeds) -> list:
    """Lines of the paired gap kprune − Torch-Pruning after fine-tuning, in points, for every cell
    that both sides ran at three or more seeds: mean ± std, standard error, 95 % t-interval and the
    per-seed values (the issue's bar is a mean ≥ −0.3)."""
    lines = []
    for target in sorted({r["target"] for s in seeds for r in s["runs"]}):
        for crit in CRITERIA:
            cell = [(s["seed"], r) for s in seeds for r in s["runs"]
                    if r["target"] == target and r["criterion"] == crit and "torch" in r]
            if len(cell) < 3:
                continue
            diffs = [100 * (r["kprune"]["accuracy_finetuned"] - r["torch"]["accuracy_finetuned"]) for _, r in cell]
            lines.append(f"- {target:.0%} {crit}, {len(cell)} seeds: {paired(diffs, [seed for seed, _ in cell])}")
    return ["", "kprune − Torch-Pruning after fine-tuning (points):", *lines] if lines else []


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--criteria", nargs="+", default=list(CRITERIA), choices=list(CRITERIA))
    p.add_argument("--targets", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="fractions of MACs removed")
    p.add_argument("--train-images", type=int, default=60000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--init", default="reference", choices=("reference", "torch"),
                   help="initialisation of both models (kprune's zoo `init`; the mirror does the same)")
    p.add_argument("--zoo-variant", default="fixed", choices=list(VARIANTS),
                   help="kprune's model: fixed | old (pre-issue-19) | pad (padding fix only) | init (init fix only)")
    p.add_argument("--group-score", default="auto", choices=("auto", "producers", "all"),
                   help="kprune's prune.group_score: score the producers' filters (NNI), every weight of "
                        "the channel group (Torch-Pruning's group importance) or auto (the recipe default: "
                        "all for these five criteria)")
    p.add_argument("--frameworks", nargs="+", default=["kprune", "torch"], choices=("kprune", "torch"))
    p.add_argument("--calib-batches", type=int, default=10)
    p.add_argument("--bn-batches", type=int, default=20)
    p.add_argument("--bisect-iterations", type=int, default=14)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of each framework (TensorFlow intra-op, torch.set_num_threads); 0: their defaults. "
                        "With 1, two seeds can run side by side on 2 cores")
    p.add_argument("--torch-onednn", default="dense", choices=("dense", "on", "off"),
                   help="where PyTorch may use oneDNN (mkldnn) on the CPU: dense (default: dense training only), "
                        "on, off. With torch 2.13.0+cpu on an AVX2-only AMD EPYC, backward passes of ResNet-20s at "
                        "pruned widths (e.g. 4/9/19 channels, on Fashion-MNIST) corrupted the heap inside oneDNN "
                        "(double free, SIGFPE); PyTorch's own kernels do not, but train the dense model 2.4x slower")
    p.add_argument("--torch-from", nargs="+", metavar="JSON",
                   help="take Torch-Pruning's results (dense and per criterion) for each seed from these earlier "
                        "runs instead of training (needs --frameworks kprune): its side does not depend on any "
                        "kprune setting; the protocol flags and the channel counts are checked equal")
    p.add_argument("--json", default="benchmarks/results/tp_compare.json")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="print the table of these result files together (their seeds pooled) and exit; "
                        "they must share every protocol setting (all but --seeds, --threads, --json and the "
                        "selection --criteria, --targets, --frameworks, --torch-from); each cell is pooled over "
                        "the seeds that ran it")
    args = p.parse_args(argv)
    if args.torch_from and "torch" in args.frameworks:
        p.error("--torch-from replaces Torch-Pruning's run: give it with --frameworks kprune")
    if "kprune" not in args.frameworks:
        p.error("--frameworks must include kprune (the Torch-Pruning-only run is not this script's purpose)")
    return args


def merge(paths) -> dict:
    """The results of several runs (e.g. one seed each, run side by side) as one: seeds pooled."""
    import json
    runs = [json.load(open(path)) for path in paths]
    check_mergeable(paths, [run["args"] for run in runs],
                    [run.get("host", {}).get("backend", "tensorflow") for run in runs],  # none before the JAX step
                    free=("seeds", "threads", "json", "merge", "criteria", "targets", "frameworks", "torch_from"))
    seeds = sorted((s for run in runs for s in run["seeds"]), key=lambda s: s["seed"])
    if len({s["seed"] for s in seeds}) != len(seeds):
        raise SystemExit(f"--merge: a seed appears twice in {', '.join(paths)}")
    return {"args": {**runs[0]["args"], "seeds": [s["seed"] for s in seeds]}, "seeds": seeds}


def main(argv=None) -> int:
    args = parse(argv)
    if args.merge:
        print(table(merge(args.merge)))
        return 0

    import keras

    from criteria_sweep import host

    from kprune.io import atomic_write_json

    on_tf = keras.backend.backend() == "tensorflow"
    if on_tf:
        import tensorflow as tf
    if on_tf and args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"kprune's training loop takes PyTorch's SGD steps (max weight difference {check_trainer():.1e})", flush=True)
    xtr, ytr = load_arrays("train", args.train_images)
    xte, yte = load_arrays("test", args.test_images)
    info = host()
    info.update(torch=importlib.metadata.version("torch"), torch_pruning=importlib.metadata.version("torch-pruning"),
                tf_intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() if on_tf else None,
                tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    results = {"benchmark": "tp_compare", "args": vars(args), "host": info, "seeds": []}
    load_before = os.getloadavg()
    print(f"keras {keras.__version__} ({keras.backend.backend()}), torch {info['torch']}, torch-pruning {info['torch_pruning']}, "
          f"{len(xtr)} train / {len(xte)} test images, {info['cpu']} x{info['nproc']}", flush=True)
    start = time.perf_counter()
    for seed in args.seeds:
        out = {}
        results["seeds"].append(out)
        run_seed(seed, args, (xtr, ytr, xte, yte), out, lambda: atomic_write_json(args.json, results))
    results["seconds"] = time.perf_counter() - start
    print()
    print(table(results))
    print(f"\ntotal {results['seconds']:.0f} s")
    write_json(args.json, results, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
