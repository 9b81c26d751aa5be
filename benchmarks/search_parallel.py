"""Search executors: wall time of one search in this process vs local worker processes vs Ray.

Trains a zoo model briefly on Fashion-MNIST (cached), then runs the same search (default:
sensitivity analysis with the default evaluator, validation accuracy on ``--eval-take``
examples; or NetAdapt with short-term fine-tuning) once per executor and checks that every
executor returns the same allocation, score and trajectory scores.

    python benchmarks/search_parallel.py --algorithm sensitivity --executors inprocess local:2 ray:2
    python benchmarks/search_parallel.py --algorithm netadapt --finetune-steps 5

Prints a markdown table and writes ``benchmarks/results/search_parallel_<algorithm>.json``.
The in-process run uses TensorFlow's default threads (all cores); workers get
``cores // workers`` threads each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _dense(args):
    import keras

    import kprune
    from kprune import data
    from kprune.models import training

    path = os.path.join(args.work, f"dense_{args.model}_{args.width}.keras")
    if os.path.exists(path):
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(0)
    model = kprune.models.get(args.model, input_shape=(28, 28, 1), num_classes=10, width=args.width)
    ds = data.load("fashion_mnist", split="train", batch_size=128, shuffle=True, seed=0, take=args.train_take,
                   validation_fraction=0.1)
    cfg = kprune.Recipe.from_dict({"train": {"epochs": args.epochs,
                                             "optimizer": {"name": "adam", "learning_rate": 0.002}}}).train
    training.compile_model(model, cfg, training.steps_in(ds), args.epochs)
    model.fit(ds, epochs=args.epochs, verbose=0)
    os.makedirs(args.work, exist_ok=True)
    model.save(path)
    return model


def _executor(spec: str, cores: int):
    from kprune.search.executor import InProcessExecutor, LocalExecutor, RayExecutor

    if spec == "inprocess":
        return InProcessExecutor()
    kind, workers = spec.split(":")
    workers = int(workers)
    threads = max(1, cores // workers)
    return LocalExecutor(workers, threads) if kind == "local" else RayExecutor(workers, threads)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", default="sensitivity", choices=("sensitivity", "netadapt"))
    p.add_argument("--executors", nargs="+", default=["inprocess", "local:2", "ray:2"])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--eval-take", type=int, default=1000)
    p.add_argument("--train-take", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--finetune-steps", type=int, default=5, help="NetAdapt's short-term fine-tuning")
    p.add_argument("--work", default="/tmp/kprune_search_parallel")
    args = p.parse_args()

    from kprune import search

    cores = os.cpu_count() or 1
    model = _dense(args)
    recipe = {"seed": 0, "data": {"name": "fashion_mnist", "batch_size": 128, "take": args.train_take},
              "finetune": {"epochs": 1, "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9}},
              "prune": {"criterion": "l1", "granularity": "filter", "round_to": 1,
                        "config_list": [{"op_types": ["Conv2D"], "sparsity": 0.5}]}}
    options = {"grid": [0.2, 0.4, 0.6, 0.8]} if args.algorithm == "sensitivity" else \
        {"step": 0.1, "finetune_steps": args.finetune_steps}
    rows, reference = [], None
    for spec in args.executors:
        load = os.getloadavg()[0]
        t0 = time.time()
        result = search.run(model, recipe, name=args.algorithm, constraint="flops", budget=args.budget,
                            eval_take=args.eval_take, verbose=0, executor=_executor(spec, cores), **options)
        seconds = time.time() - t0
        scores = [r["score"] for r in result.trajectory]
        if reference is None:
            reference = result
        same = (result.allocation == reference.allocation
                and max(abs(a - b) for a, b in zip(scores, [r["score"] for r in reference.trajectory])) <= 1e-6)
        rows.append({"executor": spec, "seconds": round(seconds, 1), "evaluations": result.evaluations,
                     "score": result.score, "same_as_first": bool(same), "loadavg_before": load})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["seconds"]
    print(f"\n{args.algorithm} on {args.model} width {args.width} (FLOPs budget {args.budget}, eval_take "
          f"{args.eval_take}), {cores} cores ({platform.processor() or platform.machine()})\n")
    print("| executor | wall s | evaluations | speedup vs first | same result |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['executor']} | {r['seconds']:.1f} | {r['evaluations']} | {base / r['seconds']:.2f}x | "
              f"{'yes' if r['same_as_first'] else 'NO'} |")
    path = os.path.join(os.path.dirname(__file__), "results", f"search_parallel_{args.algorithm}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "cores": cores, "rows": rows, "loadavg_after": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
