"""Shared pytest configuration."""

import os
import sys


def pytest_unconfigure(config):
    """Keep pytest's summary the last thing printed: LiteRT's accelerator registry prints
    "DestroyAccelerator" INFO lines from static destructors at process exit (after a GPU attempt)."""
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


# Each test worker (pytest-xdist, ``-n auto`` in pyproject.toml) holds TensorFlow and the module's models:
# up to ~6 GB by the end of a full run on one process, measured. Most of the suite is single-threaded Python
# (Keras graph building, the TFLite converter), so two workers on 2 cores nearly halve the wall time.
WORKER_MEMORY_BYTES = 6 * 2**30
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per CPU this process may use, as many as memory holds, at most MAX_WORKERS;
    0 (no workers: run in this process) on one CPU."""
    from edge_attn.resources import available_memory

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = available_memory() or WORKER_MEMORY_BYTES * cpus
    workers = min(cpus, int(memory // WORKER_MEMORY_BYTES), MAX_WORKERS)
    return workers if workers >= 2 else 0


# The longest files start first, so that no worker is left running one alone at the end: measured on a 2-core
# AVX2 VM, test_memory_budget.py took 17 min and, scheduled last (xdist sorts files by test count unless
# --no-loadscope-reorder, set in pyproject.toml), ran by itself for 14 of them.
LONGEST_FIRST = ("test_memory_budget.py", "test_readme_commands.py", "test_real_models.py", "test_qat.py",
                 "test_random_models.py")


def pytest_collection_modifyitems(config, items):
    """Move the LONGEST_FIRST files to the front (same order on every worker: the sort is stable)."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
