"""Lottery ticket (Frankle & Carbin 2019): iterative pruning with rewinding, around ``model.fit``.

Two ways to run it, both from a recipe whose schedule is
``{name: iterative, rounds: R, rewind: init | {step: k}}``:

1. Inside one ``fit``: give the schedule a phase length (``round_epochs: E``) and train for
   ``(R + 1) * E`` epochs with :class:`kprune.PruningCallback`; at the start of each phase
   after the first, masks are recomputed, survivors rewound and the optimizer reset.
2. Round by round with :class:`LotteryTicket` (the documented loop for ``model.fit`` users)::

       model = kprune.wrap(model, recipe)
       model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
       ticket = kprune.LotteryTicket(model)            # rewind point: these weights (init)
       for r in range(ticket.rounds + 1):
           model.fit(ds, epochs=E, callbacks=[ticket.callback()])
           if r < ticket.rounds:
               ticket.next_round()   # prune 1-(1-P)^(1/R) of survivors, rewind, reset optimizer

The rewind point is kept by the :class:`kprune.Pruner` (see :mod:`kprune.pruning.rewind`).
"""

from __future__ import annotations

from kprune.callbacks.pruning_callback import PruningCallback
from kprune.errors import KPruneError
from kprune.pruning.pruner import Pruner


class LotteryTicket:
    """Drives lottery-ticket rounds around ``model.fit``.

    Args:
        model: a wrapped model whose recipe uses ``schedule: {name: iterative, ...}``.
        data: dataset for data-driven criteria (default None; magnitude needs none).

    Attributes:
        pruner: the :class:`kprune.Pruner` (its ``rewind_weights`` is the rewind point).
        rounds: number of pruning rounds.

    Example:
        >>> ticket = LotteryTicket(model)
        >>> model.fit(x, y, epochs=1, callbacks=[ticket.callback()])
        >>> ticket.next_round()          # rounds: 5, sparsity: 0.9 -> 1 - 0.1 ** (1 / 5)
        0.36904265551980675
    """

    def __init__(self, model, data=None):
        self.pruner = Pruner(model, data=data)
        if self.pruner.schedule.name != "iterative":
            raise KPruneError("kprune.LotteryTicket needs `prune.schedule: {name: iterative, rounds: R}`. "
                              f"Received: schedule `{self.pruner.schedule.name}`.")
        if self.pruner.schedule.rewind_step == self.pruner.step:
            self.pruner.snapshot()

    @property
    def rounds(self) -> int:
        return self.pruner.schedule.rounds

    @property
    def round(self) -> int:
        return self.pruner.round

    def callback(self):
        """A :class:`kprune.PruningCallback` sharing this ticket's pruner (it counts steps and
        takes the late-rewinding snapshot at step k)."""
        cb = PruningCallback()
        cb.pruner = self.pruner
        return cb

    def next_round(self, optimizer="auto") -> float:
        """Prunes to the next round's target, rewinds survivors and resets the optimizer.

        Returns:
            The target sparsity of the selected layers after this round.
        """
        if self.pruner.rewind_weights is None:
            raise KPruneError(f"no rewind point yet: late rewinding to step {self.pruner.schedule.rewind_step} "
                              f"needs training to reach that step first (now at {self.pruner.step}).")
        return self.pruner.next_round(optimizer)
