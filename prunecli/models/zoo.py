"""The registry of built-in models: name -> factory and the data-set family it is shaped for.

Names are Distiller's, so a Distiller command line's ``--arch`` works unchanged. Distiller's
ImageNet names that are plain torchvision models (``resnet18``, ``alexnet``, ``vgg16`` ...)
are not listed here: :mod:`prunecli.models.spec` resolves them to torchvision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from prunecli.models import detection, digits
from prunecli.models.cifar import plain, preact_resnet, resnet, simplenet, vgg
from prunecli.models.imagenet import alexnet_bn, mobilenet, resnext
from prunecli.models.imagenet import preact_resnet as preact_imagenet
from prunecli.models.mnist import simplenet as simplenet_mnist
from prunecli.models.text import rnn

# the input each family of models is built for, without the batch dimension: (C, H, W) for
# images; for language models one token step, so the example input (1, 1) counts MACs per token
FAMILY_INPUT: dict[str, tuple[int, ...]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar": (3, 32, 32),
    "imagenet": (3, 224, 224),
    "text": (1,),
    # torchvision's detectors resize every image to 800 pixels on the short side by default
    "detection": (3, 800, 800),
}


@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[..., nn.Module]
    family: str


def _collect(module, family: str, names: list[str]) -> dict[str, ZooEntry]:
    return {name: ZooEntry(getattr(module, name), family) for name in names}


ZOO: dict[str, ZooEntry] = {
    **_collect(digits, "digits", ["resnet_digits"]),
    **_collect(simplenet_mnist, "mnist", ["simplenet_mnist"]),
    **_collect(
        resnet,
        "cifar",
        ["resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar"],
    ),
    **_collect(
        preact_resnet,
        "cifar",
        [f"preact_resnet{d}_cifar{s}" for s in ("", "_conv_ds") for d in (20, 32, 44, 56, 110)],
    ),
    **_collect(plain, "cifar", ["plain20_cifar", "plain20_cifar_nobn"]),
    **_collect(vgg, "cifar", [f"vgg{d}{bn}_cifar" for d in (11, 13, 16, 19) for bn in ("", "_bn")]),
    **_collect(simplenet, "cifar", ["simplenet_cifar"]),
    **_collect(mobilenet, "imagenet", ["mobilenet", "mobilenet_025", "mobilenet_050", "mobilenet_075"]),
    **_collect(alexnet_bn, "imagenet", ["alexnet_bn"]),
    **_collect(preact_imagenet, "imagenet", [f"preact_resnet{d}" for d in (18, 34, 50, 101, 152)]),
    **_collect(resnext, "imagenet", ["resnext101_32x4d"]),
    **_collect(rnn, "text", ["word_language_model"]),
    **_collect(detection, "detection", ["maskrcnn_resnet50_fpn"]),
}
