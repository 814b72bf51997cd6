"""Data for the recipes (TensorFlow): sources, the papers' transforms, dataset statistics."""
