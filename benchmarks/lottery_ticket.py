"""Lottery ticket (Frankle & Carbin 2019) on LeNet-300-100 / Fashion-MNIST with ``kprune.LotteryTicket``.

For each seed, ``kprune.models.lenet300_100`` is wrapped with the level criterion (weight
granularity, layerwise) and ``schedule: {name: iterative, rounds: R, rewind: init}``:

* ``fc1`` and ``fc2`` go to ``--sparsity`` (default 0.96) in ``--rounds`` rounds (default 5):
  round r targets ``1 − (1 − P)^(r/R)``, i.e. each round prunes ``1 − (1 − P)^(1/R)`` of the
  surviving weights (47.5 % for 5 rounds to 96 %);
* the output layer is pruned at half that per-round rate, as in the paper (which prunes
  20 % of fc weights and 10 % of output weights per round).

Round 0 trains the dense model; after each round ``ticket.next_round()`` prunes the lowest
|w| of the trained weights, rewinds the survivors to their initial values (checked here:
every surviving weight equals its initial value exactly) and resets Adam; every round trains
``--epochs`` epochs on the 60,000 training images with the same batch order (Adam, lr
1.2e-3 as in the paper; batch 128). Test accuracy is measured on the 10,000 test images at
the end of each round.

With ``--control`` each pruned round is also trained from a *random re-initialization*
with the ticket's masks (the paper's control), which should fall behind at high sparsity.

Usage::

    python benchmarks/lottery_ticket.py [--seeds 0 1 2] [--epochs 3] [--control]
        [--json benchmarks/results/lottery_ticket.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/: also when imported by a test
from _results import mean_std_pct, write_json  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from criteria_sweep import host  # noqa: E402

FC = ("fc1", "fc2")


def recipe(args) -> dict:
    per_round = 1.0 - (1.0 - args.sparsity) ** (1.0 / args.rounds)
    out_sparsity = 1.0 - (1.0 - per_round / 2.0) ** args.rounds
    return {"prune": {"criterion": "level", "granularity": "weight", "scope": "layerwise",
                      "schedule": {"name": "iterative", "rounds": args.rounds, "rewind": "init"},
                      "config_list": [{"op_names": list(FC), "sparsity": args.sparsity},
                                      {"op_names": ["predictions"], "sparsity": round(out_sparsity, 6)}]}}


def compile_adam(model, lr):
    import keras
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False)
    return model


def kernels(model) -> dict:
    from kprune.wrappers.wrap import find_wrappers
    return {w.name: w.layer.kernel.numpy().copy() for w in find_wrappers(model)}


def train_eval(model, args, seed, test, callbacks=()) -> float:
    from kprune.data import load
    train = load("fashion_mnist", "train", batch_size=args.batch_size, seed=seed + 1)  # same order every round
    model.fit(train, epochs=args.epochs, verbose=0, callbacks=list(callbacks))
    return float(model.evaluate(test, verbose=0)[1])


def run_seed(seed, args, test) -> dict:
    import keras
    import numpy as np

    import kprune
    from kprune.wrappers.wrap import find_wrappers

    keras.utils.set_random_seed(seed)
    model = kprune.wrap(kprune.models.get("lenet300_100", input_shape=(28, 28, 1), num_classes=10), recipe(args))
    compile_adam(model, args.lr)
    init = kernels(model)
    ticket = kprune.LotteryTicket(model)
    rounds = []
    for r in range(ticket.rounds + 1):
        t = time.time()
        sp = kprune.sparsity(model)
        acc = train_eval(model, args, seed, test, [ticket.callback()])
        row = {"round": r, "sparsity_fc": float(np.mean([sp[n] for n in FC])) if r else 0.0,
               "sparsity": {k: float(v) for k, v in sp.items()}, "accuracy": acc,
               "seconds": time.time() - t}
        masks = {w.name: w.masks["kernel"].numpy().copy() for w in find_wrappers(model)}
        if args.control and r > 0:
            t = time.time()
            keras.utils.set_random_seed(10_000 + seed * 100 + r)
            ctrl = kprune.wrap(kprune.models.get("lenet300_100", input_shape=(28, 28, 1), num_classes=10),
                               recipe(args))
            for w in find_wrappers(ctrl):
                w.set_mask("kernel", masks[w.name])
            row["accuracy_random_reinit"] = train_eval(compile_adam(ctrl, args.lr), args, seed, test)
            row["seconds_control"] = time.time() - t
        rounds.append(row)
        print(f"seed {seed}: round {r} kernel sparsity total {sp['total']:.4f} (fc1 {sp['fc1']:.4f}, fc2 "
              f"{sp['fc2']:.4f}, out {sp['predictions']:.4f}): ticket {acc:.4f}"
              + (f", random re-init {row['accuracy_random_reinit']:.4f}" if "accuracy_random_reinit" in row else "")
              + f" ({row['seconds']:.0f} s)", flush=True)
        if r < ticket.rounds:
            ticket.next_round()
            for w in find_wrappers(model):  # survivors rewound exactly to their initial values
                name, k, keep = w.name, w.layer.kernel.numpy(), w.masks["kernel"].numpy() != 0
                if not np.array_equal(k[keep], init[name][keep]) or np.any(k[~keep] != 0):
                    raise SystemExit(f"seed {seed} round {r + 1}: {name} survivors are not rewound to init")
    return {"seed": seed, "rounds": rounds}


ms = mean_std_pct


def table(results) -> str:
    seeds = results["seeds"]
    control = results["settings"]["control"]
    head = "| round | fc1/fc2 sparsity | all kernels sparsity | weights left | ticket acc. (%) | Δ vs dense (pts) |"
    head += " random re-init acc. (%) |" if control else ""
    lines = [head, "|" + "---|" * (7 if control else 6)]
    dense = [s["rounds"][0]["accuracy"] for s in seeds]
    for r in range(len(seeds[0]["rounds"])):
        rows = [s["rounds"][r] for s in seeds]
        total = statistics.fmean(x["sparsity"]["total"] for x in rows)
        delta = statistics.fmean(x["accuracy"] - d for x, d in zip(rows, dense))
        line = (f"| {r} | {statistics.fmean(x['sparsity_fc'] for x in rows):.3f} | {total:.3f} | "
                f"{100 * (1 - total):.1f} % | {ms(x['accuracy'] for x in rows)} | {100 * delta:+.2f} |")
        if control:
            line += (f" {ms(x['accuracy_random_reinit'] for x in rows)} |" if r else " — |")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sparsity", type=float, default=0.96)
    p.add_argument("--epochs", type=int, default=3, help="training epochs per round")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1.2e-3)
    p.add_argument("--control", action="store_true", help="also train random re-initializations")
    p.add_argument("--json", default="benchmarks/results/lottery_ticket.json")
    args = p.parse_args(argv)
    from kprune.data import load

    start = host()
    print(f"machine: {start}", flush=True)
    t0 = time.time()
    test = load("fashion_mnist", "test", batch_size=1000, shuffle=False)
    seeds = [run_seed(s, args, test) for s in args.seeds]
    results = {"benchmark": "lottery_ticket", "settings": vars(args) | {"recipe": recipe(args)},
               "machine": start, "uptime_after": host()["uptime"], "wall_seconds": time.time() - t0,
               "seeds": seeds}
    write_json(args.json, results)
    print()
    print(table(results))
    print(f"\nwall time {results['wall_seconds'] / 60:.1f} min; load before: {start['uptime']}; "
          f"after: {results['uptime_after']}; raw JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
