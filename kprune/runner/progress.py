"""What the pipeline prints while it runs: stage headers, ``Epoch k/N`` lines, the sparsity note.

The pipeline trains one ``fit`` call per epoch (each epoch reads the dataset shuffled with
``seed + epoch`` and ends with a checkpoint, so a resumed run sees the same batches). Keras'
own progress bar would then print ``Epoch k/k`` (or nothing for the first epoch);
:class:`EpochProgbar` prints ``Epoch k/N`` of the whole stage instead, a live bar on a
terminal and one line per epoch otherwise, and keeps per-layer ``sparsity/<layer>`` entries
off the console (they stay in ``log.jsonl`` and TensorBoard).
"""

from __future__ import annotations

import sys

import keras
from keras.src.utils.io_utils import print_msg
import numpy as np

HIDDEN_PREFIXES = ("sparsity/",)


def console_verbose() -> int:
    """Keras' ``verbose`` for ``fit``: 1 (a live bar) on a terminal, 2 (one line per epoch) otherwise."""
    isatty = getattr(sys.stdout, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def stage(number: int, total: int, title: str, detail: str = "", verbose: int = 1) -> None:
    """Prints a stage header such as ``[2/6] pruning: one-shot, l1 filter``."""
    if verbose:
        print(f"\n[{number}/{total}] {title}" + (f": {detail}" if detail else ""), flush=True)


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar with the stage's epoch count and without per-layer entries.

    Args:
        epochs: the stage's total number of epochs (shown as ``Epoch k/epochs``).
        hidden: prefixes of ``logs`` keys left off the console (default ``("sparsity/",)``).

    Example:
        >>> model.fit(ds, initial_epoch=2, epochs=3, callbacks=[EpochProgbar(epochs=5)], verbose=2)
        Epoch 3/5
        ...
    """

    def __init__(self, epochs: int, hidden=HIDDEN_PREFIXES):
        super().__init__()
        self.total_epochs = int(epochs)
        self.hidden = tuple(hidden)

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose:
            print_msg(f"Epoch {epoch + 1}/{self.total_epochs}")

    def _shown(self, logs):
        return {k: v for k, v in (logs or {}).items() if not k.startswith(self.hidden)}

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch, self._shown(logs))

    def _finalize_progbar(self, logs):
        super()._finalize_progbar(self._shown(logs))


def selected_unit_sparsity(model) -> dict:
    """For each layer the recipe selected: the fraction of its units (filters, channels, or single
    weights for ``granularity: weight``) that are pruned, i.e. what the recipe's ``sparsity``
    targets.

    :func:`kprune.sparsity` instead counts zeros in every wrapped kernel, coupled layers
    included: a layer that loses half its filters *and* half its input channels (because the
    layer before it lost half its filters) is 75 % zeros, and so is the total.

    Returns:
        ``{layer_name: fraction}`` for the wrappers that carry a recipe target.
    """
    from kprune.graph.masks import channel_mask_from_weights
    from kprune.wrappers.wrap import find_wrappers, sparsity

    selected = {w.name: w for w in find_wrappers(model) if w.spec}
    structured = {n for n, w in selected.items() if w.spec.get("granularity", "weight") in ("filter", "channel")}
    out = {}
    own = sparsity(model)
    for name in set(selected) - structured:
        out[name] = own.get(name, 0.0)
    if structured:
        from kprune import graph

        cache: dict = {}
        for g in graph.groups(model):
            producers = {m.layer.name for m in g.members if m.role == "producer"} & structured
            if not producers or not g.size:
                continue
            removed = float(np.mean(channel_mask_from_weights(g, cache=cache)))
            for name in producers:
                out[name] = max(out.get(name, 0.0), removed)
    return {n: out[n] for n in selected if n in out}


def sparsity_note(model, round_to=1) -> str:
    """Two lines that tell the recipe's per-layer target from the total ``sparsity`` in the logs
    (``round_to``: the recipe's, named when it moved the pruned fraction off the target)."""
    from kprune.wrappers.wrap import sparsity

    from kprune.wrappers.wrap import find_wrappers

    specs = [w.spec for w in find_wrappers(model) if w.spec]
    targets = sorted({s["sparsity"] for s in specs if s.get("sparsity") is not None}
                     | {s["total_sparsity"] for s in specs if s.get("total_sparsity") is not None})
    structured = any(s.get("granularity") in ("filter", "channel") for s in specs)
    units = selected_unit_sparsity(model)
    total = sparsity(model)["total"]
    lines = []
    if units:
        values = np.array(list(units.values()))
        unit = "filters/channels" if structured else "weights"
        lines.append(f"pruned {unit} of the {len(units)} selected layer(s): {values.min():.4f}"
                     + ("" if np.ptp(values) < 5e-5 else f" to {values.max():.4f}")
                     + (f" (recipe sparsity {', '.join(f'{t:g}' for t in targets)}"
                        + (f"; kept channel counts rounded by round_to: {round_to}, 1 keeps them exact"
                           if structured and round_to != 1 and any(abs(v - t) > 5e-5 for v in values for t in targets)
                           else "") + ")" if targets else ""))
    lines.append(f"sparsity {total:.4f} = zeros in all wrapped kernels"
                 + (", coupled layers included (the next layers' input channels lose their weights "
                    "too), so it is higher than the recipe's per-layer target" if structured else ""))
    return "\n".join(lines)
