"""What kprune knows about each layer family: one module per family, one registry.

============  ===========================================================================
module        families
============  ===========================================================================
conv          Conv1D/2D/3D (grouped too), Conv*Transpose, DepthwiseConv*, SeparableConv*
dense         Dense, EinsumDense, Embedding
norm          BatchNormalization, GroupNormalization, LayerNormalization and friends,
              Normalization, LayerScale
elementwise   activations, merges, dropout/noise, pooling/padding/resizing, PReLU,
              Rescaling, Softmax, element-wise ``keras.ops`` nodes
shape         Concatenate, Flatten/Reshape, Permute, global pooling
attention     Dot, MultiHeadAttention (counting)
recurrent     SimpleRNN, LSTM, GRU (counting)
hub           keras-hub blocks: ViTEncoder, GemmaDecoderBlock, LlamaTransformerDecoder
============  ===========================================================================

The graph walk (:mod:`kprune.graph.analysis`), ``compact`` (:mod:`kprune.graph.surgery`), the
wrappers (which weights are masked, which layers may be selected) and the activation
statistics ask :func:`rule_for` instead of keeping tables of their own. Anything without a
rule — a weightless layer or ``keras.ops`` node (slicing, reductions, transposes) — gets its
channel mapping derived by running it, or is reported unprunable with the reason.

Teach kprune a custom layer with :func:`register` (``kprune.layers.register``); see
``docs/layers.md``.
"""

from kprune.graph.layers import (attention, conv, dense, elementwise, hub, norm,  # noqa: F401  (registration)
                                 recurrent, shape)
from kprune.graph.layers.base import (KERNEL_WEIGHTS, Ctx, LayerRule, Sizes, channel_sources, is_prunable,
                                      masked_weights, prod, prunable_types, register, rule_for, shapes_of,
                                      spatial)
from kprune.graph.layers.dense import einsum_axes

__all__ = ["Ctx", "KERNEL_WEIGHTS", "LayerRule", "Sizes", "channel_sources", "einsum_axes", "is_prunable",
           "masked_weights", "prod", "prunable_types", "register", "rule_for", "shapes_of", "spatial"]
