"""ImageNet models that torchvision lacks, with Distiller's module and parameter names."""
