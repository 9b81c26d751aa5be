"""PyTorch side of ``tp_compare.py``: a ResNet that mirrors kprune's zoo ``cifar_resnet``.

Written from kprune's zoo description (``kprune/models/resnet.py``), not converted from it:
a 3x3 stride-1 stem, BasicBlocks with option-B shortcuts (1x1 stride-2 convolution + BN
when the shape changes), global average pooling, one Linear classifier. Convolutions have no
bias and pad ``k // 2`` on every side; BatchNorm has momentum 0.1 (Keras 0.9) and epsilon
1e-5. Module paths spell kprune's layer names with ``.`` for ``_``: ``stage2_block1.conv1`` is
kprune's ``stage2_block1_conv1``, ``predictions`` its classifier, so channel counts can be
compared layer by layer (:func:`conv_channels`).

Initialisation (``init``): ``"reference"`` is torchvision's ResNet scheme (the zoo's
default): ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` for convolutions, the
Linear layer left at PyTorch's default; ``"torch"`` leaves every layer at PyTorch's default.
"""

from __future__ import annotations

import torch
from torch import nn


def scale(channels: int, width: float) -> int:
    """kprune's width rule: ``max(1, floor(channels * width + 0.5))``."""
    return max(1, int(channels * width + 0.5))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs and an identity or 1x1-conv shortcut (option B)."""

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5, momentum=0.1)
        self.projected = stride != 1 or in_channels != planes
        if self.projected:
            self.shortcut_conv = nn.Conv2d(in_channels, planes, 1, stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(planes, eps=1e-5, momentum=0.1)

    def forward(self, x):
        shortcut = self.shortcut_bn(self.shortcut_conv(x)) if self.projected else x
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet with BasicBlocks; ``blocks=(3, 3, 3)`` is ResNet-20."""

    def __init__(self, in_channels=1, num_classes=10, width=1.0, blocks=(3, 3, 3), planes=(16, 32, 64),
                 init="reference"):
        super().__init__()
        c = scale(planes[0], width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
        self.block_names = []
        for s, (n, p) in enumerate(zip(blocks, planes), start=1):
            for b in range(1, n + 1):
                out = scale(p, width)
                name = f"stage{s}_block{b}"
                self.add_module(name, BasicBlock(c, out, 2 if (s > 1 and b == 1) else 1))
                self.block_names.append(name)
                c = out
        self.predictions = nn.Linear(c, num_classes)
        if init == "reference":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif init != "torch":
            raise ValueError(f"init must be 'reference' or 'torch'. Received: init={init!r}")

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self.predictions(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def conv_channels(model: nn.Module) -> dict:
    """``{kprune layer name: output channels}`` of every convolution."""
    return {name.replace(".", "_"): m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_bn(model: nn.Module, batches) -> int:
    """Re-estimate BatchNorm running statistics: reset, then a cumulative average (``momentum=None``)
    of ``batches`` forward passes in training mode, without gradient; kprune.recalibrate_bn's twin."""
    bns = batchnorms(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.eval()
    return len(batches)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)
