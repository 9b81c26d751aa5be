"""Weight initialisation of the zoo: each paper's reference scheme, PyTorch's default, or Keras'.

Every zoo builder takes ``init`` (default ``"reference"``):

* ``"reference"`` — the scheme of the implementation the model's paper results come from,
  named in each builder's docstring (e.g. torchvision's ResNets: Kaiming normal, fan-out,
  for convolutions);
* ``"torch"`` — what a PyTorch layer gets when its module does not initialise it:
  ``kaiming_uniform_(a=sqrt(5))`` for kernels, i.e. U(±1/sqrt(fan_in)), and the same bound for
  biases;
* ``"keras"`` — the initialisers kprune's zoo used before issue 19 (``he_normal`` for the
  ResNets' convolutions, Keras' defaults — ``glorot_uniform`` kernels, zero biases —
  everywhere else), kept to rerun older results.

Fans follow PyTorch's convention, which differs from Keras' for depthwise kernels:
``fan_in = in_channels / groups * kh * kw`` and ``fan_out = out_channels * kh * kw``; so a
3x3 depthwise convolution over C channels has fan_in 9 and fan_out 9·C. The normal
distributions are not truncated (``torch.nn.init.normal_``), unlike Keras' ``he_normal``.

BatchNorm scales are not set here; builders that need a non-default γ (NNI's VGG: 0.5) pass
``gamma_initializer`` themselves.
"""

from __future__ import annotations

import math

import keras

from kprune.errors import KPruneError

SCHEMES = ("reference", "torch", "keras")

#: The rules a builder can name for its ``"reference"`` scheme.
RULES = ("kaiming_normal_fan_out", "normal_0.01", "lecun_uniform", "torch_default")


def check_scheme(init) -> str:
    """Validate an ``init`` argument and return it.

    Raises:
        KPruneError: when ``init`` is not one of :data:`SCHEMES`.
    """
    if init not in SCHEMES:
        raise KPruneError(f"`init` must be one of {list(SCHEMES)}. Received: init={init!r}")
    return init


def fans(kernel_size, in_channels: int, out_channels: int, groups: int = 1) -> tuple[int, int]:
    """PyTorch's ``(fan_in, fan_out)`` of a convolution (``kernel_size`` 1 for a Dense layer).

    Example:
        >>> fans(3, 16, 16, groups=16)  # 3x3 depthwise over 16 channels
        (9, 144)
    """
    k = kernel_size * kernel_size if isinstance(kernel_size, int) else int(math.prod(kernel_size))
    return in_channels // groups * k, out_channels * k


def rule_initializers(rule: str, fan_in: int, fan_out: int) -> dict:
    """Keras ``kernel_initializer`` / ``bias_initializer`` for one named rule.

    Args:
        rule: one of :data:`RULES`:
            ``"kaiming_normal_fan_out"`` N(0, 2/fan_out), zero bias (torchvision's ResNet and
            MobileNetV2 convolutions, fb.resnet.torch, NNI's VGG);
            ``"normal_0.01"`` N(0, 0.01²), zero bias (the classifiers of torchvision's
            MobileNetV2 and NNI's VGG);
            ``"lecun_uniform"`` U(±sqrt(3/fan_in)), zero bias (Caffe's ``xavier`` filler of
            the LeNet examples);
            ``"torch_default"`` U(±1/sqrt(fan_in)) for kernel and bias.
        fan_in, fan_out: PyTorch-convention fans (see :func:`fans`).

    Returns:
        ``{"kernel_initializer": ..., "bias_initializer": ...}`` (pass ``depthwise_initializer``
        yourself for ``DepthwiseConv2D``).
    """
    if rule == "kaiming_normal_fan_out":
        return {"kernel_initializer": keras.initializers.RandomNormal(0.0, math.sqrt(2.0 / fan_out)),
                "bias_initializer": "zeros"}
    if rule == "normal_0.01":
        return {"kernel_initializer": keras.initializers.RandomNormal(0.0, 0.01), "bias_initializer": "zeros"}
    if rule == "lecun_uniform":
        limit = math.sqrt(3.0 / fan_in)
        return {"kernel_initializer": keras.initializers.RandomUniform(-limit, limit), "bias_initializer": "zeros"}
    if rule == "torch_default":
        bound = 1.0 / math.sqrt(fan_in)
        return {"kernel_initializer": keras.initializers.RandomUniform(-bound, bound),
                "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}
    raise KPruneError(f"Unknown initialisation rule {rule!r}. Allowed: {list(RULES)}")


def initializers(init: str, reference: str, fan_in: int, fan_out: int, keras_kernel="glorot_uniform") -> dict:
    """Initialiser keyword arguments for one layer under scheme ``init``.

    Args:
        init: ``"reference"``, ``"torch"`` or ``"keras"`` (see the module docstring).
        reference: the rule (:data:`RULES`) of the model's reference implementation for this layer.
        fan_in, fan_out: PyTorch-convention fans (see :func:`fans`).
        keras_kernel: the kernel initialiser the pre-issue-19 zoo gave this layer
            (default ``"glorot_uniform"``, Keras' own default).

    Returns:
        ``{"kernel_initializer": ..., "bias_initializer": ...}``.

    Example:
        >>> kw = initializers("reference", "kaiming_normal_fan_out", *fans(3, 16, 32))
        >>> round(kw["kernel_initializer"].stddev, 4)  # sqrt(2 / (32 * 9))
        0.0833
    """
    check_scheme(init)
    if init == "keras":
        return {"kernel_initializer": keras_kernel, "bias_initializer": "zeros"}
    return rule_initializers(reference if init == "reference" else "torch_default", fan_in, fan_out)


def depthwise(kwargs: dict) -> dict:
    """The same initialisers for a ``DepthwiseConv2D`` (``depthwise_initializer`` for the kernel)."""
    out = dict(kwargs)
    out["depthwise_initializer"] = out.pop("kernel_initializer")
    return out
