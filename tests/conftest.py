"""Shared pytest configuration."""

import os
import sys


def pytest_unconfigure(config):
    """Keep pytest's summary the last thing printed: LiteRT's accelerator registry prints
    "DestroyAccelerator" INFO lines from static destructors at process exit (after a GPU attempt)."""
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
