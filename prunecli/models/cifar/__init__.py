"""CIFAR-10/100 models with Distiller's module and parameter names."""
