"""Split a graph into delegate partitions the way TFLite's partitioner does.

Transcribes ``PartitionGraphIntoIndependentNodeSubsetsImpl`` (``tflite/graph_info.cc`` in LiteRT) in its default,
greedy mode, which ``PreviewDelegatePartitioning`` uses: the graph is cut into "epochs"; an epoch takes the kind
(delegated or not) of the first ready op in execution order, then keeps sweeping the op list and adds every ready
op of that kind — also ops that come later in execution order, as long as their inputs are ready — until a full
sweep adds nothing. A delegated epoch is one delegate partition. So one unsupported op in the middle of a chain
splits it in two, while an unsupported op on a side branch does not split ops that do not depend on it.

Approximations: control edges between stateful ops (none in SE/CBAM CNNs) are ignored, and when the delegate keeps
only its N largest partitions, ties in size are broken by position (upstream's sort is not stable).
"""


def partitions(ops, delegated):
    """The delegate partitions: tuples of op indices, in the order the partitioner forms them.

    ``ops``: the graph's ops in execution order (objects with ``inputs``/``outputs`` tensor tuples, None for an
    omitted input). ``delegated``: the indices of the ops handed to the delegate.
    """
    produced = {t.index for op in ops for t in op.outputs}
    ready = set()  # tensors written by an op already placed; tensors nobody writes are always ready
    placed = [False] * len(ops)
    result = []
    while True:
        kind, members = None, []
        progress = True
        while progress:
            progress = False
            for i, op in enumerate(ops):
                if placed[i] or any(t is not None and t.index in produced and t.index not in ready
                                    for t in op.inputs):
                    continue
                op_kind = i in delegated
                if kind is None:
                    kind = op_kind
                if op_kind != kind:
                    continue
                placed[i] = True
                members.append(i)
                for t in op.outputs:
                    ready.add(t.index)
                progress = True
        if not members:
            return result
        if kind:
            result.append(tuple(members))


def largest(parts, limit):
    """The ``limit`` largest partitions (None: all), kept in partitioner order."""
    if limit is None or len(parts) <= limit:
        return list(parts)
    ranked = sorted(range(len(parts)), key=lambda i: (-len(parts[i]), i))[:limit]
    return [parts[i] for i in sorted(ranked)]
