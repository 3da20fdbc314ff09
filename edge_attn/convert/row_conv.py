"""Lower thin convolutions (one or two channels in and out, like CBAM's k×k spatial-attention conv) to row convolutions.

XNNPACK (and TFLite's own kernels) run a CONV_2D through an im2col-style GEMM whose output dimension is the
conv's output channels. With one output channel and one or two input channels, that GEMM is a sliver: CBAM's
7×7 single-filter conv on a 16×16 map took 4.8 µs int8 on this project's AMD EPYC (XNNPACK, 2 threads) — more
than a 3×3 16→16 conv with 47× its multiply-adds (1.8 µs) — and it runs twice in every CBAM block of the
split (``SpatialAttention.decompose``) form. It was the largest share of why int8 ``cbam_resnet20`` was 2.4×
int8 ``se_resnet20`` at 16×16 (issue 14, part 3).

The rewrite puts the width axis into the channels. A conv with kernel ``kh × kw``, ``Cin → Cout`` channels, on an
``N × H × W × Cin`` tensor is exactly

    RESHAPE (N, H, W, Cin) → (N, H, 1, W·Cin)          (NHWC memory order: a free relabelling)
    CONV_2D kernel kh × 1, W·Cin → Wo·Cout channels     (same stride, dilation and padding along H)
    RESHAPE (N, Ho, 1, Wo·Cout) → (N, Ho, Wo, Cout)

where the new conv's weight for output channel ``wo·Cout + co`` and input channel ``wi·Cin + ci`` at row ``dy`` is
the original ``w[co, dy, dx, ci]`` for the ``dx`` with ``wi = wo·stride_w + dx·dilation_w − pad_left`` and zero
elsewhere (the width padding and stride become the band's shape). Every output is the same sum of the same
integer products as before — the band's zeros stand for the padding, which the int8 kernels pad with the input
zero point, i.e. a zero term — and each new output channel keeps its original channel's weight scale, bias and
output quantization, so int8 and int16x8 outputs are bit-identical (tests/test_row_conv.py checks that against
LiteRT running the original model) and float ones equal up to summation order.

The GEMM now has ``Wo·Cout`` outputs instead of ``Cout``. Measured on the AMD EPYC (int8, 2 threads, the conv
alone): 7×7 one-filter conv 1→1 at 16×16 4.2 → 2.5 µs, at 56×56 37.9 → 3.5 µs, at 112×112 152 → 13 µs; 2→1
at 16×16 4.4 → 1.3 µs. With more channels the band's multiply-adds (W/kw times the original's) stop paying —
16 → 1 channels at 56×56, 3×3: 17 → 27 µs — hence the limits :data:`MAX_CHANNEL_PRODUCT` and
:data:`MAX_BAND_WEIGHTS` (the band's weight count, which also bounds the bytes the rewrite adds to the file).
"""

import dataclasses

import numpy as np

from edge_attn.convert.flatbuffer_pass import builtin as _builtin
from edge_attn.convert.flatbuffer_pass import constant_data, new_constant, new_tensor, opcode_index, read, rewrite_subgraphs
from edge_attn.convert.flatbuffer_pass import tensor_name as _name
from edge_attn.convert.inspect import schema

# Lowered when Cin·Cout is at most this: at 4 (2→2, 4→1, 1→4) the band lost to the original in some shapes
# (2→4 3×3 at 16×16: 2.1 vs 3.4 µs), at ≤ 2 it won or tied in every measured shape from 4×4 to 112×112.
MAX_CHANNEL_PRODUCT = 2
# And when the band has at most this many weights (7×7, 2 → 1 at 112×112 is 175,616: 157 → 26 µs).
MAX_BAND_WEIGHTS = 262_144
# A 1-wide kernel has nothing to gain (its GEMM already reads one input per output row).
MIN_KERNEL_WIDTH = 2

# The name scope of the tensors the rewrite adds: ``<conv output>/edge_attn_row_conv/{rows_in,rows_out,band,...}``.
ROW_CONV_SCOPE = "edge_attn_row_conv"

_WEIGHT_DTYPES = {schema.TensorType.INT8: np.int8, schema.TensorType.FLOAT32: np.float32}


@dataclasses.dataclass(frozen=True)
class LoweredConv:
    """One CONV_2D that became a row convolution."""

    tensor: str  # the conv's output tensor name (kept by the final RESHAPE)
    input_shape: tuple  # (N, H, W, Cin)
    kernel: tuple  # (kh, kw)
    channels: tuple  # (Cin, Cout)
    band_weights: int


def lower_thin_convs(tflite_bytes):
    """``(flatbuffer bytes, [LoweredConv])``; the input bytes unchanged when no conv qualifies."""
    return rewrite_subgraphs(tflite_bytes, _lower_subgraph)


def lowered_convs(tflite_bytes):
    """The row convolutions this module made in a .tflite: ``[{tensor, band}]`` (the first part of the conv's
    output tensor name as the converter wrote it, and the band's OHWI shape), read back from the file's tensor
    names."""
    model = read(tflite_bytes)
    found = []
    for graph in model.subgraphs:
        for op in graph.operators or []:
            if _builtin(model, op) != schema.BuiltinOperator.CONV_2D or len(op.inputs) < 2:
                continue
            name = _name(graph.tensors[op.outputs[0]])
            if name.endswith(f"/{ROW_CONV_SCOPE}/rows_out"):
                band = graph.tensors[op.inputs[1]]
                found.append({"tensor": name[: -len(f"/{ROW_CONV_SCOPE}/rows_out")],
                              "band": [int(d) for d in band.shape]})
    return found


def _static_shape(tensor):
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
    signature = tensor.shapeSignature
    if signature is not None and len(signature) and any(int(d) < 0 for d in signature):
        return None
    return shape


def _padding_left(padding, size, out_size, kernel, stride, dilation):
    """TFLite's ComputePadding for one axis: SAME puts the odd pixel of padding on the right/bottom."""
    if padding == schema.Padding.VALID:
        return 0
    effective = (kernel - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - size, 0) // 2


def _plan(model, graph, op):
    """``(x, w, b, out, weights, bias, options, in_shape, out_shape)`` — the input, weight, bias and output
    tensors, the weight and bias arrays, the conv's options and the static shapes — for a CONV_2D the rewrite
    applies to, else None."""
    if _builtin(model, op) != schema.BuiltinOperator.CONV_2D or len(op.inputs) < 2 or len(op.outputs) != 1:
        return None
    if op.intermediates is not None and len(op.intermediates):
        return None
    x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    b = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    out = graph.tensors[op.outputs[0]]
    weights = constant_data(model, w) if w.type in _WEIGHT_DTYPES else None
    bias = constant_data(model, b) if b is not None else None
    if weights is None or (b is not None and bias is None) or weights.ndim != 4:
        return None
    if w.type == schema.TensorType.FLOAT32 and x.type != schema.TensorType.FLOAT32:
        return None
    if w.type == schema.TensorType.INT8 and x.type == schema.TensorType.FLOAT32:
        return None  # hybrid (dynamic-range) conv: leave its on-the-fly input quantization alone
    quantization = w.quantization
    if quantization is not None and quantization.zeroPoint is not None and np.any(np.asarray(quantization.zeroPoint)):
        return None  # an asymmetric weight's zero would not be the integer 0
    in_shape, out_shape = _static_shape(x), _static_shape(out)
    if in_shape is None or out_shape is None or len(in_shape) != 4 or len(out_shape) != 4:
        return None
    options = op.builtinOptions
    if not isinstance(options, schema.Conv2DOptionsT):
        return None
    cout, kh, kw, cin = weights.shape
    n, _, width, in_channels = in_shape
    _, _, out_width, out_channels = out_shape
    if in_channels != cin or out_channels != cout or kw < MIN_KERNEL_WIDTH or cin * cout > MAX_CHANNEL_PRODUCT:
        return None
    if kh * width * cin * out_width * cout > MAX_BAND_WEIGHTS:
        return None
    return x, w, b, out, weights, bias, options, in_shape, out_shape


def _band(weights, width, out_width, stride, dilation, pad_left):
    """The row conv's kernel, OHWI: (Wo·Cout, kh, 1, W·Cin)."""
    cout, kh, kw, cin = weights.shape
    band = np.zeros((out_width, cout, kh, width, cin), weights.dtype)
    for wo in range(out_width):
        for dx in range(kw):
            wi = wo * stride + dx * dilation - pad_left
            if 0 <= wi < width:
                band[wo, :, :, wi, :] = weights[:, :, dx, :]
    return band.reshape(out_width * cout, kh, 1, width * cin)


def _tiled_quantization(quantization, channels, repeats):
    """Per-channel parameters repeated for each output column; per-tensor ones (or none) as they are."""
    if quantization is None or quantization.scale is None or len(quantization.scale) != channels:
        return quantization
    tiled = schema.QuantizationParametersT()
    tiled.scale = np.tile(np.asarray(quantization.scale, np.float32), repeats)
    tiled.zeroPoint = np.tile(np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None
                                         else np.zeros(channels), np.int64), repeats)
    for field in ("min", "max"):
        values = getattr(quantization, field)
        if values is not None and len(values) == channels:
            setattr(tiled, field, np.tile(np.asarray(values, np.float32), repeats))
    tiled.quantizedDimension = 0
    return tiled


def _lower_subgraph(model, graph):
    plans = [(index, _plan(model, graph, op)) for index, op in enumerate(graph.operators or [])]
    plans = [(index, plan) for index, plan in plans if plan is not None]
    if not plans:
        return []
    reshape_code = opcode_index(model, schema.BuiltinOperator.RESHAPE)
    replaced, lowered = {}, []
    for index, (x, w, b, out, weights, bias, options, in_shape, out_shape) in plans:
        op = graph.operators[index]
        cout, kh, kw, cin = weights.shape
        n, _, width, _ = in_shape
        _, out_height, out_width, _ = out_shape
        pad_left = _padding_left(options.padding, width, out_width, kw, options.strideW, options.dilationWFactor)
        band = _band(weights, width, out_width, options.strideW, options.dilationWFactor, pad_left)

        # Every new tensor is named after the conv's output (which the last RESHAPE keeps), so name-based
        # matching (per-layer error, precision rules) attributes the three ops to the conv's layer.
        # (The first of the fused names the converter joined with ";" is enough, and keeps the file small.)
        named = _name(out).split(";")[0] + "/" + ROW_CONV_SCOPE
        rows_in = _new_like(graph, x, f"{named}/rows_in", [n, in_shape[1], 1, width * cin])
        rows_out = _new_like(graph, out, f"{named}/rows_out", [n, out_height, 1, out_width * cout])
        inputs = [rows_in, new_constant(model, graph, f"{named}/band", band, w.type,
                                         _tiled_quantization(w.quantization, cout, out_width))]
        if b is not None:
            inputs.append(new_constant(model, graph, f"{named}/bias", np.tile(bias, out_width), b.type,
                                        _tiled_quantization(b.quantization, cout, out_width)))

        conv = schema.OperatorT()
        conv.opcodeIndex, conv.inputs, conv.outputs = op.opcodeIndex, inputs, [rows_out]
        conv.builtinOptionsType = schema.BuiltinOptions.Conv2DOptions
        conv.builtinOptions = schema.Conv2DOptionsT()
        for field, value in vars(options).items():
            setattr(conv.builtinOptions, field, value)
        conv.builtinOptions.strideW, conv.builtinOptions.dilationWFactor = 1, 1
        replaced[index] = [
            _reshape(model, graph, reshape_code, op.inputs[0], rows_in, f"{named}/rows_in_shape"),
            conv,
            _reshape(model, graph, reshape_code, rows_out, op.outputs[0], f"{named}/rows_out_shape"),
        ]
        lowered.append(LoweredConv(_name(out), in_shape, (kh, kw), (cin, cout), int(band.size)))
    graph.operators = [new for index, op in enumerate(graph.operators) for new in replaced.get(index, [op])]
    return lowered


def _new_like(graph, like, name, shape):
    """A new activation tensor with ``like``'s type and quantization (a reshape keeps both)."""
    return new_tensor(graph, name, shape, like.type, like.quantization)


def _reshape(model, graph, reshape_code, source, target, shape_name):
    shape = np.asarray(graph.tensors[target].shape, np.int32)
    shape_tensor = new_constant(model, graph, shape_name, shape, schema.TensorType.INT32, None)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = reshape_code, [source, shape_tensor], [target]
    op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    op.builtinOptions = schema.ReshapeOptionsT()
    op.builtinOptions.newShape = shape
    return op
