"""kprune's core on the JAX or PyTorch backend, run in a subprocess by test_core_backends.py.

Usage: KERAS_BACKEND=jax|torch python core_run.py OUT_DIR

TensorFlow is made unimportable first (as on a machine with only JAX or PyTorch installed;
Keras itself would otherwise import TensorFlow when it is installed, to recognise
tf.TensorShape in get_config), so any import of it by kprune's core path fails the run. Writes
OUT_DIR/result.json with the measured numbers, and OUT_DIR/deploy.keras, deploy_x.npy and
deploy_y.npy for the cross-backend deploy test.
"""

import json
import os
import sys

from no_tensorflow import block

block()

import numpy as np  # noqa: E402
import keras  # noqa: E402
import kprune  # noqa: E402
from kprune.models.training import accuracy  # noqa: E402
from kprune.pruning.pruner import Pruner  # noqa: E402

OUT = sys.argv[1]
BACKEND = keras.backend.backend()
result = {"backend": BACKEND}


def cnn(seed=0):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x = keras.Input((12, 12, 3))
    h = L.Conv2D(8, 3, padding="same", name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, L.Dense(10, name="fc")(h))


rng = np.random.default_rng(0)
X = rng.normal(size=(64, 12, 12, 3)).astype("float32")
Y = rng.integers(0, 10, 64)


def recipe(criterion="l1", granularity="filter", sparsity=0.5, schedule=None, **extra):
    return {"prune": {"criterion": criterion, "granularity": granularity,
                      "schedule": schedule or {"name": "oneshot"},
                      "config_list": [{"op_types": ["Conv2D"], "sparsity": sparsity}], **extra}}


def kernels(model):
    """{layer: (kernel, kernel mask)} of the wrapped Conv2D layers."""
    out = {}
    for w in kprune.wrappers.find_wrappers(model):
        if "kernel" in w.masks and w.spec:
            out[w.name] = (keras.ops.convert_to_numpy(w.layer.kernel), keras.ops.convert_to_numpy(w.masks["kernel"]))
    return out


def fit(model, epochs=2, callbacks=None):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y, batch_size=16, epochs=epochs, verbose=0,
                        callbacks=callbacks or [kprune.PruningCallback()])
    model.sparsity_history = history.history["sparsity"]
    return model


def record(tag, model):
    """Sparsity, pruned filters and the largest masked weight after training."""
    info = {}
    for name, (k, m) in kernels(model).items():
        pruned_filters = int(np.sum(np.all(m == 0, axis=(0, 1, 2))))
        info[name] = {"filters": int(k.shape[-1]), "pruned_filters": pruned_filters,
                      "zero_fraction": float(np.mean(m == 0)),
                      "max_abs_masked": float(np.max(np.abs(k[m == 0]), initial=0.0)),
                      "min_abs_kept": float(np.min(np.abs(k[m != 0]), initial=np.inf))}
    result[tag] = info


# 1. AGP, filter granularity (the recipe form): 4 steps per epoch, masks recomputed at every step,
#    final target at the start of epoch 3
agp = kprune.wrap(cnn(), recipe(schedule={"name": "agp", "start_epoch": 0, "end_epoch": 2, "frequency": 0.25}))


class BatchSparsity(keras.callbacks.Callback):
    """kprune.sparsity after every step, read mid-epoch (the live JAX state)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(kprune.sparsity(self.model)["total"])


per_step = BatchSparsity()
fit(agp, epochs=3, callbacks=[kprune.PruningCallback(), per_step])
result["agp_sparsity_by_step"] = per_step.seen
record("agp", agp)
result["agp_sparsity_by_epoch"] = agp.sparsity_history  # the callback's log after each epoch
result["agp_groups"] = len(kprune.groups(agp))
plain_macs = kprune.count(cnn()).macs
small = kprune.compact(agp)
masked_out = keras.ops.convert_to_numpy(agp(X, training=False))
small_out = keras.ops.convert_to_numpy(small(X, training=False))
result["compact_max_diff"] = float(np.max(np.abs(masked_out - small_out)))
result["macs"] = {"plain": int(plain_macs), "compact": int(kprune.count(small).macs)}
result["compact_filters"] = {l.name: int(l.filters) for l in small.layers if isinstance(l, keras.layers.Conv2D)}
agp.save(os.path.join(OUT, "wrapped.keras"))
small.save(os.path.join(OUT, "deploy.keras"))
loaded = keras.saving.load_model(os.path.join(OUT, "wrapped.keras"))
result["wrapped_reload_max_diff"] = float(np.max(np.abs(
    keras.ops.convert_to_numpy(loaded(X, training=False)) - masked_out)))
result["wrapped_reload_masks_equal"] = all(
    np.array_equal(m, kernels(loaded)[n][1]) for n, (_, m) in kernels(agp).items())
small_loaded = keras.saving.load_model(os.path.join(OUT, "deploy.keras"))
result["compact_reload_max_diff"] = float(np.max(np.abs(
    keras.ops.convert_to_numpy(small_loaded(X, training=False)) - small_out)))
np.save(os.path.join(OUT, "deploy_x.npy"), X[:8])
np.save(os.path.join(OUT, "deploy_y.npy"), small_out[:8])
dense = kprune.strip(agp)
result["strip_max_diff"] = float(np.max(np.abs(keras.ops.convert_to_numpy(dense(X, training=False)) - masked_out)))
result["strip_has_wrappers"] = any(isinstance(l, kprune.PruneWrapper) for l in dense.layers)

# 2. one-shot, single weights, the keyword short form
one = kprune.wrap(cnn(), sparsity=0.75, criterion="level", granularity="weight", op_types=["Conv2D"])
fit(one, epochs=1)
record("oneshot_level", one)

# 3. iterative (lottery ticket), 2 rounds of 2 epochs: rewinds and resets the optimizer mid-fit
it = kprune.wrap(cnn(), recipe("l2", sparsity=0.5, schedule={"name": "iterative", "rounds": 2,
                                                              "round_epochs": 1}))
fit(it, epochs=3)
record("iterative_l2", it)

# 3b. steps_per_execution=2 (the callback reads the optimizer's step count between calls), a
#     data-driven criterion inside fit (statistics on the synced weights), and LotteryTicket rounds
if BACKEND != "torch":  # Keras' PyTorch trainer requires steps_per_execution=1
    spe = kprune.wrap(cnn(), recipe(schedule={"name": "agp", "start_step": 0, "end_step": 6, "frequency": 1}))
    spe.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2)
    spe.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[kprune.PruningCallback()])
    record("steps_per_execution", spe)
tay = kprune.wrap(cnn(), recipe("taylor_fo", schedule={"name": "agp", "start_step": 0, "end_step": 3}))
fit(tay, epochs=1, callbacks=[kprune.PruningCallback(data=(X, Y))])
record("taylor_in_fit", tay)
lt = kprune.wrap(cnn(), recipe(schedule={"name": "iterative", "rounds": 2}))
lt.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
ticket = kprune.LotteryTicket(lt)
result["lottery_rounds"] = []
functions = []
for r in range(3):
    lt.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[ticket.callback()])
    functions.append(lt.train_function)
    if r < 2:
        result["lottery_rounds"].append(ticket.next_round())
record("lottery", lt)
result["train_function_reused"] = all(f is functions[0] for f in functions)  # traced once for 3 fits

# 3c. soft pruning (pruned filters keep training between updates) and slim's penalty in fit
soft = kprune.wrap(cnn(), recipe(schedule={"name": "agp", "start_step": 0, "end_step": 3}, soft=True))
fit(soft, epochs=1)
record("soft", soft)
slim = kprune.wrap(cnn(), {"prune": {"criterion": "slim", "granularity": "filter", "slim_lambda": 0.1,
                                     "schedule": {"name": "agp", "start_step": 2, "end_step": 3},
                                     "config_list": [{"op_names": ["c1"], "sparsity": 0.5}]}})
fit(slim, epochs=1)
record("slim_in_fit", slim)
result["slim_penalty_in_loss"] = len(slim.losses) > 0  # the λ·Σ|gamma| regularizer is in the loss
result["recalibrate_bn"] = int(kprune.recalibrate_bn(kprune.compact(slim), [(X[:16], Y[:16])]))

# 3d. attention heads: a MultiHeadAttention loses 2 of its 4 heads in fit, then compact
L = keras.layers
keras.utils.set_random_seed(0)
tx = keras.Input((6, 16))
h = L.LayerNormalization()(L.Add()([tx, L.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")(tx, tx)]))
h = L.Add()([h, L.Dense(16, name="mlp2")(L.Dense(32, activation="relu", name="mlp1")(h))])
tm = keras.Model(tx, L.Dense(3, name="fc")(L.GlobalAveragePooling1D()(h)))
TX = rng.normal(size=(32, 6, 16)).astype("float32")
th = kprune.wrap(tm, {"prune": {"criterion": "l1", "granularity": "head", "schedule": {"name": "oneshot"},
                                "config_list": [{"op_names": ["mha"], "sparsity": 0.5}]}})
th.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
th.fit(TX, Y[:32] % 3, batch_size=8, epochs=1, verbose=0, callbacks=[kprune.PruningCallback()])
ts = kprune.compact(th)
result["heads"] = {"kept": int(ts.get_layer("mha").num_heads), "macs": int(kprune.count(ts).macs),
                   "macs_plain": int(kprune.count(tm).macs),
                   "max_diff": float(np.max(np.abs(keras.ops.convert_to_numpy(ts(TX)) -
                                                   keras.ops.convert_to_numpy(th(TX)))))}

# 4. fit without the callback: a kprune error, not a raw one
bare = kprune.wrap(cnn(), sparsity=0.5, op_types=["Conv2D"])
bare.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
try:
    bare.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    result["no_callback_error"] = None
except kprune.KPruneError as e:
    result["no_callback_error"] = type(e).__name__
# a Pruner exists but fit has no callback: the masks cannot reach the stateless step (a new
# model: Keras leaves a model whose fit raised on JAX with its variables detached)
bare = kprune.wrap(cnn(), sparsity=0.5, op_types=["Conv2D"])
bare.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
Pruner(bare)
try:
    bare.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    result["no_callback_with_pruner_error"] = None
except kprune.KPruneError as e:
    result["no_callback_with_pruner_error"] = str(e)[:200]

# 5. every criterion, one-shot through Pruner.prune_now (slim reads the BatchNorm gamma after c1;
#    the data-driven ones collect activations / gradients on (X, Y) with JAX)
crits = {}
for crit, gran, layers in [("l1", "filter", None), ("l2", "filter", None), ("fpgm", "filter", None),
                           ("random", "filter", None), ("slim", "filter", ["c1"]), ("level", "weight", None),
                           ("l1", "2:4", ["c2"]), ("global_magnitude", "weight", None),
                           ("layerwise_magnitude", "weight", None), ("apoz", "filter", None),
                           ("mean_activation", "filter", None), ("taylor_fo", "filter", None),
                           ("snip", "weight", None), ("global_gradient_magnitude", "weight", None),
                           ("l1", "channel", ["c2"]), ("l2", "block", None)]:
    r = recipe(crit, gran, sparsity=0.5)
    if crit.startswith("global"):
        r["prune"]["scope"] = "global"
        r["prune"]["config_list"][0] = {"op_types": ["Conv2D"], "total_sparsity": 0.5}
    if layers:
        r["prune"]["config_list"][0] = {"op_names": layers, "sparsity": 0.5}
    m = kprune.wrap(cnn(), r)
    Pruner(m, data=(X, Y)).prune_now()
    ks = kernels(m)
    crits[f"{crit}/{gran}"] = {n: float(np.mean(mask == 0)) for n, (_, mask) in ks.items()}
    crits[f"{crit}/{gran}"]["zero_where_masked"] = all(np.all(k[mask == 0] == 0) for k, mask in ks.values())
result["criteria"] = crits

# 6. a hand-written training loop: on JAX jitted, the masks travelling with the state
#    (mask_values); on PyTorch eager, as Keras' guide writes it (backward, then optimizer.apply)
loop = kprune.wrap(cnn(), recipe())
Pruner(loop).on_step()  # one-shot: the masks are set before the first step
opt = keras.optimizers.Adam(1e-2)
opt.build(loop.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
if BACKEND == "jax":
    import jax  # noqa: E402
    from kprune.wrappers import stateless  # noqa: E402

    def loss_and_updates(tv, ntv, x, y):
        pred, ntv = loop.stateless_call(tv, ntv, x, training=True)
        return loss_fn(y, pred), ntv

    @jax.jit
    def train_step(tv, ntv, ov, x, y):
        (_, ntv), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(tv, ntv, x, y)
        with stateless.mask_values(loop, ntv):
            tv, ov = opt.stateless_apply(ov, grads, tv)
        return tv, ntv, ov

    tv = [v.value for v in loop.trainable_variables]
    ntv = [v.value for v in loop.non_trainable_variables]
    ov = [v.value for v in opt.variables]
    for i in range(0, 64, 16):
        tv, ntv, ov = train_step(tv, ntv, ov, X[i:i + 16], Y[i:i + 16])
    for v, value in zip(loop.trainable_variables, tv):
        v.assign(value)
else:
    import torch  # noqa: E402
    for i in range(0, 64, 16):
        loss = loss_fn(Y[i:i + 16], loop(X[i:i + 16], training=True))
        loop.zero_grad()
        loss.backward()
        with torch.no_grad():
            opt.apply([v.value.grad for v in loop.trainable_weights], loop.trainable_weights)
record("custom_loop", loop)
result["custom_loop_changed"] = bool(np.any(keras.ops.convert_to_numpy(loop.get_layer("c1").layer.kernel)
                                            != keras.ops.convert_to_numpy(kprune.wrap(cnn(), recipe())
                                                                          .get_layer("c1").layer.kernel)))

# 7. the statistics themselves, for the TensorFlow process to recompute on the same model
from kprune.pruning import statistics  # noqa: E402
base = cnn(seed=1)
base.save(os.path.join(OUT, "stats.keras"))
np.save(os.path.join(OUT, "stats_x.npy"), X)
np.save(os.path.join(OUT, "stats_y.npy"), Y)
acts = statistics.collect_activations(base, (X, Y), ["c1", "c2"], batches=2)
grads = statistics.collect_gradients(base, (X, Y), {"c1": base.get_layer("c1").kernel,
                                                    "c2": base.get_layer("c2").kernel}, batches=2)
np.savez(os.path.join(OUT, "stats.npz"), **{f"{n}_apoz": a.apoz for n, a in acts.items()},
         **{f"{n}_mean": a.mean for n, a in acts.items()}, **{f"{n}_grad": g.grad for n, g in grads.items()},
         **{f"{n}_gw2": g.gw2 for n, g in grads.items()})

# 8. without TensorFlow: the data pipeline reads the local Fashion-MNIST copy with numpy (when
#    installed), and TFLite export is a clear ExportError
if kprune.data.local.local_arrays("fashion_mnist", "test") is not None:
    train = kprune.data.load("fashion_mnist", "train", batch_size=32, take=128, augment="standard")
    test = kprune.data.load("fashion_mnist", "test", batch_size=64, take=128)
    keras.utils.set_random_seed(0)
    lenet = kprune.wrap(kprune.models.get("lenet5", input_shape=(28, 28, 1), num_classes=10),
                        sparsity=0.5, op_types=["Conv2D"])
    lenet.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = lenet.fit(train, epochs=2, verbose=0, callbacks=[kprune.PruningCallback()])
    result["numpy_data"] = {"type": type(train).__name__, "batches": len(train),
                            "sparsity": hist.history["sparsity"][-1],
                            "accuracy": accuracy(lenet, test),
                            "test_examples": sum(len(y) for _, y in test)}
try:
    kprune.export.to_tflite(small, os.path.join(OUT, "no_tf.tflite"))
    result["to_tflite_without_tensorflow"] = None
except kprune.errors.ExportError as e:
    result["to_tflite_without_tensorflow"] = str(e)

result["tensorflow_imported"] = "tensorflow" in sys.modules
with open(os.path.join(OUT, "result.json"), "w") as f:
    json.dump(result, f, indent=1)
print(json.dumps(result, indent=1))
