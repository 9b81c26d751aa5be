"""How far apart are kprune's and PyTorch's training of the same ResNet-20 after one step? (issue 19)

``tp_compare.py`` trains one dense model per framework with the same update rule, batch order
and initialisation scheme, yet the fine-tuned accuracies of the two differ per seed by up to two
points. This script asks whether the two training computations differ by more than float
arithmetic does. It builds the PyTorch mirror (``_torch_resnet.py``) from ``--seed``, copies its
weights into kprune's zoo ResNet-20, and on one batch of Fashion-MNIST in training mode compares,
layer by layer, the forward activations and the loss gradients of

* kprune (TensorFlow, float32) against PyTorch in float64 — the difference between frameworks;
* PyTorch in float32 against PyTorch in float64 — the rounding error of float32 alone.

If the first is no larger than the second, the frameworks compute the same step as closely as
float32 allows, and models trained from the same start drift apart only as float32 rounding
makes any two runs drift (chaotically, from the first step). Printed: the largest relative
difference (max |a − b| / max |b|) per layer and the median over layers of each comparison.

Usage::

    python benchmarks/tp_first_step.py [--seed 0] [--batch-size 128] [--width 0.5] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tp_compare as tc  # noqa: E402
import tp_transfer as tt  # noqa: E402
from _results import write_json  # noqa: E402


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def torch_grads(model, x, y) -> dict:
    """``{kprune weight path: gradient as a Keras-layout array}`` of the mean cross-entropy."""
    import torch
    model.train()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    out = {}
    for name, p in model.named_parameters():
        layer, attr = name.rsplit(".", 1)
        layer = layer.replace(".", "_")
        g = p.grad.double().numpy()
        if g.ndim == 4:
            out[f"{layer}/kernel"] = g.transpose(2, 3, 1, 0)
        elif "predictions" in layer:
            out[f"{layer}/{'kernel' if attr == 'weight' else 'bias'}"] = g.T if g.ndim == 2 else g
        else:
            out[f"{layer}/{'gamma' if attr == 'weight' else 'beta'}"] = g
    return out


def torch_activations(model, x) -> dict:
    """``{kprune layer name: NHWC output}`` of every convolution and BatchNorm, training mode."""
    import torch
    feats, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            def hook(_m, _i, o, key=name.replace(".", "_")):
                feats[key] = o.detach().double().numpy().transpose(0, 2, 3, 1)
            hooks.append(m.register_forward_hook(hook))
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return feats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--init", default="reference", choices=("reference", "torch"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf
    import torch

    import kprune
    from _torch_resnet import CifarResNet

    load_before = os.getloadavg()
    x, y = tc.load_arrays("train", args.batch_size)
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    ty = torch.from_numpy(y)
    torch.manual_seed(args.seed)
    t32 = CifarResNet(in_channels=x.shape[-1], width=args.width, init=args.init)
    t64 = copy.deepcopy(t32).double()
    keras.utils.set_random_seed(args.seed)
    km = kprune.models.get("resnet20", input_shape=x.shape[1:], num_classes=10, width=args.width, init=args.init)
    tt.torch_to_keras(t32, km)

    ref_g = torch_grads(t64, tx.double(), ty)
    t32_g = torch_grads(t32, tx, ty)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, km(x, training=True), from_logits=True))
    k_g = {v.path: g.numpy() for v, g in zip(km.trainable_variables, tape.gradient(loss, km.trainable_variables))}
    assert set(k_g) == set(ref_g), sorted(set(k_g) ^ set(ref_g))

    ref_a = torch_activations(t64, tx.double())
    t32_a = torch_activations(t32, tx)
    names = list(ref_a)
    probe = keras.Model(km.input, [km.get_layer(n).output for n in names])
    k_a = dict(zip(names, (np.asarray(o) for o in probe(x, training=True))))

    rows = []
    for key in ref_g:
        rows.append({"what": "gradient", "name": key, "kprune_vs_float64": rel(k_g[key], ref_g[key]),
                     "torch_float32_vs_float64": rel(t32_g[key], ref_g[key])})
    for key in names:
        rows.append({"what": "activation", "name": key, "kprune_vs_float64": rel(k_a[key], ref_a[key]),
                     "torch_float32_vs_float64": rel(t32_a[key], ref_a[key])})
    print(f"{'':<10} {'layer / weight':<34} {'kprune f32':>11} {'torch f32':>11}   (max rel. difference to torch f64)")
    for r in rows:
        print(f"{r['what']:<10} {r['name']:<34} {r['kprune_vs_float64']:>11.2e} {r['torch_float32_vs_float64']:>11.2e}")
    summary = {}
    for what in ("activation", "gradient"):
        sel = [r for r in rows if r["what"] == what]
        summary[what] = {k: statistics.median(r[k] for r in sel) for k in ("kprune_vs_float64", "torch_float32_vs_float64")}
        print(f"median over {len(sel)} {what}s: kprune (TensorFlow f32) {summary[what]['kprune_vs_float64']:.2e}, "
              f"PyTorch f32 {summary[what]['torch_float32_vs_float64']:.2e}")
    if args.json:
        write_json(args.json, {"benchmark": "tp_first_step", "args": vars(args), "rows": rows, "summary": summary},
                   load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
