"""The deploy half of the cross-backend test, run in a subprocess by test_core_backends.py.

Usage: KERAS_BACKEND=tensorflow|jax|torch python tf_deploy_run.py OUT_DIR

Loads the model that core_run.py pruned, compacted and saved under JAX or PyTorch, converts it
with kprune.export.to_tflite and runs the .tflite file on that run's inputs. Under TensorFlow it
also recomputes the activation and gradient statistics of stats.keras (stats.npz holds the
other backend's). Under JAX or PyTorch (TensorFlow installed: the converter needs it) it shows
that export also works from that backend's process. Writes OUT_DIR/<backend>_deploy.json.
"""

import json
import os
import sys

import numpy as np
import keras
import kprune
from kprune.export import predict_tflite, to_tflite
from kprune.pruning import statistics

OUT = sys.argv[1]
result = {"backend": keras.backend.backend()}
model = keras.saving.load_model(os.path.join(OUT, "deploy.keras"))
x, y_src = np.load(os.path.join(OUT, "deploy_x.npy")), np.load(os.path.join(OUT, "deploy_y.npy"))
result["keras_max_diff"] = float(np.max(np.abs(keras.ops.convert_to_numpy(model(x, training=False)) - y_src)))
path = os.path.join(OUT, f"deploy_{keras.backend.backend()}.tflite")
to_tflite(model, path)
result["tflite_bytes"] = os.path.getsize(path)
result["tflite_max_diff"] = float(np.max(np.abs(predict_tflite(path, x) - y_src)))
result["macs"] = int(kprune.count(model).macs)

if keras.backend.backend() != "tensorflow":
    with open(os.path.join(OUT, f"{keras.backend.backend()}_deploy.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    sys.exit(0)
base = keras.saving.load_model(os.path.join(OUT, "stats.keras"))
X, Y = np.load(os.path.join(OUT, "stats_x.npy")), np.load(os.path.join(OUT, "stats_y.npy"))
acts = statistics.collect_activations(base, (X, Y), ["c1", "c2"], batches=2)
grads = statistics.collect_gradients(base, (X, Y), {"c1": base.get_layer("c1").kernel,
                                                    "c2": base.get_layer("c2").kernel}, batches=2)
src_stats = np.load(os.path.join(OUT, "stats.npz"))
tf_stats = {**{f"{n}_apoz": a.apoz for n, a in acts.items()}, **{f"{n}_mean": a.mean for n, a in acts.items()},
            **{f"{n}_grad": g.grad for n, g in grads.items()}, **{f"{n}_gw2": g.gw2 for n, g in grads.items()}}
result["stats_keys"] = sorted(tf_stats)
result["stats_max_rel_diff"] = {
    k: float(np.max(np.abs(v - src_stats[k])) / max(float(np.max(np.abs(v))), 1e-12)) for k, v in tf_stats.items()}
with open(os.path.join(OUT, "tensorflow_deploy.json"), "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result, indent=1))
