"""Detection models under the names Distiller's object-detection example used.

Distiller's ``compress_detector.py`` pruned torchvision's ``maskrcnn_resnet50_fpn`` as it was in
2019. Since then torchvision wrapped some convolutions in ``Conv2dNormActivation`` blocks, which
renamed their parameters; the model here is today's torchvision model with those convolutions
put back where they were, so Distiller's schedules name them unchanged:

=========================================  ==========================================
Distiller (torchvision 0.3)                torchvision today
=========================================  ==========================================
``backbone.fpn.inner_blocks.0.weight``     ``backbone.fpn.inner_blocks.0.0.weight``
``backbone.fpn.layer_blocks.0.weight``     ``backbone.fpn.layer_blocks.0.0.weight``
``rpn.head.conv.weight``                   ``rpn.head.conv.0.0.weight``
``roi_heads.mask_head.mask_fcn1.weight``   ``roi_heads.mask_head.0.0.weight``
=========================================  ==========================================

The computation is the same (tested against the torchvision model the layers come from). The
model is always built without downloads (``weights=None, weights_backbone=None``), which also
makes every backbone stage trainable with ordinary BatchNorm, as pruning needs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from prunecli.errors import ModelError

#: COCO's 90 categories plus the background, torchvision's default
COCO_CLASSES = 91


def maskrcnn_resnet50_fpn(num_classes: int = COCO_CLASSES, **kwargs: Any) -> nn.Module:
    """torchvision's Mask R-CNN (ResNet-50 FPN backbone); ``num_classes`` counts the background.

    Other keyword arguments go to torchvision's ``MaskRCNN`` (``min_size``, ``max_size``,
    ``box_batch_size_per_image`` ...): small values keep CPU smoke runs cheap.
    """
    from torchvision.models.detection import maskrcnn_resnet50_fpn as build

    for key in ("weights", "weights_backbone", "pretrained", "pretrained_backbone"):
        if kwargs.pop(key, None):
            raise ModelError(
                f"maskrcnn_resnet50_fpn: {key}= would download weights, which prunecli never does",
                hint=f"drop {key}=; to start from trained weights load a checkpoint (--initial-weights)",
            )
    return distiller_layout(
        build(weights=None, weights_backbone=None, num_classes=int(num_classes), **kwargs)
    )


class ConvReLU(nn.Conv2d):
    """A convolution followed by ReLU, holding the weight itself (the RPN head's old ``conv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


def _bare_conv(block: nn.Module) -> nn.Conv2d:
    """The convolution inside a ``Conv2dNormActivation`` that has no norm or activation."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    extra = [m for m in block.children() if not isinstance(m, nn.Conv2d)]
    if len(convs) != 1 or extra:
        raise ModelError(
            f"unexpected torchvision layout: {type(block).__name__} is not one bare convolution",
            hint="this torchvision version lays out Mask R-CNN differently; report it with the versions used",
        )
    return convs[0]


def _conv_relu(block: nn.Module) -> ConvReLU:
    conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
    out = ConvReLU(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    out.load_state_dict(conv.state_dict())
    return out


def _keep_names_on_load(module: nn.Module) -> None:
    """Stop torchvision's upgrade of old parameter names when a state dict is loaded.

    The FPN and the RPN head rename ``inner_blocks.0.weight`` to ``inner_blocks.0.0.weight``
    (and ``conv.weight`` to ``conv.0.0.weight``) when a state dict carries no version, as plain
    saved dicts do; here the old names are the right ones, so those modules load as any module.
    """
    cls = type(module)
    module.__class__ = type(
        f"Distiller{cls.__name__}", (cls,), {"_load_from_state_dict": nn.Module._load_from_state_dict}
    )


def distiller_layout(model: nn.Module) -> nn.Module:
    """Put the FPN, RPN-head and mask-head convolutions back under their 2019 names (in place)."""
    fpn = model.backbone.fpn
    _keep_names_on_load(fpn)
    _keep_names_on_load(model.rpn.head)
    fpn.inner_blocks = nn.ModuleList(_bare_conv(b) for b in fpn.inner_blocks)
    fpn.layer_blocks = nn.ModuleList(_bare_conv(b) for b in fpn.layer_blocks)
    model.rpn.head.conv = _conv_relu(model.rpn.head.conv)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, block in enumerate(model.roi_heads.mask_head, start=1):
        layers[f"mask_fcn{index}"] = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
        layers[f"relu{index}"] = nn.ReLU(inplace=True)
    model.roi_heads.mask_head = nn.Sequential(layers)
    return model
