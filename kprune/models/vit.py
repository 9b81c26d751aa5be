"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28x28 / 32x32 images.

Layout (pre-norm, as in the paper's ViT and timm's ``VisionTransformer`` without the class
token)::

    patch_embed   Conv2D(dim, patch, stride patch)        28x28x1 -> 7x7xdim (patch 4)
    tokens        Reshape                                  -> (49, dim)
    pos_embed     Embedding(49, dim) of the positions 0..48, added (learned, one row per token)
    block{i}      x = x + attn(ln1(x))                     MultiHeadAttention, self-attention
                  x = x + mlp_down(mlp_up(ln2(x)))         Dense(mlp, gelu) -> Dense(dim)
    ln_final      LayerNormalization
    pool          GlobalAveragePooling1D over the tokens
    predictions   Dense(num_classes)                       logits

Layer names: ``patch_embed``, ``tokens``, ``pos_embed``, ``pos_add``, then per block
``block{i}_ln1``, ``block{i}_attn``, ``block{i}_add1``, ``block{i}_ln2``, ``block{i}_mlp_up``,
``block{i}_mlp_down``, ``block{i}_add2`` (blocks counted from 1), then ``ln_final``, ``pool``,
``predictions``.

Only layers kprune analyses are used, so ``kprune.groups`` reports each block's heads
(``granularity: head`` on ``block{i}_attn``) and its MLP units (``granularity: filter`` on
``block{i}_mlp_up``) as prunable groups, and the residual stream (``dim`` channels, normalised
by LayerNormalization) as unprunable. The position ids are computed from the input with
``keras.ops`` (a cumulative sum of ones over one pixel per patch), so the model stays one
functional graph of Keras layers.

Initialisation (``init="reference"``) is the paper's (Google's ``vision_transformer`` code):
Dense and attention kernels ``xavier_uniform`` (Keras' ``glorot_uniform``) with zero biases (the
classifier too, where the paper's fine-tuning head starts at zero), the
patch embedding LeCun normal, the position embedding N(0, 0.02²). ``init="torch"`` gives
every Dense and convolution PyTorch's layer default U(±1/sqrt(fan_in)); ``init="keras"`` is
Keras' defaults throughout.
"""

from __future__ import annotations

import keras

from kprune.errors import KPruneError
from kprune.models.initializers import check_scheme, fans, rule_initializers
from kprune.models.registry import register, scale

_LN = {"epsilon": 1e-6}


def _kernel_init(init: str, fan_in: int, fan_out: int, kind: str = "dense") -> dict:
    if init == "torch":
        return rule_initializers("torch_default", fan_in, fan_out)
    if init == "reference" and kind == "patch":
        return {"kernel_initializer": "lecun_normal", "bias_initializer": "zeros"}
    return {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}


@register("vit")
def vit(input_shape=(28, 28, 1), num_classes=10, width=1.0, patch_size=4, dim=64, heads=4, mlp_dim=128,
        depth=4, init="reference"):
    """A small pre-norm ViT: patch embedding, ``depth`` attention + MLP blocks, mean-pooled tokens.

    Args:
        input_shape: ``(height, width, channels)``, default ``(28, 28, 1)``; height and width
            must be multiples of ``patch_size``.
        num_classes: output units, default 10.
        width: multiplier on ``heads`` and ``mlp_dim`` (the units kprune prunes); the head size
            ``dim // heads`` and the residual width ``dim`` stay fixed, so ``width=0.5`` is the
            architecture that pruning half of the heads and MLP units leaves.
        patch_size: side of the square patches (default 4: 7x7 = 49 tokens at 28x28).
        dim: residual (token) width, default 64.
        heads: attention heads per block, default 4 (head size ``dim // heads`` = 16).
        mlp_dim: hidden units of each MLP, default 128.
        depth: number of blocks, default 4.
        init: ``"reference"`` (default, the paper's), ``"torch"`` or ``"keras"``.

    Returns:
        A functional ``keras.Model`` named ``"vit"`` (logits, no softmax).

    Example:
        >>> model = vit((28, 28, 1), 10)
        >>> model.get_layer("block1_attn").num_heads, model.get_layer("block1_mlp_up").units
        (4, 128)
    """
    check_scheme(init)
    h, w, c = (int(d) for d in input_shape)
    if dim % heads or h % patch_size or w % patch_size:
        raise KPruneError(
            "The ViT needs `dim` divisible by `heads` and image sides divisible by `patch_size`. "
            f"Received: dim={dim}, heads={heads}, input_shape={tuple(input_shape)}, patch_size={patch_size}")
    head_dim = dim // heads
    n_heads, n_mlp = scale(heads, width), scale(mlp_dim, width)
    n_tokens = (h // patch_size) * (w // patch_size)
    inputs = keras.Input(shape=(h, w, c), name="input")
    x = keras.layers.Conv2D(dim, patch_size, strides=patch_size, name="patch_embed",
                            **_kernel_init(init, *fans(patch_size, c, dim), kind="patch"))(inputs)
    x = keras.layers.Reshape((n_tokens, dim), name="tokens")(x)
    # position ids 0..n_tokens-1 per example, derived from the input (one pixel per patch), so
    # that they are part of the graph and the residual channels are not sliced
    grid = keras.ops.reshape(inputs[:, ::patch_size, ::patch_size, 0], (-1, n_tokens))
    positions = keras.ops.cumsum(keras.ops.ones_like(grid, dtype="int32"), axis=1) - 1
    pos_init = keras.initializers.RandomNormal(0.0, 0.02) if init == "reference" else (
        keras.initializers.RandomNormal(0.0, 1.0) if init == "torch" else "uniform")
    pos = keras.layers.Embedding(n_tokens, dim, embeddings_initializer=pos_init, name="pos_embed")(positions)
    x = keras.layers.Add(name="pos_add")([x, pos])
    for i in range(1, depth + 1):
        y = keras.layers.LayerNormalization(name=f"block{i}_ln1", **_LN)(x)
        attn_kw = _kernel_init(init, dim, dim)
        y = keras.layers.MultiHeadAttention(num_heads=n_heads, key_dim=head_dim, name=f"block{i}_attn",
                                            **attn_kw)(y, y)
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(name=f"block{i}_ln2", **_LN)(x)
        y = keras.layers.Dense(n_mlp, activation="gelu", name=f"block{i}_mlp_up",
                               **_kernel_init(init, dim, n_mlp))(y)
        y = keras.layers.Dense(dim, name=f"block{i}_mlp_down", **_kernel_init(init, n_mlp, dim))(y)
        x = keras.layers.Add(name=f"block{i}_add2")([x, y])
    x = keras.layers.LayerNormalization(name="ln_final", **_LN)(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions", **_kernel_init(init, dim, num_classes))(x)
    return keras.Model(inputs, outputs, name="vit")
