"""Real targets: runtimes and vendor compilers that run (or compile) a .tflite the way a device would.

What a target accepts is asked of the target itself (LiteRT's GPU accelerator, Qualcomm's HTP compiler),
not guessed from hand rules. The GPU accelerator returns a :class:`~edge_attn.targets.result.TargetResult`;
the NPU compile its :class:`~edge_attn.targets.qnn.QnnResult`; both ``to_dict()`` give the one result shape of
:mod:`edge_attn.result_shape`, the same keys as the host/adb/ssh runners' results.
"""
