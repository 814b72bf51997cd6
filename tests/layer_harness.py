"""Checks every kzoo layer must pass: config, `.keras` round trip, weight count, one training step."""

import json

import keras
import numpy as np
import tensorflow as tf


def _json_config(config):
    # What a `.keras` file stores: tuples become lists, -inf survives as -Infinity.
    return json.loads(json.dumps(config))


def check_layer(layer_factory, input_shape, n_weights, tmp_path, *, batch=2, seed=0):
    """Run the generic checks on `layer_factory()` fed with (batch, *input_shape) inputs.

    Returns the layer and its reloaded copy, for further checks.
    """
    layer = layer_factory()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # The registered name must resolve, or `.keras` files would not load.
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == config

    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    assert len(layer.weights) == n_weights
    assert len(model.weights) == n_weights

    x = np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype("float32")
    y = model(x)
    assert tuple(layer.compute_output_shape((batch, *input_shape))) == tuple(y.shape)

    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded(x), y)
    reloaded_layer = reloaded.get_layer(layer.name)
    assert type(reloaded_layer) is type(layer)
    assert _json_config(reloaded_layer.get_config()) == _json_config(config)

    _check_training_step(model, x)
    return layer, reloaded_layer


def _check_training_step(model, x):
    """Gradients reach the input and every trainable weight, and one SGD step moves every weight."""
    x = tf.constant(x)
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x, training=True)
        # A random projection, so no gradient cancels by symmetry (as sum() of a normalization can).
        projection = np.random.default_rng(1).standard_normal(y.shape).astype("float32")
        loss = tf.reduce_sum(y * projection)
    grad_x, *grads = tape.gradient(loss, [x, *weights])
    for name, grad in [("input", grad_x), *((w.path, g) for w, g in zip(weights, grads))]:
        assert grad is not None, f"no gradient for {name}"
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)), f"non-finite gradient for {name}"
        assert np.any(grad != 0), f"zero gradient for {name}"

    if not weights:
        return
    before = [np.array(w) for w in weights]
    keras.optimizers.SGD(learning_rate=0.1).apply_gradients(zip(grads, weights))
    for w, old in zip(weights, before):
        assert not np.array_equal(np.array(w), old), f"{w.path} did not change"
