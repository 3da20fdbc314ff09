"""Gradient accumulation in ``edge_attn.training.fit``: a batch split into micro-batches makes the same
update as the whole batch, in bounded memory, and BatchNormalization is frozen when micro-batches are tiny.

The reference is an independent optimizer step: Adam applied by hand-written Keras code to the
whole-batch gradient of the same loss (not ``fit`` itself), on the batches ``fit`` streams.
"""

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.data import load_data
from edge_attn.resources import (TRAINING_ACTIVATION_FACTOR, TRAINING_BYTES_PER_PARAMETER, activation_bytes,
                                 micro_batch_within)
from edge_attn.training import fit, make_loss

BATCH = 32


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", input_shape=(8, 8, 1))


def _dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def _by_hand(model, data, steps):
    """``steps`` plain Adam steps on whole batches, in fit's batch order (epoch 1's shuffle, seed 0 + 1)."""
    optimizer = keras.optimizers.Adam(1e-2)  # constant schedule, as fit's "constant"
    loss_fn = make_loss(True, 1.0)
    for x, y in data.train_dataset(BATCH, shuffle=True, seed=1).take(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True), None)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return model.get_weights()


@pytest.mark.parametrize("micro", [5, 16])  # 5 leaves a smaller last micro-batch (32 = 6x5 + 2)
def test_accumulated_micro_batches_make_the_whole_batch_update(digits, micro):
    steps = -(-len(digits.x_train) // BATCH)
    expected = _by_hand(_dense_model(), digits, steps)
    model = _dense_model()
    history = fit(model, digits, epochs=1, learning_rate=1e-2, schedule="constant", batch_size=BATCH,
                  micro_batch=micro, progress=False)
    assert history.micro_batch == micro
    assert history.to_dict()["micro_batch"] == micro
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_whole_batches_when_the_step_fits(digits):
    history = fit(_dense_model(), digits, epochs=1, learning_rate=1e-2, batch_size=BATCH, progress=False)
    assert history.micro_batch is None


def test_tiny_micro_batches_freeze_batch_norm_from_the_start(digits):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    bn = model.layers[2]
    moving_mean = bn.moving_mean.numpy().copy()
    history = fit(model, digits, epochs=1, learning_rate=1e-2, batch_size=BATCH, micro_batch=4, progress=False)
    assert history.bn_frozen_at_step == 0
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving_mean)  # statistics never updated


def test_micro_batch_is_the_largest_that_fits():
    model = _dense_model()
    fixed = TRAINING_BYTES_PER_PARAMETER * model.count_params()
    per_sample = TRAINING_ACTIVATION_FACTOR * activation_bytes(model)
    assert micro_batch_within(model, BATCH, fixed + 7 * per_sample) == 7
    assert micro_batch_within(model, BATCH, fixed + 7 * per_sample - 1) == 6
    assert micro_batch_within(model, BATCH, 10**12) == BATCH
    assert micro_batch_within(model, BATCH, 0) == 1


def test_a_bad_micro_batch_is_refused(digits):
    from edge_attn.errors import BadInput

    with pytest.raises(BadInput, match="micro_batch"):
        fit(_dense_model(), digits, epochs=1, learning_rate=1e-2, batch_size=BATCH, micro_batch=0, progress=False)
