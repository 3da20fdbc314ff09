"""Checking a converted model against its float reference: accuracy and agreement (``compare``), per-layer
error (``per_layer``), latency (``latency``) and the report files (``report``).

Import the submodules directly; this package imports nothing so that ``import edge_attn`` stays cheap.
"""
