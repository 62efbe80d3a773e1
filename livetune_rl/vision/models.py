"""torchvision VGG models (11/13/16/19, with or without batch norm), built without weights.

Two heads: ``"imagenet"`` keeps torchvision's 7x7 average pool and the 4096-wide classifier
(224x224 inputs); ``"small"`` is the usual head for 32x32 or 64x64 inputs (CIFAR, TinyImageNet):
a global average pool and a compact ``Linear(c, c) -> ReLU -> Dropout -> Linear(c, classes)``.
``width`` scales every convolution's channel count (1.0 is the real VGG; 0.125 makes a model
small enough for CPU tests). Weights are never downloaded.

Example::

    >>> model = build_vgg("vgg11_bn", num_classes=100, head="small", width=0.125)
    >>> dropout_layers(model)[0].p
    0.5
    >>> set_dropout(model, 0.2)
    1
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

ARCHS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
HEADS = ("small", "imagenet")
_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def build_vgg(
    arch: str = "vgg11_bn",
    *,
    num_classes: int = 1000,
    head: str = "imagenet",
    dropout: float = 0.5,
    width: float = 1.0,
) -> nn.Module:
    """A freshly initialised torchvision VGG (``weights=None``).

    Args:
        arch: one of :data:`ARCHS` (``_bn`` adds batch norm after every convolution).
        num_classes: size of the last layer.
        head: ``"imagenet"`` (torchvision's classifier) or ``"small"`` (32x32/64x64 inputs).
        dropout: initial ``p`` of every dropout layer (live knob ``dropout`` changes it).
        width: channel multiplier of the convolutions (1.0: the published architecture).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if not 0 < width <= 4:
        raise ValueError(f"width must be in (0, 4], got {width}")
    batch_norm = arch.endswith("_bn")
    if width == 1.0 and head == "imagenet":
        import torchvision

        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                            dropout=dropout)
    cfg = [c if c == "M" else max(1, round(int(c) * width))
           for c in tv_vgg.cfgs[_CFG[arch.removesuffix("_bn")]]]
    with torch.device("meta"):  # skip allocating torchvision's 25088x4096 default head
        model = tv_vgg.VGG(nn.Identity(), num_classes=num_classes, init_weights=False,
                           dropout=dropout)
    model.features = tv_vgg.make_layers(cfg, batch_norm=batch_norm)
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    channels = int(cfg[-2])
    if head == "small":
        model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        model.classifier = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(channels, num_classes),
        )
    else:
        hidden = max(1, round(4096 * width))
        model.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
    for m in model.modules():  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def dropout_layers(model: nn.Module) -> list[nn.Dropout]:
    """Every ``nn.Dropout`` of ``model`` (DDP-wrapped models included)."""
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


def set_dropout(model: nn.Module, p: float) -> int:
    """Set ``p`` of every dropout layer in place; returns how many layers changed."""
    layers = dropout_layers(model)
    for layer in layers:
        layer.p = float(p)
    return len(layers)
