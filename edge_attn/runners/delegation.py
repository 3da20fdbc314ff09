"""How much of a graph a delegate took, read from what the runtime reports, for every runner.

The host and ssh runners read LiteRT Interpreter node lists (:func:`xnnpack_placement`); CompiledModel
only says whether it is fully accelerated (:func:`compiled_model_placement`); the adb runner has
``benchmark_model``'s "Explicitly applied ... delegate" line (:func:`delegate_kernels_placement`).
Each returns a :class:`~edge_attn.runners.result.GraphPlacement` and the one-line description the
terminal shows.
"""

import re

from edge_attn.runners.result import GraphPlacement

NO_DELEGATE = "builtin CPU kernels (no delegate)"
# LiteRT's native log lines look like "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU ...".
NATIVE_ERROR = re.compile(r"^ERROR: \[[^\]]*\]\s*(\S.*)$", re.MULTILINE)


def no_delegate(total_ops):
    """Everything on the builtin kernels."""
    return GraphPlacement(accelerated_ops=0, total_ops=total_ops, partitions=0), NO_DELEGATE


def xnnpack_placement(nodes):
    """From an Interpreter's node list (``op_name``, ``inputs``, ``outputs`` per node).

    The list holds the model's ops followed by one DELEGATE node per partition; replaced ops stay listed.
    A partition's ops are found by walking back from its outputs through the ops' producers until its
    inputs: every op reached runs inside the delegate, the rest run on builtin kernels.
    """
    ops = [node for node in nodes if node["op_name"] != "DELEGATE"]
    partitions = [node for node in nodes if node["op_name"] == "DELEGATE"]
    if not partitions:
        placement = GraphPlacement(accelerated_ops=0, total_ops=len(ops), partitions=0,
                                   on_cpu=tuple(sorted({op["op_name"] for op in ops})))
        return placement, f"not delegated: all {len(ops)} ops on builtin CPU kernels"
    producer = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    delegated = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in delegated:
                continue
            delegated.add(producer[tensor])
            pending.extend(int(t) for t in ops[producer[tensor]]["inputs"] if t >= 0)
    on_cpu = [op["op_name"] for i, op in enumerate(ops) if i not in delegated]
    placement = GraphPlacement(accelerated_ops=len(delegated), total_ops=len(ops), partitions=len(partitions),
                               on_cpu=tuple(sorted(set(on_cpu))))
    count = f"{len(partitions)} partition{'s' if len(partitions) > 1 else ''}"
    if not on_cpu:
        return placement, f"completely executed by XNNPACK ({count})"
    return placement, (f"partially executed by XNNPACK ({count}); {len(on_cpu)} of {len(ops)} ops on builtin CPU "
                       f"kernels: {', '.join(placement.on_cpu)}")


def compiled_model_placement(fully_accelerated, total_ops, accelerator):
    """CompiledModel says only whether ``accelerator`` ("GPU", "XNNPACK") took every op."""
    if fully_accelerated:
        return (GraphPlacement(accelerated_ops=total_ops, total_ops=total_ops, partitions=None),
                f"completely executed by {'the GPU' if accelerator == 'GPU' else accelerator}")
    rest = "the rest on CPU" if accelerator == "GPU" else "the rest on builtin CPU kernels"
    return (GraphPlacement(accelerated_ops=None, total_ops=total_ops, partitions=None),
            f"partially executed by {'the GPU' if accelerator == 'GPU' else accelerator} ({rest})")


def delegate_kernels_placement(description, total_ops):
    """From the adb runner's reading of benchmark_model's delegate line ("completely executed by the
    delegate", "partially executed by the delegate (3 delegate kernels)", "not executed ...")."""
    if description is None:
        return None
    if description.startswith("completely"):
        return GraphPlacement(accelerated_ops=total_ops, total_ops=total_ops, partitions=None)
    if m := re.search(r"\((\d+) delegate kernels\)", description):
        return GraphPlacement(accelerated_ops=None, total_ops=total_ops, partitions=int(m[1]))
    if description.startswith("not executed"):
        return GraphPlacement(accelerated_ops=0, total_ops=total_ops, partitions=0)
    return GraphPlacement(accelerated_ops=None, total_ops=total_ops, partitions=None)
