"""Language models with Distiller's module and parameter names."""
