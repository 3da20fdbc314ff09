"""edge_attn's version, in a module of its own so that anything can import it without importing the package's
``__init__`` (which reaches the Python API, and through it most of edge_attn)."""

__version__ = "0.1.0"
