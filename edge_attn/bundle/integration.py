"""The ``INTEGRATION.md`` written into a bundle: how to add the model to an Android or iOS app.

Android: LiteRT's Maven artifact ``com.google.ai.edge.litert:litert`` (the renamed ``org.tensorflow:tensorflow-lite``,
https://ai.google.dev/edge/litert/migration) keeps the ``org.tensorflow.lite`` Java API. Assets must stay
uncompressed so the interpreter can memory-map the model (``androidResources { noCompress += "tflite" }``).
iOS: the ``TensorFlowLiteSwift`` CocoaPod (https://ai.google.dev/edge/litert/ios/quickstart).
"""

LITERT_ANDROID_VERSION = "2.1.0"  # the version the LiteRT migration guide names; newer 2.x releases work the same


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
        "version": LITERT_ANDROID_VERSION,
    }
    text = (_ANDROID if manifest["target"] == "android" else _IOS).format(**values)
    if inp["dtype"] != "int8" or out["dtype"] != "int8":
        # The snippets are written for the int8 models edge_attn's int8 recipes make.
        text += (f"\nNote: this model has {inp['dtype']} input and {out['dtype']} output; the snippets above quantize "
                 "to int8 — for float tensors feed the normalized values as floats and read floats back.\n")
    return text


def _num(value):
    return "1.0" if value is None else repr(float(value))


_ANDROID = """# {name} — Android integration

Files: `assets/{model_file}` (LiteRT model with TFLite metadata and `labels.txt` inside),
`assets/{labels_file}`, `edge_attn_manifest.json` (hashes, tensor specs, delegate order).
Copy `assets/` into `app/src/main/assets/`.

Input: {in_dtype} {shape}, `q = round(((pixel - {mean}) / {std}) / {in_scale}) + {in_zero_point}`.
Output: {out_dtype} class logits, `logit = {out_scale} * (q - {out_zero_point})`, one per line of `{labels_file}`.
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
    val input = ByteBuffer.allocateDirect(pixels.size).order(ByteOrder.nativeOrder())
    for (p in pixels) {{
        val q = (((p - {mean}f) / {std}f) / {in_scale}f).roundToInt() + {in_zero_point}
        input.put(q.coerceIn(-128, 127).toByte())
    }}
    val output = Array(1) {{ ByteArray(labels.size) }}
    interpreter.run(input.rewind(), output)
    val logits = output[0].map {{ {out_scale}f * (it - {out_zero_point}) }}
    return labels[logits.indices.maxBy {{ logits[it] }}]
}}
```
"""

_IOS = """# {name} — iOS integration

Files: `Resources/{model_file}` (LiteRT model with TFLite metadata and `labels.txt` inside),
`Resources/{labels_file}`, `edge_attn_manifest.json` (hashes, tensor specs, delegate order).
Drag `Resources/` into the Xcode target ("Copy items if needed", target membership on).

Input: {in_dtype} {shape}, `q = round(((pixel - {mean}) / {std}) / {in_scale}) + {in_zero_point}`.
Output: {out_dtype} class logits, `logit = {out_scale} * (q - {out_zero_point})`, one per line of `{labels_file}`.
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
    let input = pixels.map {{ p -> Int8 in
        let q = Int((((p - {mean}) / {std}) / {in_scale}).rounded()) + {in_zero_point}
        return Int8(clamping: q)
    }}
    try interpreter.copy(Data(bytes: input, count: input.count), toInputAt: 0)
    try interpreter.invoke()
    let output = try interpreter.output(at: 0).data.map {{ Int8(bitPattern: $0) }}
    let logits = output.map {{ {out_scale} * Float(Int($0) - {out_zero_point}) }}
    return labels[logits.indices.max {{ logits[$0] < logits[$1] }}!]
}}
```
"""
