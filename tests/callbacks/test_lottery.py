import keras
import numpy as np
import pytest

import kprune
from kprune import schedules
from kprune.callbacks.lottery import LotteryTicket
from kprune.pruning.rewind import load_snapshot, save_snapshot


def mlp():
    inp = keras.Input((10,))
    h = keras.layers.Dense(16, activation="relu", name="d1")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="d2")(h))


def recipe(rounds=2, rewind="init", **extra):
    return {"prune": {"criterion": "level", "schedule": {"name": "iterative", "rounds": rounds, "rewind": rewind,
                                                         **extra},
                      "config_list": [{"op_types": ["Dense"], "sparsity": 0.75}]}}


def data(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 10)).astype("float32"), rng.integers(0, 3, n)


def test_iterative_curve_matches_formula():
    s = schedules.get({"name": "iterative", "rounds": 4, "round_steps": 10}).bind(None)
    assert [t for t in range(100) if s.updates_at(t)] == [10, 20, 30, 40]
    for t in range(0, 60):
        r = min(4, t // 10)
        assert s.sparsity(t, 0.9) == pytest.approx(1 - 0.1 ** (r / 4))
    # each round prunes the same fraction of the survivors: 1 - (1 - P) ** (1 / rounds)
    survivors = [1 - s.sparsity(t, 0.9) for t in (0, 10, 20, 30, 40)]
    np.testing.assert_allclose(np.array(survivors[1:]) / survivors[:-1], 0.1 ** 0.25)
    e = schedules.get({"name": "iterative", "rounds": 2, "round_epochs": 1.5}).bind(4)
    assert [t for t in range(20) if e.updates_at(t)] == [6, 12]
    assert schedules.get({"name": "iterative"}).bind(None).updates_at(5) is False
    with pytest.raises(kprune.RecipeError, match="rewind"):
        schedules.get({"name": "iterative", "rewind": "late"})
    assert schedules.get({"name": "iterative", "rewind": {"step": 3}}).rewind_step == 3


def test_lottery_ticket_rounds_rewind_to_init_exactly():
    x, y = data()
    model = kprune.wrap(mlp(), recipe())
    init = {n: model.get_layer(n).layer.kernel.numpy().copy() for n in ("d1", "d2")}
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    ticket = LotteryTicket(model)
    for r in range(ticket.rounds):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ticket.callback()])
        trained = {n: model.get_layer(n).layer.kernel.numpy().copy() for n in init}
        target = ticket.next_round()
        assert target == pytest.approx(1 - 0.25 ** ((r + 1) / 2))
        for n in init:
            k = model.get_layer(n).layer.kernel.numpy()
            mask = model.get_layer(n).masks["kernel"].numpy()
            np.testing.assert_array_equal(k[mask == 1], init[n][mask == 1])   # survivors: initial values
            assert np.all(k[mask == 0] == 0)
            assert np.mean(mask == 0) == pytest.approx(target, abs=0.01)
            # newly pruned weights had the smallest trained magnitudes among the survivors
            newly = (mask == 0) & (trained[n] != 0)
            assert np.abs(trained[n][mask == 1]).min() >= np.abs(trained[n][newly]).max()
        assert int(model.optimizer.iterations.numpy()) == 0
        assert all(np.all(v.numpy() == 0) for v in model.optimizer.variables if "momentum" in v.path)
    assert ticket.round == 2
    with pytest.raises(kprune.KPruneError, match="rounds are done"):
        ticket.next_round()


def test_iterative_inside_one_fit_and_late_rewinding():
    x, y = data(24)                                  # 3 steps per epoch at batch size 8
    model = kprune.wrap(mlp(), recipe(rounds=2, rewind={"step": 1}, round_epochs=1))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    seen = {}

    class Probe(keras.callbacks.Callback):
        step = 0

        def on_train_batch_begin(self, batch, logs=None):
            k = self.model.get_layer("d1").layer.kernel.numpy().copy()
            m = self.model.get_layer("d1").masks["kernel"].numpy().copy()
            seen[self.step] = (k, m)
            self.step += 1

    cb = kprune.PruningCallback()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[cb, Probe()])
    at_k = seen[1][0]                                # weights after one training step (rewind point)
    for step, target in ((3, 0.5), (6, 0.75)):       # rounds start at steps 3 and 6
        k, m = seen[step]
        assert np.mean(m == 0) == pytest.approx(target)
        np.testing.assert_array_equal(k[m == 1], at_k[m == 1])
        assert np.all(k[m == 0] == 0)
    assert int(model.optimizer.iterations.numpy()) == 1 + 3   # reset to the rewind step at step 6, then 3 steps
    assert kprune.sparsity(model)["d1"] == pytest.approx(0.75)


def test_iterative_with_several_steps_per_call():
    """steps_per_execution 3 = one epoch per call: rounds at steps 3 and 6, the rewind point
    (step 1, inside the first call) is taken at that call's start."""
    x, y = data(24)
    keras.utils.set_random_seed(0)
    model = kprune.wrap(mlp(), recipe(rounds=2, rewind={"step": 1}, round_epochs=1))
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", steps_per_execution=3)
    start = model.get_layer("d1").layer.kernel.numpy().copy()
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append((self.model.get_layer("d1").layer.kernel.numpy().copy(),
                         self.model.get_layer("d1").masks["kernel"].numpy().copy()))

    cb = kprune.PruningCallback()
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[cb, Probe()])
    assert cb.pruner.step == 9 and cb.pruner.round == 2
    for (k, m), target in zip(seen[1:], (0.5, 0.75)):
        assert np.mean(m == 0) == pytest.approx(target)
        np.testing.assert_array_equal(k[m == 1], start[m == 1])  # rewound to the call's start
    assert int(model.optimizer.iterations.numpy()) == 1 + 3
    assert kprune.sparsity(model)["d1"] == pytest.approx(0.75)


def test_snapshot_file_round_trip(tmp_path):
    model = kprune.wrap(mlp(), recipe())
    ticket = LotteryTicket(model)
    save_snapshot(ticket.pruner.rewind_weights, tmp_path / "rewind.npz")
    again = load_snapshot(tmp_path / "rewind.npz")
    assert len(again) == len(ticket.pruner.rewind_weights)
    for a, b in zip(again, ticket.pruner.rewind_weights):
        np.testing.assert_array_equal(a, b)


def test_lottery_ticket_needs_the_iterative_schedule():
    model = kprune.wrap(mlp(), {"prune": {"criterion": "level", "config_list": [{"op_types": ["Dense"],
                                                                                 "sparsity": 0.5}]}})
    with pytest.raises(kprune.KPruneError, match="iterative"):
        LotteryTicket(model)


def test_rewind_without_a_snapshot_explains_how_to_restore_one():
    model = kprune.wrap(mlp(), recipe())
    pruner = kprune.Pruner(model)
    pruner.step = 5
    pruner.rewind_weights = None
    with pytest.raises(kprune.KPruneError, match="load_snapshot"):
        pruner.rewind()
