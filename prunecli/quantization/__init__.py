"""Quantization: quantizers that simulate low precision during training or calibrate after it,
and the conversion of their result to a model that really runs in int8.

The hand-off between the two is :class:`prunecli.quantization.spec.QuantPlan`: plain data (tensors,
numbers, strings) describing every quantized layer, so it is stored in checkpoints that load with
``torch.load(weights_only=True)``.
"""

from prunecli.quantization.spec import LayerQuant, QuantPlan, TensorQuant

__all__ = ["LayerQuant", "QuantPlan", "TensorQuant"]
