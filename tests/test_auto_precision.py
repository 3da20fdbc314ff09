"""--auto-precision (edge_attn.convert.auto_precision): the fewest layers raised, checked against a brute-force search.

The model is built so that plain int8 visibly loses: one conv ("wide") has an output channel 300x larger than the
others, which the next conv ignores (zero weights), so the int8 scale of that tensor is set by a channel that does
not matter and the channels that do keep ~1 of 256 levels. The references are independent of the search: every
single-layer choice converted and scored (brute force: none meets the budget, so raising two layers is the fewest),
and the chosen model re-scored with LiteRT's own interpreter against the Keras model (numpy SNR formula).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_attn._keras import keras
from litert_reference import run_on_float_samples, snr_db

from edge_attn.convert import convert_model, load_recipe
from edge_attn.convert.auto_precision import recipe_toml, search
from edge_attn.convert.precision import convert_mixed
from edge_attn.convert.recipe import PrecisionRule
from edge_attn.evaluate.per_layer import layer_errors

SHAPE = (8, 8, 1)
MIN_SNR_DB = 20.0  # measured 2026-12-02: plain int8 4.1 dB, best single int16x8 layer 4.1 dB, two layers 23.1 dB
BUDGET = {"min_snr_db": MIN_SNR_DB, "max_drop": 100.0, "min_agreement": 0.0}


def _build():
    keras.utils.set_random_seed(1)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="wide")(x)
    x = keras.layers.ReLU(name="wide_relu")(x)
    x = keras.layers.Conv2D(8, 1, name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="head")(x))
    w, b = model.get_layer("wide").get_weights()
    w[..., 0] *= 300.0  # one output channel 300x the others ...
    model.get_layer("wide").set_weights([w, b])
    w, b = model.get_layer("mix").get_weights()
    w[:, :, 0, :] = 0.0  # ... that nothing downstream reads
    model.get_layer("mix").set_weights([w, b])
    return model


@pytest.fixture(scope="module")
def case():
    model = _build()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, *SHAPE)).astype("float32")
    y = rng.integers(0, 5, 64)
    representative = [sample[np.newaxis] for sample in x[:32]]
    recipe = load_recipe("int8-ptq")
    plain = convert_model(model, recipe, representative)
    layers = layer_errors(model, plain, x[:16])
    result = search(model, recipe, representative, x, y, layers, **BUDGET)
    return model, x, y, representative, recipe, result


def _snr(model, tflite, x):
    return snr_db(model.predict(x, verbose=0), run_on_float_samples(tflite, x))


def test_the_search_meets_the_budget_with_the_fewest_layers_a_brute_force_finds(case):
    model, x, y, representative, recipe, result = case
    assert result.chosen is not None, [t.to_dict() for t in result.trials]
    chosen = result.chosen
    assert chosen.precision == "int16x8"  # integer first: float is tried only when int16x8 cannot do it
    # LiteRT's own interpreter agrees the chosen model meets the budget and the baseline does not.
    assert _snr(model, result.tflite, x) >= MIN_SNR_DB
    assert result.trials[0].layers == [] and result.trials[0].output_snr_db < MIN_SNR_DB
    base = recipe.__class__(**{**recipe.__dict__, "input_type": "float32", "output_type": "float32"})
    # Brute force over every single layer at either precision: none meets the budget, so fewer raised layers
    # than the search chose cannot (the search chose two).
    assert len(chosen.layers) == 2
    for name in sorted(result.ranking):
        for precision in ("int16x8", "float"):
            rules = (PrecisionRule(match=f"^{name}$", precision=precision),)
            single = convert_mixed(model, base.__class__(**{**base.__dict__, "precision": rules}), representative,
                                   "model")
            assert _snr(model, single, x) < MIN_SNR_DB, (name, precision)
    # the culprit by local error (the wide tensor's producer) is among the raised layers
    assert "wide_relu" in chosen.layers


def test_the_written_recipe_converts_the_same_model_again(case, tmp_path):
    model, x, y, representative, recipe, result = case
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_toml(result.recipe, "a note\nof two lines"))
    again = load_recipe(str(path))
    assert [rule.to_dict() for rule in again.precision] == [rule.to_dict() for rule in result.recipe.precision]
    assert (again.input_type, again.output_type) == ("float32", "float32")
    rebuilt = convert_model(model, again, representative)
    assert abs(_snr(model, rebuilt, x) - _snr(model, result.tflite, x)) < 0.1


def test_cli_writes_the_recipe_and_reports_the_trials(case, tmp_path):
    model, x, y, *_ = case
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=np.concatenate([x] * 4), y=np.concatenate([y] * 4))
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "edge_attn.cli", "convert", str(tmp_path / "model.keras"),
                          "--recipe", "int8-ptq", "--data", str(tmp_path / "data.npz"), "--auto-precision",
                          "--min-snr-db", str(MIN_SNR_DB), "--max-drop", "100", "--min-agreement", "0",
                          "--runs", "3", "--no-progress", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "auto-precision (layers raised worst local error first)" in run.stdout
    assert "recipe.toml" in run.stdout
    report = json.loads((out / "report.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    with open(Path(__file__).parent.parent / "docs" / "report.schema.json") as f:
        assert list(jsonschema.Draft202012Validator(json.load(f)).iter_errors(report)) == []
    searched = report["auto_precision"]
    assert searched["needed"] and searched["chosen"]["met"]
    assert report["budget"]["passed"] and report["budget"]["min_snr_db"] == MIN_SNR_DB
    assert report["accuracy"]["output_snr_db"] >= MIN_SNR_DB  # the model written is the one chosen
    assert report["precision"]["islands"]
    assert load_recipe(str(out / "recipe.toml")).precision
    page = (out / "report.html").read_text()
    assert 'id="auto-precision"' in page and ", ".join(searched["chosen"]["layers"]) in page
    assert "int16 activations" in page and "float ops ?" not in page  # why it is not fully int8
    section = page[page.index('id="precision"'):page.index("</section>", page.index('id="precision"'))]
    for island in report["precision"]["islands"]:  # each island, named by its first layer, and why it is there
        assert island["layers"][0] in section and island["why"] in section
    assert f"{report['precision']['cost']['bytes_added']:+,} bytes" in section


def test_a_qat_recipe_is_refused_in_one_line_before_any_training(tmp_path):
    run = subprocess.run([sys.executable, "-m", "edge_attn.cli", "convert", "se_resnet20", "--recipe", "int8-qat",
                          "--data", "digits", "--auto-precision", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "--auto-precision" in run.stderr and "int8-ptq" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_library_crash_inside_the_search_is_one_line_naming_the_stage(case, monkeypatch):
    import edge_attn.convert.auto_precision as auto_precision
    from edge_attn.errors import BadInput
    from edge_attn.failures import model_failure

    model, x, y, representative, recipe, result = case

    def crash(*args, **kwargs):
        raise RuntimeError("quantizer exploded at layer mix")

    monkeypatch.setattr(auto_precision, "convert_mixed", crash)
    try:
        auto_precision.search(model, recipe, representative, x, y, [], **BUDGET)
    except RuntimeError as error:
        failure = model_failure("auto-precision", model, error, "model.keras")
    assert isinstance(failure, BadInput)
    assert "auto-precision failed at layer mix" in str(failure) and "[[precision]]" in str(failure)


def test_without_the_quantizer_it_says_what_to_install_before_any_work(monkeypatch):
    import importlib.util

    from edge_attn.convert.auto_precision import require_searchable
    from edge_attn.errors import BadInput

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ai_edge_quantizer" else real(name, *a))
    with pytest.raises(BadInput, match=r"pip install 'edge-attn\[mixed\]'"):
        require_searchable(load_recipe("int8-ptq"))


def test_a_delegate_that_refuses_int16x8_gets_float_islands_it_still_runs(case):
    """With ``delegate="xnnpack"`` (which takes no int16x8 op: tests/test_int16x8.py checks its rules against
    the real delegate) the first int16x8 candidate is refused for the ops it would leave to the CPU and the
    int16x8 step stops there; whatever is chosen runs on XNNPACK as far as the all-int8 model does."""
    model, x, y, representative, recipe, _ = case
    found = search(model, recipe, representative, x, y, layer_errors(model, convert_model(model, recipe,
                   representative), x[:16]), delegate="xnnpack", **BUDGET)
    baseline = found.trials[0]
    assert baseline.delegate_cpu_ops is not None and found.budget["delegate"] == "xnnpack"
    int16 = [t for t in found.trials if t.precision == "int16x8"]
    assert len(int16) == 1 and not int16[0].met
    assert int16[0].delegate_cpu_ops > baseline.delegate_cpu_ops
    assert any("xnnpack would leave" in failure for failure in int16[0].failures)
    assert found.chosen is not None and found.chosen.precision == "float", [t.to_dict() for t in found.trials]
    assert found.chosen.delegate_cpu_ops <= baseline.delegate_cpu_ops
    assert _snr(model, found.tflite, x) >= MIN_SNR_DB
