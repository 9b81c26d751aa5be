"""kprune and Torch-Pruning from the *same* trained weights: where does issue 19's gap come from?

``tp_compare.py`` trains one model per framework; kprune's fine-tuned accuracy trails by about a
point at every target and criterion, random included. This script separates the stages:

1. kprune's zoo ResNet-20 is trained as in ``tp_compare.py`` (its PyTorch-SGD loop, same
   protocol and flags), then its weights are copied into the PyTorch mirror
   (``_torch_resnet.py``); the dense logits of the two are compared.
2. For each target and each criterion (l1, l2, fpgm, random), both frameworks prune their
   copy to Torch-Pruning's per-layer channel counts; the pruned models' logits are compared
   (equal logits: both kept the same channels and compacted the same way; random's two draws
   differ, so its logits do too).
3. Each pruned model is fine-tuned in its own framework, and kprune's pruned weights are also
   copied into Torch-Pruning's pruned architecture and fine-tuned in PyTorch ("kprune pruned,
   PyTorch fine-tuned"): with equal pruned models, a gap that remains between the kprune and
   the cross row comes from fine-tuning in TensorFlow, not from pruning.

With ``--trained-by torch`` the direction is reversed: the PyTorch mirror is trained (the
torch side of ``tp_compare.py``) and its weights are copied into kprune's zoo model, so each
pruner is also measured on the other framework's trained model. ``--group-score all`` makes
kprune score every weight of a channel group as Torch-Pruning does; the pruned logits then
tell whether both keep the same channels. ``--trained-by kprune --init-from torch`` starts
TensorFlow's training from the PyTorch mirror's initial weights (the same draws ``--trained-by
torch`` trains), which separates the initial draws from the training numerics.

Usage::

    python benchmarks/tp_transfer.py --seeds 0 --targets 0.5 --json benchmarks/results/tp_transfer.json
    python benchmarks/tp_transfer.py --trained-by torch --group-score all --seeds 0 --targets 0.5
    python benchmarks/tp_transfer.py --trained-by kprune --init-from torch --seeds 0 --targets 0.7 --criteria random
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tp_compare as tc  # noqa: E402
from _results import write_json  # noqa: E402

CRITERIA = ("l1", "l2", "fpgm", "random")  # random: the two draws differ, so its pruned logits do too


def keras_to_torch(kmodel, tmodel):
    """Copies the weights of kprune's zoo ResNet into the PyTorch mirror (names ``a_b`` ↔ ``a.b``)."""
    import torch
    from torch import nn
    with torch.no_grad():
        for name, m in tmodel.named_modules():
            if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
                continue
            layer = kmodel.get_layer(name.replace(".", "_"))
            w = [np.asarray(v) for v in layer.get_weights()]
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.from_numpy(w[0].transpose(3, 2, 0, 1).copy()))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.from_numpy(w[0].T.copy()))
                m.bias.copy_(torch.from_numpy(w[1]))
            else:
                for t, a in zip((m.weight, m.bias, m.running_mean, m.running_var), w):
                    t.copy_(torch.from_numpy(a))
    return tmodel


def torch_to_keras(tmodel, kmodel):
    """Copies the PyTorch mirror's weights into kprune's zoo ResNet (the inverse of :func:`keras_to_torch`)."""
    from torch import nn
    for name, m in tmodel.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        layer = kmodel.get_layer(name.replace(".", "_"))
        if isinstance(m, nn.Conv2d):
            w = [m.weight.detach().numpy().transpose(2, 3, 1, 0)]
        elif isinstance(m, nn.Linear):
            w = [m.weight.detach().numpy().T, m.bias.detach().numpy()]
        else:
            w = [t.detach().numpy() for t in (m.weight, m.bias, m.running_mean, m.running_var)]
        layer.set_weights([np.ascontiguousarray(a) for a in w])
    return kmodel


def logits_diff(kmodel, tmodel, x) -> float:
    import torch
    tmodel.eval()
    with torch.no_grad():
        t = tmodel(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    k = np.asarray(kmodel(x, training=False))
    return float(np.max(np.abs(k - t)))


def run_seed(seed, args, data) -> dict:
    import keras
    import torch

    import kprune
    from _torch_resnet import CifarResNet, accuracy, conv_channels

    torch.set_num_threads(args.threads or torch.get_num_threads())
    tc.torch_onednn(args, dense=True)
    xtr, ytr, xte, yte = data
    txtr, tytr, txte, tyte = (torch.from_numpy(a) for a in tc.to_nchw(*data))
    keras.utils.set_random_seed(seed)
    kmodel = kprune.models.get("resnet20", input_shape=xtr.shape[1:], num_classes=10, width=args.width,
                               init=args.init)
    if args.trained_by == "kprune":
        if args.init_from == "torch":  # PyTorch's initial draws, trained by TensorFlow
            torch.manual_seed(seed)
            kmodel = torch_to_keras(CifarResNet(in_channels=1, width=args.width, init=args.init), kmodel)
        sec = tc.keras_train(kmodel, xtr, ytr, args, seed, "train", args.epochs, args.lr, True, args.weight_decay)
        dense = keras_to_torch(kmodel, CifarResNet(in_channels=1, width=args.width))
    else:
        torch.manual_seed(seed)
        dense = CifarResNet(in_channels=1, width=args.width, init=args.init)
        sec = tc.torch_train(dense, txtr, tytr, args, seed, "train", args.epochs, args.lr, True, args.weight_decay)
        kmodel = torch_to_keras(dense, kmodel)
    out = {"seed": seed, "dense": {"trained_by": args.trained_by, "init_from": args.init_from,
                                   "kprune": tc.keras_accuracy(kmodel, xte, yte),
                                   "torch_copy": accuracy(dense, txte, tyte),
                                   "logits_max_diff": logits_diff(kmodel, dense, xte[:1000]),
                                   "train_epoch_seconds": sec}, "runs": []}
    print(f"seed {seed}: trained by {args.trained_by} from {args.init_from}'s initial weights: dense kprune "
          f"{out['dense']['kprune']:.4f}, PyTorch "
          f"{out['dense']['torch_copy']:.4f} (logits max diff {out['dense']['logits_max_diff']:.1e})", flush=True)
    full = tc.keras_channels(kmodel)
    example = txtr[:1]
    tc.torch_onednn(args, dense=False)
    for target in args.targets:
        ratio, removed = tc.bisect_ratio(dense, example, target, args.bisect_iterations)
        channels = conv_channels(tc.tp_prune(copy.deepcopy(dense), "l1", ratio, example))
        for crit in args.criteria:
            small = tc.kprune_prune(kmodel, tc.CRITERIA[crit], channels, full, seed, [None], args.group_score)
            tp = tc.tp_prune(copy.deepcopy(dense), crit, ratio, example, seed=seed)
            cross = keras_to_torch(small, copy.deepcopy(tp))
            row = {"target": target, "criterion": crit, "ratio": ratio,
                   "pruned_logits_max_diff": logits_diff(small, tp, xte[:1000]),
                   "cross_logits_max_diff": logits_diff(small, cross, xte[:1000])}
            t = time.perf_counter()
            tc.keras_train(small, xtr, ytr, args, seed, "finetune", args.finetune_epochs, args.finetune_lr, False, 0.0)
            row["kprune_seconds"] = time.perf_counter() - t
            row["kprune"] = tc.keras_accuracy(small, xte, yte)
            tc.torch_train(tp, txtr, tytr, args, seed, "finetune", args.finetune_epochs, args.finetune_lr, False, 0.0)
            row["torch_pruning"] = accuracy(tp, txte, tyte)
            tc.torch_train(cross, txtr, tytr, args, seed, "finetune", args.finetune_epochs, args.finetune_lr, False, 0.0)
            row["kprune_pruned_torch_finetuned"] = accuracy(cross, txte, tyte)
            out["runs"].append(row)
            print(f"seed {seed}: {target:.0%} {crit:<5} pruned logits diff {row['pruned_logits_max_diff']:.1e} | "
                  f"fine-tuned: kprune {row['kprune']:.4f}, Torch-Pruning {row['torch_pruning']:.4f}, "
                  f"kprune-pruned in PyTorch {row['kprune_pruned_torch_finetuned']:.4f}", flush=True)
    return out


def main(argv=None) -> int:
    import argparse
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--trained-by", default="kprune", choices=("kprune", "torch"),
                     help="which framework trains the dense model the other one receives")
    own.add_argument("--init-from", default=None, choices=("kprune", "torch"),
                     help="whose initial weights the training starts from (default: the training "
                          "framework's own draws); --trained-by kprune --init-from torch trains "
                          "PyTorch's initial draws in TensorFlow")
    mine, rest = own.parse_known_args(argv)
    args = tc.parse(rest)  # tp_compare's flags; taylor (which needs calibration batches) is dropped
    args.trained_by = mine.trained_by
    args.init_from = mine.init_from or mine.trained_by
    if args.init_from != args.trained_by and args.trained_by == "torch":
        raise SystemExit("--init-from kprune with --trained-by torch is not implemented")
    args.criteria = [c for c in args.criteria if c in CRITERIA]
    if args.json == "benchmarks/results/tp_compare.json":
        args.json = "benchmarks/results/tp_transfer.json"
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    data = (*tc.load_arrays("train", args.train_images), *tc.load_arrays("test", args.test_images))
    load_before = os.getloadavg()
    results = {"benchmark": "tp_transfer", "args": vars(args), "seeds": []}
    for seed in args.seeds:
        results["seeds"].append(run_seed(seed, args, data))
    print()
    for key in ("kprune", "torch_pruning", "kprune_pruned_torch_finetuned"):
        vals = [r[key] for s in results["seeds"] for r in s["runs"]]
        print(f"mean fine-tuned accuracy, {key}: {100 * statistics.fmean(vals):.2f} % over {len(vals)} runs")
    write_json(args.json, results, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
