"""TensorFlow graph bookkeeping that would otherwise outlive a run."""

import contextlib

import keras


@contextlib.contextmanager
def released_custom_gradients():
    """Forget the custom gradients registered while the block runs.

    tf.distribute's all-reduce (in every optimizer step, Keras' `fit` included) registers a
    `tf.custom_gradient` per trace in TensorFlow's global gradient registry, which is never
    emptied: each traced train step stayed alive, and through its captures the model's
    weights and optimizer slots (150-200 MB per smoke run of the AlexNet, ZFNet or ResNet-18
    recipe; a tuner's trials piled up in one process). Nothing differentiates a finished
    run's steps, so their entries can go."""
    registry = None
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.framework import ops  # the registry has no public handle

        registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    before = set(registry) if isinstance(registry, dict) else None
    try:
        yield
    finally:
        if before is not None:
            for name in [n for n in registry if n not in before and n.startswith("CustomGradient-")]:
                del registry[name]
