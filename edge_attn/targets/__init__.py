"""Real targets: runtimes that run (or compile) a .tflite the way a device would, checked against the CPU.

Each target returns a :class:`~edge_attn.targets.result.TargetResult` (one shape for every target).
"""
