"""The ``INTEGRATION.md`` written into a bundle: how to add the model to an Android or iOS app.

Android: LiteRT's Maven artifact ``com.google.ai.edge.litert:litert`` (the renamed ``org.tensorflow:tensorflow-lite``,
https://ai.google.dev/edge/litert/migration) keeps the ``org.tensorflow.lite`` Java API. Assets must stay
uncompressed so the interpreter can memory-map the model (``androidResources { noCompress += "tflite" }``).
iOS: the ``TensorFlowLiteSwift`` CocoaPod (https://ai.google.dev/edge/litert/ios/quickstart).
"""

LITERT_ANDROID_VERSION = "2.1.0"  # the version the LiteRT migration guide names; newer 2.x releases work the same
TASK_VISION_VERSION = "0.4.4"  # org.tensorflow:tensorflow-lite-task-vision, the release tests/ run (Python wheel)


def integration_markdown(manifest):
    """The integration notes for ``manifest`` (a bundle manifest dict): its target's template filled with
    the manifest's file names, normalization and quantization parameters."""
    inp, out = manifest["input"], manifest["output"]
    values = {
        "name": manifest["name"],
        "model_file": manifest["model"]["file"].rsplit("/", 1)[-1],
        "model_file_stem": manifest["model"]["file"].rsplit("/", 1)[-1].removesuffix(".tflite"),
        "labels_file": manifest["labels"]["file"].rsplit("/", 1)[-1],
        "in_scale": _num(inp["scale"]), "in_zero_point": inp["zero_point"] or 0,
        "out_scale": _num(out["scale"]), "out_zero_point": out["zero_point"] or 0,
        "mean": _num(inp["normalization"]["mean"][0]), "std": _num(inp["normalization"]["std"][0]),
        "in_dtype": inp["dtype"], "out_dtype": out["dtype"],
        "shape": "×".join(str(d) for d in inp["shape"]),
        "delegates": " → ".join(manifest["delegates"]["order"]),
        "version": LITERT_ANDROID_VERSION, "task_version": TASK_VISION_VERSION,
    }
    values |= _io_snippets(inp["dtype"], out["dtype"], values)
    text = (_ANDROID if manifest["target"] == "android" else _IOS).format(**values)
    task_library = [c for c in manifest.get("consumers", []) if c["consumer"] == "Task Library ImageClassifier"]
    if manifest["target"] == "android" and task_library and task_library[0]["works"]:
        text += _TASK_LIBRARY.format(**values)
    return text


def _io_snippets(in_dtype, out_dtype, v):
    """The Kotlin/Swift lines that fill the input and read the output, for the tensors' types."""
    if in_dtype == "uint8":
        rule = (f"the pixels as they are (the tensor's scale {v['in_scale']} = 1/std and zero point "
                f"{v['in_zero_point']} = mean make them `(pixel - {v['mean']}) / {v['std']}`)")
    elif in_dtype in ("float32", "float16"):
        rule = f"`(pixel - {v['mean']}) / {v['std']}` as float32"
    else:
        rule = f"`q = round(((pixel - {v['mean']}) / {v['std']}) / {v['in_scale']}) + {v['in_zero_point']}`"
    quantize = f"(((p - {v['mean']}f) / {v['std']}f) / {v['in_scale']}f).roundToInt() + {v['in_zero_point']}"
    swift_q = f"Int((((p - {v['mean']}) / {v['std']}) / {v['in_scale']}).rounded()) + {v['in_zero_point']}"
    if in_dtype in ("float32", "float16"):
        kt_in = ("4 * pixels.size", f"input.putFloat((p - {v['mean']}f) / {v['std']}f)")
        sw_in = (f"let input = pixels.map {{ ($0 - {v['mean']}) / {v['std']} }}",
                 "Data(bytes: input, count: input.count * 4)")
    else:
        low, high, swift_type = (0, 255, "UInt8") if in_dtype == "uint8" else (-128, 127, "Int8")
        kt_in = ("pixels.size", f"input.put(({quantize}).coerceIn({low}, {high}).toByte())")
        sw_in = (f"let input = pixels.map {{ p -> {swift_type} in {swift_type}(clamping: {swift_q}) }}",
                 "Data(bytes: input, count: input.count)")
    if out_dtype in ("float32", "float16"):
        kt_out = ("FloatArray(labels.size)", "output[0].toList()")
        sw_out = "let logits = try interpreter.output(at: 0).data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }"
        out_rule = "float32 class logits"
    else:
        byte = "(it.toInt() and 0xFF)" if out_dtype == "uint8" else "it"
        swift_map = "" if out_dtype == "uint8" else ".map { Int8(bitPattern: $0) }"
        kt_out = ("ByteArray(labels.size)", f"output[0].map {{ {v['out_scale']}f * ({byte} - {v['out_zero_point']}) }}")
        sw_out = (f"let logits = try interpreter.output(at: 0).data{swift_map}"
                  f".map {{ {v['out_scale']} * Float(Int($0) - {v['out_zero_point']}) }}")
        out_rule = f"{out_dtype} class logits, `logit = {v['out_scale']} * (q - {v['out_zero_point']})`"
    return {"input_rule": rule, "output_rule": out_rule, "kt_input_bytes": kt_in[0], "kt_put": kt_in[1],
            "kt_output": kt_out[0], "kt_logits": kt_out[1], "sw_input": sw_in[0], "sw_data": sw_in[1],
            "sw_logits": sw_out}


def _num(value):
    return "1.0" if value is None else repr(float(value))


_ANDROID = """# {name} — Android integration

Files: `assets/{model_file}` (LiteRT model with TFLite metadata and `labels.txt` inside),
`assets/{labels_file}`, `edge_attn_manifest.json` (hashes, tensor specs, delegate order).
Copy `assets/` into `app/src/main/assets/`.

Input: {in_dtype} {shape}, {input_rule}.
Output: {output_rule}, one per line of `{labels_file}`.
Recommended delegates: {delegates} (see `delegates` in the manifest for the reasons).

## Gradle (`app/build.gradle.kts`)

```kotlin
android {{
    androidResources {{ noCompress += "tflite" }}  // the interpreter memory-maps the model
}}
dependencies {{
    implementation("com.google.ai.edge.litert:litert:{version}")
    implementation("com.google.ai.edge.litert:litert-gpu:{version}")  // only for the GPU delegate
}}
```

## Kotlin

```kotlin
import android.content.Context
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import kotlin.math.roundToInt

fun loadModel(context: Context): Interpreter {{
    val fd = context.assets.openFd("{model_file}")
    val model = FileInputStream(fd.fileDescriptor).channel
        .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    val options = Interpreter.Options()
    if (CompatibilityList().isDelegateSupportedOnThisDevice) options.addDelegate(GpuDelegate())
    else options.setUseXNNPACK(true).setNumThreads(2)
    return Interpreter(model, options)
}}

/** pixels: channel values 0..255 in HWC order. */
fun classify(interpreter: Interpreter, pixels: FloatArray, labels: List<String>): String {{
    val input = ByteBuffer.allocateDirect({kt_input_bytes}).order(ByteOrder.nativeOrder())
    for (p in pixels) {kt_put}
    val output = Array(1) {{ {kt_output} }}
    interpreter.run(input.rewind(), output)
    val logits = {kt_logits}
    return labels[logits.indices.maxBy {{ logits[it] }}]
}}
```
"""

_IOS = """# {name} — iOS integration

Files: `Resources/{model_file}` (LiteRT model with TFLite metadata and `labels.txt` inside),
`Resources/{labels_file}`, `edge_attn_manifest.json` (hashes, tensor specs, delegate order).
Drag `Resources/` into the Xcode target ("Copy items if needed", target membership on).

Input: {in_dtype} {shape}, {input_rule}.
Output: {output_rule}, one per line of `{labels_file}`.
Recommended delegates: {delegates} (the GPU delegate is Metal on iOS).

## Podfile

```ruby
pod 'TensorFlowLiteSwift'
pod 'TensorFlowLiteSwift/Metal'  # only for the GPU (Metal) delegate
```

## Swift

```swift
import TensorFlowLite

func loadModel() throws -> Interpreter {{
    let path = Bundle.main.path(forResource: "{model_file_stem}", ofType: "tflite")!
    var options = Interpreter.Options()
    options.threadCount = 2
    let interpreter = try Interpreter(modelPath: path, options: options, delegates: [MetalDelegate()])
    try interpreter.allocateTensors()
    return interpreter
}}

/// pixels: channel values 0..255 in HWC order.
func classify(_ interpreter: Interpreter, pixels: [Float], labels: [String]) throws -> String {{
    {sw_input}
    try interpreter.copy({sw_data}, toInputAt: 0)
    try interpreter.invoke()
    {sw_logits}
    return labels[logits.indices.max {{ logits[$0] < logits[$1] }}!]
}}
```
"""

_TASK_LIBRARY = """
## Or: the Task Library (`ImageClassifier` reads the metadata: normalization and labels)

```kotlin
// dependencies {{ implementation("org.tensorflow:tensorflow-lite-task-vision:{task_version}") }}
import org.tensorflow.lite.support.image.TensorImage
import org.tensorflow.lite.task.vision.classifier.ImageClassifier

val classifier = ImageClassifier.createFromFileAndOptions(
    context, "{model_file}", ImageClassifier.ImageClassifierOptions.builder().setMaxResults(3).build())
val top = classifier.classify(TensorImage.fromBitmap(bitmap))[0].categories  // label + score (the logit)
```
"""
