"""Recurrent layers (SimpleRNN, LSTM, GRU): counted; their channels are not prunable yet."""

from __future__ import annotations

import keras

from kprune.graph.layers.base import LayerRule, prod, register

L = keras.layers


class RecurrentRule(LayerRule):
    """The input and recurrent kernels are applied once per time step."""

    def macs(self, layer, in_shapes, out_shapes):
        steps = prod([in_shapes[0][1]], layer, "time")
        return [(layer.cell.kernel, None, steps), (layer.cell.recurrent_kernel, None, steps)]


for _cls in (L.LSTM, L.GRU, L.SimpleRNN):
    register(_cls, RecurrentRule())
