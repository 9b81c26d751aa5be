"""Do kprune and TFMOT choose the same weights? AGP level pruning on identical LeNet-300-100 weights.

The accuracy comparison (``lenet_accuracy.py``) cannot separate the pruning algorithm from
the two frameworks' training numerics: Keras 3 and tf_keras already end 0.2–0.5 points
apart on the *same dense model*. This script isolates the pruning:

1. ``kprune.models.lenet300_100`` is trained dense for ``--pretrain-epochs`` (Adam).
2. The weights are copied into a Keras 3 model wrapped by ``kprune.wrap`` (level criterion,
   AGP from 0 to ``s``) and into the identical tf_keras model under TFMOT's
   ``prune_low_magnitude(PolynomialDecay(0, s))``, both with the same ``--end-step`` and
   ``--frequency``.
3. Both train ``--steps`` steps on the same batches with **SGD at learning rate 0**, so the
   weights never change and only the schedules and mask selections act. After every step the
   masks of fc1, fc2 and predictions are read from both.

It prints, per mask update, the sparsity each library reached and the number of positions
where the masks differ; TFMOT applies the sparsity of step ``k`` one batch earlier than
kprune (its wrapper increments the step before the update), so step ``k`` of TFMOT is
compared with step ``k + 1`` of kprune as well as with step ``k``.

With ``--train-epochs E`` it then checks the one behaviour that learning rate 0 cannot show:
whether a pruned weight ever comes back while the weights *do* train. TFMOT computes each
gradient through the stored (masked) kernel, so the optimizer moves pruned weights between
updates before re-masking them, and its next selection sees them; kprune keeps pruned
weights pruned by construction. Both libraries train ``E`` epochs with Adam 1e-3 from the
same weights under AGP 0 → s from step 0 to ``--train-end-step`` every
``--train-frequency`` steps (the accuracy benchmark's schedule), and every batch's masks are
compared with the previous batch's: the count of positions that went from pruned to kept is
printed.

Usage::

    python benchmarks/lenet_mask_agreement.py [--seed 0] [--pretrain-epochs 2] [--sparsity 0.9]
        [--end-step 40] [--frequency 4] [--train-epochs 0] [--train-end-step 2300]
        [--train-frequency 100] [--json benchmarks/results/lenet_mask_agreement.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _compare as C  # noqa: E402

DENSE = ("fc1", "fc2", "predictions")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.9, 0.95])
    p.add_argument("--end-step", type=int, default=40)
    p.add_argument("--frequency", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-epochs", type=int, default=0, help="epochs of the regrowth check (0: skip)")
    p.add_argument("--train-end-step", type=int, default=2300)
    p.add_argument("--train-frequency", type=int, default=100)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "lenet_mask_agreement.json"))
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import keras
    import numpy as np

    from kprune.data import load
    from kprune.io import atomic_write_json
    from kprune.models.lenet import lenet300_100
    C.require_tfmot()  # fail before training if the [compare] extra is missing

    t0 = time.time()
    keras.utils.set_random_seed(args.seed)
    base = lenet300_100((28, 28, 1), 10)
    base.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(load("fashion_mnist", "train", batch_size=args.batch_size, seed=args.seed),
             epochs=args.pretrain_epochs, verbose=0)
    steps = args.end_step + args.frequency + 1
    batches = load("fashion_mnist", "train", batch_size=args.batch_size, seed=args.seed + 1, take=steps * args.batch_size)

    def masks_per_batch(lib, s):
        model, callbacks, read, base_cls = twins(base, s, args.end_step, args.frequency, "sgd", 0.0)[lib]
        seen = []

        class Read(base_cls):
            def on_train_batch_end(self, batch, logs=None):
                seen.append(read())

        model.fit(batches, epochs=1, verbose=0, callbacks=callbacks + [Read()])
        return seen

    def differ(a, b):
        return int(sum(np.sum(x != y) for x, y in zip(a, b)))

    def sparsity(ms):
        return float(sum(np.sum(x == 0) for x in ms) / sum(x.size for x in ms))

    out = {"args": vars(args), "machine": C.machine(), "kprune_commit": C.revision(), "sparsities": {}}
    print(f"machine: {C.machine()}\nkprune: commit {C.revision()}")
    for s in args.sparsity:
        km, tm = masks_per_batch("kprune", s), masks_per_batch("tfmot", s)
        rows = []
        for step in range(min(len(km), len(tm))):
            nxt = km[step + 1] if step + 1 < len(km) else None
            rows.append({"step": step, "kprune_sparsity": sparsity(km[step]), "tfmot_sparsity": sparsity(tm[step]),
                         "differ_same_step": differ(km[step], tm[step]),
                         "differ_kprune_next_step": None if nxt is None else differ(nxt, tm[step])})
        out["sparsities"][f"{s:g}"] = rows
        final = rows[-1]
        changes = [r for r in rows if r["step"] == 0 or r["tfmot_sparsity"] != rows[r["step"] - 1]["tfmot_sparsity"]
                   or r["kprune_sparsity"] != rows[r["step"] - 1]["kprune_sparsity"]]
        print(f"\ntarget sparsity {s:g} (AGP 0 -> {s:g}, steps 0..{args.end_step} every {args.frequency}; "
              f"{sum(x.size for x in km[0])} kernel weights)")
        print(C.table(["after batch", "kprune sparsity", "TFMOT sparsity", "masks differ (same batch)",
                       "masks differ (kprune one batch later)"],
                      [[r["step"], f"{r['kprune_sparsity']:.4f}", f"{r['tfmot_sparsity']:.4f}", r["differ_same_step"],
                        "-" if r["differ_kprune_next_step"] is None else r["differ_kprune_next_step"]]
                       for r in changes]))
        print(f"final masks differ in {final['differ_same_step']} of {sum(x.size for x in km[0])} positions")
    if args.train_epochs:
        out["regrowth"] = regrowth(args, base, load)
    out["wall_seconds"] = time.time() - t0
    if args.json:
        atomic_write_json(args.json, out)
        print(f"raw results: {args.json}")
    return 0


def twins(base, s, end_step, frequency, optimizer, lr) -> dict:
    """The two pruned copies of ``base`` (AGP 0 → ``s``, steps 0..``end_step`` every
    ``frequency``), compiled with ``optimizer`` ("sgd" or "adam") at ``lr``:
    ``{"kprune": ..., "tfmot": ...}``, each ``(model, pruning callbacks, mask reader, callback base class)``;
    the reader returns the kernel masks of fc1, fc2 and predictions."""
    import keras
    import numpy as np

    import kprune
    from kprune.models.lenet import lenet300_100
    tf_keras, tfmot = C.require_tfmot()
    opt = {"sgd": "SGD", "adam": "Adam"}[optimizer]

    m = lenet300_100((28, 28, 1), 10)
    m.set_weights(base.get_weights())
    m = kprune.wrap(m, C.agp_level_recipe(s, end_step, frequency))
    m.compile(getattr(keras.optimizers, opt)(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    k = C.build(tf_keras, "lenet300_100")
    C.copy_weights(base, k)
    k = C.tfmot_polynomial(tfmot, k, s, end_step, frequency)
    k.compile(getattr(tf_keras.optimizers, opt)(lr), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layers = {l.layer.name: l for l in k.layers if hasattr(l, "pruning_vars")}
    return {
        "kprune": (m, [kprune.PruningCallback(log_layers=False)],
                   lambda: [np.asarray(m.get_layer(n).masks["kernel"]) for n in DENSE], keras.callbacks.Callback),
        "tfmot": (k, [tfmot.sparsity.keras.UpdatePruningStep()],
                  lambda: [np.asarray(layers[n].pruning_vars[0][1]) for n in DENSE], tf_keras.callbacks.Callback),
    }


def regrowth(args, base, load) -> dict:
    """Trains both libraries with Adam and counts pruned -> kept mask changes between batches."""
    import numpy as np

    print(f"\nregrowth check: Adam 1e-3, {args.train_epochs} epochs, AGP 0 -> s from step 0 to "
          f"{args.train_end_step} every {args.train_frequency} steps")
    out, rows = {}, []
    for s in args.sparsity:
        out[f"{s:g}"] = {}
        for lib, (model, callbacks, read, base_cls) in twins(base, s, args.train_end_step, args.train_frequency,
                                                             "adam", 1e-3).items():
            class Count(base_cls):
                prev, revived, pruned = None, 0, 0

                def on_train_batch_end(self, batch, logs=None):
                    cur = read()
                    if self.prev is not None:
                        self.revived += int(sum(np.sum((a == 0) & (b != 0)) for a, b in zip(self.prev, cur)))
                        self.pruned += int(sum(np.sum((a != 0) & (b == 0)) for a, b in zip(self.prev, cur)))
                    self.prev = cur

            count = Count()
            data = load("fashion_mnist", "train", batch_size=args.batch_size, seed=args.seed + 1)
            model.fit(data, epochs=args.train_epochs, verbose=0, callbacks=callbacks + [count])
            out[f"{s:g}"][lib] = {"revived": count.revived, "pruned": count.pruned}
            rows.append([f"{s:g}", {"kprune": "kprune", "tfmot": "TFMOT"}[lib], count.pruned, count.revived])
    print(C.table(["target", "library", "positions pruned (kept -> pruned)", "positions revived (pruned -> kept)"], rows))
    return out


if __name__ == "__main__":
    sys.exit(main())
