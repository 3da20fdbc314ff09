"""GPU delegate (TFLite GPU delegate V2: OpenCL, falling back to OpenGL ES) rules, from
``docs/delegate-rules.md`` section 1.

An op is taken when the delegate has a parser for it, the op version is within the parser's cap, the per-op
check of ``gpu_compatibility.cc`` passes, and its tensors pass the delegate's filter (rank ≤ 4; runtime tensors
float, or int8/uint8 with quantized-model support, which is on by default). ``tf.lite.experimental.Analyzer``
no longer runs these checks, hence this table.

ADD/MUL broadcasting follows the *standard* mode the runtime delegate uses; the offline checker assumes the
enhanced mode and is more optimistic. Ops the GPU has parsers for but that CNNs with SE/CBAM attention do not use
(SUB, TANH, RESIZE_*, ...) are not in the table and come out as "no rule".
"""

from edge_attn.delegates.rules import (Check, Delegate, OpRule, constant_int32_input, fused_activation_in,
                                       is_float, is_quant8, max_rank, strided_slice_masks)

COMPAT = "tflite/tools/versioning/gpu_compatibility.cc"
BUILDER = "tflite/delegates/gpu/common/model_builder.cc"
HELPER = "tflite/delegates/gpu/common/model_builder_helper.cc"
GL_KERNELS = "tflite/delegates/gpu/gl/kernels/registry.cc"
PARTITIONS = "tflite/delegates/gpu/delegate.cc + tflite/delegates/utils.cc (FP16GraphPartitionHelper)"

# Every fused activation but SIGN_BIT (IsActivationSupported).
ACTIVATIONS = frozenset({"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH"})
CUSTOM_OPS = ("Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler")


def _io(runtime, constant=None, outputs=1):
    """Exactly ``runtime`` runtime inputs (an int or a set of ints), ``constant`` constant inputs (None: any),
    and ``outputs`` outputs (CheckInputsOutputs / CheckInputsConstsOutputs)."""
    allowed = {runtime} if isinstance(runtime, int) else set(runtime)

    def test(op, target):
        r, c, o = len(op.runtime_inputs), len(op.constant_inputs), len(op.outputs)
        ok = r in allowed and (constant is None or c == constant) and o == outputs
        found = f"{r} runtime input(s)" + ("" if constant is None else f" + {c} constant") + f", {o} output(s)"
        if ok:
            return True, found
        wanted = "/".join(str(n) for n in sorted(allowed)) + " runtime input(s)"
        wanted += "" if constant is None else f" + {constant} constant"
        return False, f"expects {wanted} and {outputs} output(s), node has {found}"
    return Check(test, COMPAT)


def _positive_options(*names, what):
    def test(op, target):
        values = [op.options.get(name, 1) for name in names]
        text = f"{what} {'×'.join(str(v) for v in values)}"
        return (all(v > 0 for v in values), text if all(v > 0 for v in values) else f"{text} must be > 0")
    return Check(test, COMPAT)


def _tensor_types(op, target):
    """Runtime tensors must be float, or int8/uint8 (quantized models); int32 only as GATHER indices."""
    quantized = False
    for position, tensor in [(i, t) for i, t in enumerate(op.inputs)] + [(-1, t) for t in op.outputs]:
        if tensor is None or op.is_static(tensor) or is_float(tensor):
            continue
        if op.op == "GATHER" and position == 1 and tensor.dtype == "int32":
            continue
        if is_quant8(tensor):
            quantized = True
            continue
        return False, (f"runtime {tensor.dtype} tensor '{tensor.name}' (the GPU takes float32/float16, and "
                       "int8/uint8 in quantized models)")
    if quantized:
        return True, "int8 tensors (quantized-model support, on by default: computed in float)"
    return True, "float runtime tensors"


def _broadcast(op, target):
    """ADD/MUL inputs of different ranks (both > 1): only the standard-mode forms of
    CheckAddMulBroadcastCompatibility."""
    if len(op.inputs) < 2 or op.input(0) is None or op.input(1) is None:
        return None
    a, b = op.input(0).shape, op.input(1).shape
    if len(a) <= 1 or len(b) <= 1 or len(a) == len(b):
        return None
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    ok = len(longer) == 4 and (
        (len(shorter) == 3 and longer[0] == 1)
        or (len(shorter) == 2 and longer[0] == 1 and tuple(shorter) == (1, 1))
        or (len(shorter) == 2 and longer[0] == shorter[0] and longer[3] == shorter[1]))
    shapes = f"{list(shorter)} against {list(longer)}"
    if ok:
        return True, f"broadcast {shapes} is a supported form"
    return False, (f"broadcast {shapes} not supported (runtime check: a 4-D tensor only broadcasts with 3-D "
                   "(batch 1), 2-D [1, 1] or 2-D [batch, channels])")


def _two_inputs(op, target):
    return len(op.inputs) == 2, f"{len(op.inputs)} inputs" + ("" if len(op.inputs) == 2 else ", needs exactly 2")


def _depthwise_shapes(op, target):
    x, w, bias, y = op.input(0), op.input(1), op.input(2), op.outputs[0]
    multiplier = op.options.get("depthMultiplier", 1)
    if any(len(t.shape) != 4 for t in (x, w, y)):
        return False, "input, filter and output must be 4-D"
    problems = []
    if x.shape[0] != y.shape[0]:
        problems.append("input batch != output batch")
    if w.shape[3] != y.shape[3]:
        problems.append("filter last dim != output channels")
    if y.shape[3] != x.shape[3] * multiplier:
        problems.append("output channels != input channels × depth_multiplier")
    if bias is not None and bias.shape and bias.shape[0] != y.shape[3]:
        problems.append("bias size != output channels")
    if multiplier != 1 and x.shape[3] != 1:
        problems.append(f"depth_multiplier {multiplier} with {x.shape[3]} input channels (only 1 channel "
                        "allows a multiplier)")
    return (not problems, "; ".join(problems) if problems else f"depthwise shapes fine (multiplier {multiplier})")


def _fully_connected(op, target):
    if op.options.get("weightsFormat", 0) != 0:
        return False, "shuffled weights format not supported"
    first = op.input(0)
    if first is None or first.is_constant:
        return False, "first input is constant"
    if len(op.runtime_inputs) > 2:
        return False, f"{len(op.runtime_inputs)} runtime inputs (at most 2)"
    if op.options.get("keepNumDims") and len(first.shape) != len(op.outputs[0].shape):
        return False, (f"keep_num_dims with input rank {len(first.shape)} != output rank "
                       f"{len(op.outputs[0].shape)}")
    return True, "default weights format, runtime input first" + (", keep_num_dims with equal ranks"
                                                                 if op.options.get("keepNumDims") else "")


def _reshape_shape(op, target):
    runtime = len(op.runtime_inputs)
    if runtime == 1 and len(op.outputs) == 1:
        return True, "shape constant or absent (new shape taken from the output tensor)"
    return False, f"shape tensor computed at runtime ({runtime} runtime inputs; the GPU needs a constant shape)"


def _paddings(op, target):
    paddings = op.input(1)
    if paddings is None:
        return False, "paddings tensor missing"
    shape = tuple(paddings.shape)
    return shape in ((4, 2), (3, 2)), (f"paddings shape {list(shape)}" +
                                       ("" if shape in ((4, 2), (3, 2)) else ", needs 4×2 or 3×2"))


def _output_quantized(op, target):
    has = bool(op.outputs and op.outputs[0].scales)
    return has, "output has quantization parameters" if has else "output has no quantization parameters"


def _dequantize_input(op, target):
    source = op.input(0)
    if source is not None and source.dtype == "int16":
        return False, "int16 input not supported"
    if source is not None and source.is_constant:
        return True, f"constant {source.dtype} input folded into a float constant"
    return True, f"{source.dtype if source else '?'} input becomes a fake-quant node in float"


def _softmax_beta(op, target):
    beta = op.options.get("beta", 1.0)
    return beta == 1.0, f"beta {beta:g}" + ("" if beta == 1.0 else " (only beta = 1)")


def _strided_slice(op, target):
    masks = strided_slice_masks(op)
    problems = [f"{', '.join(masks)} mask set"] if masks else []
    if len(op.inputs) < 4:
        problems.append("needs 4 inputs")
    rank = len(op.input(0).shape)
    if rank not in (3, 4):
        problems.append(f"input rank {rank} (only 3 or 4)")
    strides = op.input(3)
    if strides is not None and any(v <= 0 for v in op.ints(strides) or ()):
        problems.append("non-positive stride (no reverse slicing)")
    return not problems, "; ".join(problems) if problems else f"rank-{rank} slice, no masks, positive strides"


def _transpose_perm(op, target):
    perm = op.input(1)
    size = perm.shape[0] if perm is not None and perm.shape else 0
    return size in (2, 3, 4), f"permutation of length {size}" + ("" if size in (2, 3, 4) else " (only 2, 3 or 4)")


def _gather(op, target):
    indices = op.input(1)
    r, c = len(op.runtime_inputs), len(op.constant_inputs)
    if (r, c) not in ((2, 0), (1, 1)):
        return False, f"{r} runtime + {c} constant operands (1 or 2 operands, at most one constant)"
    if indices is None or len(indices.shape) != 1 or indices.dtype != "int32":
        return False, "indices must be 1-D int32"
    return True, "1-D int32 indices"


def _opengl_mean(op, target):
    """Not a rejection: where the OpenGL ES fallback cannot run a MEAN the OpenCL backend can."""
    axes = op.input(1)
    x, y = op.input(0), op.outputs[0]
    values = op.ints(axes) if axes is not None else None
    if values is None or len(x.shape) != 4:
        return None
    spatial = sorted(a % 4 for a in values) == [1, 2]
    if spatial and len(y.shape) == 4 and tuple(y.shape[1:3]) == (1, 1):
        return None
    return True, "OpenCL only: the OpenGL ES fallback reduces MEAN over H, W to 1×1 only"


POOL = (_io(1), _positive_options("filterHeight", "filterWidth", what="kernel"),
        _positive_options("strideH", "strideW", what="strides"), fused_activation_in(ACTIVATIONS, COMPAT))
CONV = (_io({1, 2}), _positive_options("strideH", "strideW", what="strides"),
        _positive_options("dilationHFactor", "dilationWFactor", what="dilation"),
        fused_activation_in(ACTIVATIONS, COMPAT))
NO_OPENGL = "OpenCL only: the OpenGL ES backend has no kernel for this op"

RULES = {
    "CONV_2D": OpRule(COMPAT, CONV, max_version=6),
    "DEPTHWISE_CONV_2D": OpRule(COMPAT, CONV + (Check(_depthwise_shapes, COMPAT),), max_version=6),
    "FULLY_CONNECTED": OpRule(COMPAT, (Check(_fully_connected, COMPAT),), max_version=9),
    "ADD": OpRule(COMPAT, (Check(_two_inputs, COMPAT), Check(_broadcast, COMPAT),
                           fused_activation_in(ACTIVATIONS, HELPER)), max_version=2),
    "MUL": OpRule(COMPAT, (Check(_two_inputs, COMPAT), Check(_broadcast, COMPAT),
                           fused_activation_in(ACTIVATIONS, COMPAT)), max_version=3),
    "MEAN": OpRule(COMPAT, (constant_int32_input(1, "axis", COMPAT), _io(1, constant=1),
                            Check(_opengl_mean, GL_KERNELS))),
    "SUM": OpRule(COMPAT, (constant_int32_input(1, "axis", COMPAT), _io(1)), note=NO_OPENGL),
    "REDUCE_MAX": OpRule(COMPAT, (constant_int32_input(1, "axis", COMPAT), _io(1)), note=NO_OPENGL),
    "LOGISTIC": OpRule(COMPAT, (_io(1, constant=0),), max_version=2),
    "RELU": OpRule(COMPAT, max_version=2),
    "RELU6": OpRule(COMPAT, max_version=2),
    "HARD_SWISH": OpRule(COMPAT, (_io(1),)),
    "CONCATENATION": OpRule(COMPAT, max_version=2),
    "RESHAPE": OpRule(COMPAT, (Check(_reshape_shape, COMPAT),), max_version=1),
    "MAX_POOL_2D": OpRule(COMPAT, POOL, max_version=2),
    "AVERAGE_POOL_2D": OpRule(COMPAT, POOL, max_version=2),
    "PAD": OpRule(COMPAT, (_io(1), Check(_paddings, COMPAT)), max_version=2),
    "PADV2": OpRule(COMPAT, (_io(1), Check(_paddings, COMPAT)), max_version=2),
    "QUANTIZE": OpRule(COMPAT, (_io(1), Check(_output_quantized, BUILDER)), max_version=2,
                       note="runs as a fake-quant node in float"),
    "DEQUANTIZE": OpRule(COMPAT, (Check(_dequantize_input, COMPAT),), max_version=3),
    "SOFTMAX": OpRule(COMPAT, (Check(_softmax_beta, COMPAT),), max_version=2,
                      note="computed over the last (channel) axis"),
    "STRIDED_SLICE": OpRule(COMPAT, (Check(_strided_slice, COMPAT),), max_version=4),
    "PACK": OpRule(COMPAT, note="becomes a reshape/concat on the GPU"),
    "TRANSPOSE": OpRule(COMPAT, (_io(1), Check(_transpose_perm, BUILDER)), max_version=4, note=NO_OPENGL),
    "GATHER": OpRule(COMPAT, (Check(_gather, COMPAT),), max_version=1),
    "SHAPE": OpRule(BUILDER, never="SHAPE: the GPU delegate has no parser for it"),
    "TOPK_V2": OpRule(BUILDER, never="TOPK_V2: the GPU delegate has no parser for it"),
    "ARG_MAX": OpRule(BUILDER, never="ARG_MAX: the GPU delegate has no parser for it"),
    **{f"CUSTOM:{name}": OpRule(COMPAT) for name in CUSTOM_OPS},
    "CUSTOM:*": OpRule(COMPAT, never=f"custom op: the GPU delegate only takes {', '.join(CUSTOM_OPS)}"),
}


def _is_fp16_weight_dequantize(op):
    source = op.input(0)
    return op.op == "DEQUANTIZE" and source is not None and source.is_constant and source.dtype == "float16"


def candidates(graph, supported):
    """FP16GraphPartitionHelper: a fully supported graph is taken whole; otherwise the fp16 weight DEQUANTIZE
    nodes stay on the CPU."""
    if len(supported) == len(graph.ops):
        return set(supported)
    return {i for i in supported if not _is_fp16_weight_dequantize(graph.ops[i])}


def warnings(graph, verdicts, target):
    found = []
    if any(is_quant8(t) and not t.is_constant for t in graph.info.tensors):
        found.append("quantized model: the GPU computes in float — fp16 with the Java and benchmark_model "
                     "defaults (precision loss allowed), fp32 with the C API default; int8 weights are dequantized "
                     "once, int8 activations stay on their grid through fake-quant nodes, and int8 graph "
                     "inputs/outputs are (de)quantized on the CPU every inference (prefer float I/O) "
                     f"[{BUILDER}, tflite/delegates/gpu/delegate_options.cc]")
        found.append("quantized model on LiteRT's WebGPU accelerator (ai-edge-litert 2.3): measured on Mesa lavapipe, "
                     "int8 SE/CBAM models were reported fully accelerated yet returned wrong numbers (a constant "
                     "output after a WGSL shader type error, or logits far from the CPU's) — check the real "
                     "accelerator with `compat --delegate gpu --verify` [docs/delegate-rules-gpu.md]")
    opencl_only = sorted({f"{v.op} #{v.index}" for v in verdicts if v.supported and
                          any(r.startswith("OpenCL only") for r in v.reasons)}, key=lambda s: int(s.split("#")[1]))
    if opencl_only:
        listed = ", ".join(opencl_only[:6]) + (f" and {len(opencl_only) - 6} more" if len(opencl_only) > 6 else "")
        found.append(f"needs the OpenCL backend: the OpenGL ES fallback cannot run {listed} [{GL_KERNELS}]")
    return found


GPU = Delegate(name="gpu", rules=RULES, checks=(max_rank(4, BUILDER), Check(_tensor_types, BUILDER)),
               max_partitions=1, partitions_source=PARTITIONS, candidates=candidates, warnings=warnings)
