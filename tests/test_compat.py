"""edge_attn._compat, the one home of other libraries' private APIs: pinned versions, each function on the real
library, and a scan of edge_attn/ that fails on a private name used anywhere else.

An upgrade of TensorFlow, tf-keras, tfmot or LiteRT that moves a private name fails the test below named
after the function that reads it; the version pin test says the upgrade left the checked range.
"""

import ast
import pathlib
import tomllib

import numpy as np
import pytest

from edge_attn import _compat

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edge_attn"
# Module paths of other libraries that are not their public API (besides any component starting with "_").
INTERNAL_PACKAGES = ("tensorflow.python", "tensorflow.lite.python", "tensorflow_model_optimization.python",
                     "tf_keras.src", "keras.src")


# ---------------------------------------------------------------- (a) versions


def test_installed_versions_are_the_supported_ones():
    assert _compat.unsupported_versions() == []


def test_the_supported_range_is_pyprojects_pin():
    """SUPPORTED and pyproject.toml's dependencies name the same ranges (one cannot move without the other)."""
    from packaging.requirements import Requirement

    declared = {}
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        declared[requirement.name] = {(spec.operator, spec.version) for spec in requirement.specifier}
    for package, (low, high) in _compat.SUPPORTED.items():
        assert declared[package] == {(">=", low), ("<", high)}, package


def test_a_version_outside_the_range_is_reported(monkeypatch):
    monkeypatch.setitem(_compat.SUPPORTED, "tensorflow", ("1.0", "2.0"))
    problems = _compat.unsupported_versions()
    assert len(problems) == 1 and problems[0].startswith("tensorflow 2.") and "(supported: >=1.0,<2.0)" in problems[0]


# ---------------------------------------------------------------- (b) each function on the real library


@pytest.fixture(scope="module")
def graph():
    """A functional model with a shared Dense (two calls), a raw TF op (TFOpLambda), and a nested model."""
    from edge_attn._keras import keras, tf

    inner_in = keras.Input((4,), name="inner_in")
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    x = keras.Input((4,), name="x")
    shared = keras.layers.Dense(4, name="shared")
    a = shared(x)
    b = shared(keras.layers.ReLU(name="relu")(a))
    mean = tf.reduce_mean(b, axis=-1, keepdims=True)  # a TFOpLambda layer
    out = keras.layers.Add(name="add")([inner(b), mean])
    model = keras.Model(x, out, name="outer")

    class Subclassed(keras.Model):
        def call(self, inputs):
            return inputs

    return {"model": model, "shared": shared, "inner": inner, "a": a, "b": b, "mean": mean,
            "subclassed": Subclassed(), "keras": keras, "tf": tf}


def test_is_functional(graph):
    assert _compat.is_functional(graph["model"]) and _compat.is_functional(graph["inner"])
    assert not _compat.is_functional(graph["subclassed"])


def test_keras_history_producing_layer_and_node(graph):
    assert _compat.is_symbolic(graph["a"]) and not _compat.is_symbolic(3.0) and not _compat.is_symbolic(np.ones(2))
    assert _compat.keras_history(3.0) is None
    assert _compat.producing_layer(graph["a"]) is graph["shared"]
    assert _compat.producing_layer(graph["b"]) is graph["shared"]
    # the second call's node reads relu's output; the first call's reads the input
    assert _compat.producing_node(graph["b"]).inbound_layers.name == "relu"
    assert _compat.producing_node(graph["a"]).inbound_layers.name == "x"
    assert _compat.keras_history(graph["b"]).node_index == 1


def test_inbound_and_outbound_nodes(graph):
    model = graph["model"]
    assert len(_compat.inbound_nodes(graph["shared"])) == 2
    assert len(_compat.inbound_nodes(model.get_layer("relu"))) == 1
    consumers = sorted(node.layer.name for node in _compat.outbound_nodes(graph["shared"]))
    assert consumers == sorted(["relu", "inner", _compat.producing_layer(graph["mean"]).name])


def test_nodes_deepest_first_compute_in_order(graph):
    """Every node comes after the nodes producing its inputs (checked against the nodes' own inputs)."""
    nodes = _compat.nodes_deepest_first(graph["model"])
    seen = set()
    for node in nodes:
        for tensor in graph["tf"].nest.flatten(node.keras_inputs):
            assert id(tensor) in seen, f"{node.layer.name} before its input"
        seen.update(id(t) for t in graph["tf"].nest.flatten(node.outputs))
    assert [n.layer.name for n in nodes].count("shared") == 2 and nodes[0].layer.name == "x"


def test_calls_in_model_leaves_out_a_nested_models_own_graph(graph):
    inner_dense = graph["inner"].get_layer("inner_dense")
    assert _compat.calls_in_model(graph["model"], graph["shared"]) == [0, 1]
    assert _compat.calls_in_model(graph["inner"], inner_dense) == [0]
    assert _compat.calls_in_model(graph["model"], inner_dense) == []  # called only inside "inner"
    assert _compat.calls_in_model(graph["model"], graph["inner"]) == [0]  # the nested model, called once


def test_deserializable_layer_names():
    names = _compat.deserializable_layer_names()
    assert {"Conv2D", "Dense", "BatchNormalization", "TFOpLambda"} <= names
    assert "SqueezeExcite" not in names or "edge_attn>SqueezeExcite" in names


def test_tf_op_lambda_class(graph):
    layer = _compat.producing_layer(graph["mean"])
    assert isinstance(layer, _compat.tf_op_lambda_class()) and layer.symbol == "math.reduce_mean"
    assert not isinstance(graph["shared"], _compat.tf_op_lambda_class())


@pytest.fixture(scope="module")
def quantized():
    """A tiny model made quantize-aware by tfmot, with a MaxPooling1D (not in tfmot's registry) left
    unquantized by the NoOp config."""
    import tensorflow_model_optimization as tfmot

    from edge_attn._keras import keras

    qk = tfmot.quantization.keras
    x = keras.Input((6, 6, 2), name="x")
    y = keras.layers.Reshape((16, 3), name="rows")(keras.layers.Conv2D(3, 3, name="conv")(x))
    y = qk.quantize_annotate_layer(keras.layers.MaxPooling1D(2, name="pool"), _compat.noop_quantize_config()())(y)
    y = keras.layers.Dense(2, name="dense")(keras.layers.Flatten(name="flat")(y))
    model = qk.quantize_annotate_model(keras.Model(x, y))
    with qk.quantize_scope({"NoOpQuantizeConfig": _compat.noop_quantize_config()}):
        return qk.quantize_apply(model)


def test_noop_quantize_config_quantizes_nothing(quantized):
    config = _compat.noop_quantize_config()()
    import tensorflow_model_optimization as tfmot

    assert isinstance(config, tfmot.quantization.keras.QuantizeConfig)
    pool = quantized.get_layer("quant_pool")
    assert config.get_weights_and_quantizers(pool.layer) == [] and config.get_output_quantizers(pool.layer) == []
    assert _compat.output_ranges(pool) == []


@pytest.mark.parametrize("layer_class", ["Conv2D", "DepthwiseConv2D", "Dense"])
def test_weights_only_config_keeps_the_registry_weight_quantizer_and_nothing_else(layer_class):
    import tensorflow_model_optimization as tfmot

    from edge_attn._keras import keras

    layer = {"Conv2D": lambda: keras.layers.Conv2D(3, 3), "DepthwiseConv2D": lambda: keras.layers.DepthwiseConv2D(3),
             "Dense": lambda: keras.layers.Dense(3)}[layer_class]()
    layer.build((None, 6, 6, 2) if layer_class != "Dense" else (None, 4))
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
    full = registry.get_quantize_config(layer)
    config = _compat.weights_only_config(full)
    assert type(config) is type(full)
    weights = config.get_weights_and_quantizers(layer)
    assert [w.name for w, _ in weights] == [w.name for w, _ in full.get_weights_and_quantizers(layer)] != []
    assert [type(q) for _, q in weights] == [type(q) for _, q in full.get_weights_and_quantizers(layer)]
    assert config.get_activations_and_quantizers(layer) == [] and config.get_output_quantizers(layer) == []
    assert full.get_activations_and_quantizers(layer) != []  # the copy, not the registry's own, changed


def test_input_quantizer_and_output_ranges_are_the_variables_conversion_reads(quantized):
    """Setting the ranges found by name sets the converted model's scales: they are the ones conversion reads."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_attn._keras import tf

    quantizers = [layer for layer in quantized.layers if _compat.is_input_quantizer(layer)]
    assert len(quantizers) == 1 and not _compat.is_input_quantizer(quantized.get_layer("quant_conv"))
    ranges = _compat.output_ranges(quantized.get_layer("quant_dense"))
    assert [role for role, _, _ in ranges] == ["post_activation"]
    _, dense_low, dense_high = ranges[0]
    assert (float(dense_low.numpy()), float(dense_high.numpy())) == (-6.0, 6.0)  # tfmot's initial range
    input_low, input_high = _compat.input_range(quantizers[0])
    input_low.assign(-2.0)
    input_high.assign(2.0)  # scale 4/255
    dense_low.assign(-1.0)
    dense_high.assign(6.0)  # scale 7/255
    converter = tf.lite.TFLiteConverter.from_keras_model(quantized)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = Interpreter(model_content=converter.convert())
    scales = [d["quantization"][0] for d in interpreter.get_tensor_details()]
    for expected in (4.0 / 255, 7.0 / 255):
        assert any(abs(scale - expected) < 1e-6 for scale in scales), f"no tensor has scale {expected}: {scales}"


def test_unwrapped_name(quantized):
    for wrapper in quantized.layers:
        if hasattr(wrapper, "layer"):
            assert wrapper.name.startswith(_compat.WRAPPER_PREFIX)
            assert _compat.unwrapped_name(wrapper.name) == wrapper.layer.name
    assert _compat.unwrapped_name("conv") == "conv"


@pytest.fixture(scope="module")
def interpreter():
    """A float TFLite model of two ops, loaded without delegates so its nodes are the model's ops."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edge_attn._keras import keras, tf

    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Softmax(name="soft")(keras.layers.Dense(3, name="dense")(x)))
    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = Interpreter(model_content=blob, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def test_interpreter_ops(interpreter):
    ops = _compat.interpreter_ops(interpreter)
    assert [op["op_name"] for op in ops] == ["FULLY_CONNECTED", "SOFTMAX"]
    output = interpreter.get_output_details()[0]["index"]
    assert int(ops[-1]["outputs"][0]) == output and int(ops[-1]["inputs"][0]) == int(ops[0]["outputs"][0])
    assert _compat.interpreter_ops(object()) is None  # a LiteRT without the per-op view


def test_tensor_details(interpreter):
    listed = {d["index"]: d for d in interpreter.get_tensor_details()}  # the public list of every tensor
    for index, detail in listed.items():
        one = _compat.tensor_details(interpreter, index)
        assert (one["name"], list(one["shape"]), one["dtype"]) == (detail["name"], list(detail["shape"]), detail["dtype"])


# ---------------------------------------------------------------- (c) no private API outside _compat


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_attribute_names(trees):
    """Names edge_attn itself defines that can be read as attributes: module-level and class-level definitions
    and every ``obj.name = ...`` it assigns. A private attribute read that is none of these is another
    library's."""
    own = set()
    for tree in trees:
        scopes = [tree.body] + [node.body for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        for body in scopes:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    own.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                        own.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    own.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
    return own


def private_uses(sources):
    """``path:line: what`` for every use of another library's private API in ``sources`` ({path: text}).
    A module named like one of ``sources`` is edge_attn's own (the board script imports its copied siblings
    by their bare names)."""
    trees = {path: ast.parse(text, path) for path, text in sources.items()}
    own_modules = {pathlib.Path(path).stem for path in sources} | {"edge_attn"}
    own = _own_attribute_names(trees.values())
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            what = None
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    if module.split(".")[0] in own_modules or getattr(node, "level", 0):
                        continue
                    if any(map(_is_private, module.split("."))) or module.startswith(INTERNAL_PACKAGES):
                        what = f"imports the private module {module}"
                    elif isinstance(node, ast.ImportFrom) and any(_is_private(a.name) for a in node.names):
                        what = f"imports a private name from {module}"
            elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
                what = f"reads the private attribute .{node.attr}"
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) > 1
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                  and _is_private(node.args[1].value) and node.args[1].value not in own):
                what = f"{node.func.id}s the private attribute {node.args[1].value!r}"
            if what:
                found.append(f"{path}:{node.lineno}: {what}")
    return found


def test_the_scan_finds_each_kind_of_private_use():
    """The scanner on code with one use of each kind (so the real scan below can fail)."""
    bad = (
        "from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer\n"
        "import tensorflow.lite.python.schema_py_generated\n"
        "from tf_keras.src.layers import serialization\n"
        "from ai_edge_litert import _pywrap_litert_interpreter_wrapper\n"
        "def f(layer, interpreter, model):\n"
        "    interpreter._get_ops_details()\n"
        "    return layer._inbound_nodes, getattr(model, '_is_graph_network', False)\n"
    )
    ok = (
        "import tensorflow_model_optimization as tfmot\n"
        "from edge_attn.layers._common import check_int\n"
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def _helper(self):\n"
        "        return self._mine, self.__class__, A._helper\n"
    )
    found = private_uses({"bad.py": bad, "ok.py": ok})
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4", "6", "7", "7"], found


def test_no_private_api_of_another_library_outside_compat():
    sources = {str(path.relative_to(REPO)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}
    del sources["edge_attn/_compat.py"]  # the one place allowed (its name still counts as edge_attn's own)
    sources["_compat.py"] = ""
    assert len(sources) > 50
    found = private_uses(sources)
    assert not found, "private APIs of other libraries belong in edge_attn/_compat.py:\n" + "\n".join(found)
