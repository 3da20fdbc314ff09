"""Every use of another library's private API, in one thin module pinned to the versions it was checked on.

TensorFlow's Keras 2 (tf-keras), tensorflow-model-optimization and LiteRT have no public way to read a
functional model's call graph, tfmot's range variables or an interpreter's ops; edge_attn needs all three.
Each private name is read here and nowhere else (``tests/test_compat.py`` scans ``edge_attn/`` for any
other), each function is exercised on the real libraries by that test, and :data:`SUPPORTED` lists the
versions those tests pass on: an upgrade that moves a private name fails one test named after it.

Importing this module imports nothing but the standard library: each function imports what it reads. The
ssh runner copies this file to boards that have only numpy and LiteRT (:mod:`edge_attn.runners.remote_bench`
calls :func:`interpreter_ops`).
"""

# The versions the private names below were checked on (pyproject.toml's pins; tests/test_compat.py checks
# both against the installed packages). Lower bound inclusive, upper bound exclusive.
SUPPORTED = {
    "tensorflow": ("2.21", "2.22"),
    "tf-keras": ("2.21", "2.22"),
    "tensorflow-model-optimization": ("0.8.1", "0.9"),
    "ai-edge-litert": ("2.3", "3"),
}


def unsupported_versions():
    """``package installed-version (supported: >=low,<high)`` for each installed package outside SUPPORTED."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    problems = []
    for package, (low, high) in SUPPORTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            continue
        if not Version(low) <= Version(installed) < Version(high):
            problems.append(f"{package} {installed} (supported: >={low},<{high})")
    return problems


# ---------------------------------------------------------------- Keras 2 (tf-keras): the functional graph


def is_functional(model):
    """Whether ``model`` is a functional or Sequential Keras model (one with a call graph to read)."""
    return bool(getattr(model, "_is_graph_network", False))


def keras_history(value):
    """``(layer, node_index, tensor_index)`` of a symbolic tensor of a functional graph; None for a constant."""
    return getattr(value, "_keras_history", None)


def is_symbolic(value):
    """Whether ``value`` is a symbolic tensor of a functional graph (not a constant)."""
    return keras_history(value) is not None


def producing_layer(tensor):
    """The layer whose call produced the symbolic ``tensor``."""
    return tensor._keras_history.layer


def producing_node(tensor):
    """The call (Keras node) that produced the symbolic ``tensor``."""
    history = tensor._keras_history
    return history.layer._inbound_nodes[history.node_index]


def inbound_nodes(layer):
    """Every call of ``layer`` (a Keras node each), in any model, in call order."""
    return list(layer._inbound_nodes)


def outbound_nodes(layer):
    """The calls that consume ``layer``'s outputs, in any model."""
    return list(layer._outbound_nodes)


def nodes_deepest_first(model):
    """The calls of a functional ``model`` in an order that computes them (inputs first), as Keras' own
    ``Functional._run_internal_graph`` walks them."""
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def calls_in_model(model, layer):
    """Indices into :func:`inbound_nodes` of ``layer``'s calls that belong to ``model`` (a layer can also
    be called in another model, e.g. a nested model's own graph)."""
    return [i for i in range(len(layer._inbound_nodes)) if f"{layer.name}_ib-{i}" in model._network_nodes]


def deserializable_layer_names():
    """The class names Keras' deserializer knows without custom objects (built-ins and registrations)."""
    from tf_keras.src.layers import serialization

    serialization.populate_deserializable_objects()
    return set(serialization.LOCAL.ALL_OBJECTS)


def tf_op_lambda_class():
    """The class of the layers Keras makes of raw TensorFlow ops called on symbolic tensors."""
    from tf_keras.src.layers.core.tf_op_layer import TFOpLambda

    return TFOpLambda


# ---------------------------------------------------------------- tensorflow-model-optimization

WRAPPER_PREFIX = "quant_"  # quantize_apply names the QuantizeWrapper of layer ``x`` ``quant_x``
# Activation range roles of a QuantizeWrapper's variables that observe the wrapped layer's output.
_OUTPUT_RANGE_ROLES = ("output", "post_activation")


def noop_quantize_config():
    """tfmot's QuantizeConfig class that leaves a layer unquantized (it keeps its input's range)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_configs import (  # noqa: E501
        NoOpQuantizeConfig,
    )

    return NoOpQuantizeConfig


def weights_only_config(config):
    """A copy of one of tfmot's default 8-bit registry configs (``Default8BitQuantizeConfig`` or
    ``Default8BitConvQuantizeConfig``: weight_attrs, activation_attrs, quantize_output) that fake-quantizes the
    layer's weights only: no activation and no output quantizer."""
    return type(config)(list(config.weight_attrs), [], False)


def is_input_quantizer(layer):
    """Whether ``layer`` is the QuantizeLayer quantize_apply puts after a model input."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    return isinstance(layer, QuantizeLayer)


def output_ranges(wrapper):
    """``(role, min_var, max_var)`` for every activation range of a QuantizeWrapper that observes the
    wrapped layer's output (tfmot names the variables ``<role>_min`` / ``<role>_max``)."""
    by_name = {v.name.rsplit("/", 1)[-1].split(":")[0]: v for v in wrapper.non_trainable_weights}
    return [(role, by_name[f"{role}_min"], by_name[f"{role}_max"])
            for role in _OUTPUT_RANGE_ROLES if f"{role}_min" in by_name]


def input_range(quantize_layer):
    """``(min_var, max_var)`` of a model input's QuantizeLayer."""
    variables = quantize_layer.non_trainable_weights
    low = [v for v in variables if v.name.endswith("_min:0")]
    high = [v for v in variables if v.name.endswith("_max:0")]
    return low[0], high[0]


def unwrapped_name(scope):
    """The wrapped layer's name for a QuantizeWrapper's name (``quant_x`` → ``x``); other names unchanged."""
    return scope[len(WRAPPER_PREFIX):] if scope.startswith(WRAPPER_PREFIX) else scope


# ---------------------------------------------------------------- LiteRT Interpreter


def interpreter_ops(interpreter):
    """The interpreter's execution plan: one dict per node (``op_name``, ``inputs``, ``outputs`` tensor
    indices; a delegate's node is ``DELEGATE``), or None when this LiteRT has no such view (old
    tflite_runtime). The public API has no per-op view."""
    if not hasattr(interpreter, "_get_ops_details"):
        return None
    return interpreter._get_ops_details()


def tensor_details(interpreter, index):
    """``get_tensor_details()``'s dict for the one tensor ``index`` (subgraph 0), without listing them all."""
    return interpreter._get_tensor_details(index, 0)


# ---------------------------------------------------------------- TFLite converter (TensorFlow)


def calibrate_only(converter):
    """Make ``converter.convert()`` stop after calibration: it returns the float model with every tensor's
    observed range recorded, for :func:`mlir_quantize` (what ``tf.lite.experimental.QuantizationDebugger``
    does, ``_set_converter_options_for_calibration`` in TF's ``tools/optimize/debugging/python/debugger.py``)."""
    converter._experimental_calibrate_only = True
    return converter


def mlir_quantize(calibrated, denylisted_nodes):
    """Quantize a :func:`calibrate_only` result to int8 with float inputs/outputs, leaving the ops whose output
    tensor names are in ``denylisted_nodes`` in float (TF's ``lite/python/convert.py``, as the debugger calls it)."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, denylisted_nodes=list(denylisted_nodes))
