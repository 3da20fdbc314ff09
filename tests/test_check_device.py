"""``edge-attn check --device``: which profiles it takes, refused before any model is loaded (no board needed;
the outputs-on-a-board path is tests/test_arm_board.py)."""

import pytest

from edge_attn.cli import main


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    import tensorflow as tf

    inputs = tf.keras.Input((4,), batch_size=1)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    path = tmp_path_factory.mktemp("check-device") / "dense.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.mark.parametrize("device, message", [
    ("android-example", "adb phone"),
    ("no-such-board.toml", "no such device profile"),
])
def test_unusable_device_is_one_line_exit_2_before_loading_the_reference(tflite, tmp_path, capsys, device, message):
    # the reference does not exist: the device must be refused first
    code = main(["check", str(tflite), "--reference", str(tmp_path / "missing.keras"), "--data", "digits",
                 "--device", str(tmp_path / device) if device.endswith(".toml") else device])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and "missing.keras" not in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
