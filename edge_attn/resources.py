"""How much memory this process uses and may use: peak RSS, available memory, and a watched child run.

``peak_rss()`` is the kernel's high-water mark of resident memory for this process (``VmHWM``) and, separately,
an upper bound for its waited-for children (``ru_maxrss``); ``convert`` records both in ``report.json``.
``available_memory()`` is what a new allocation can get before the OOM killer strikes: the smaller of
``MemAvailable`` (``/proc/meminfo``) and the room left under this process's cgroup memory limit (v2
``memory.max`` or v1 ``memory.limit_in_bytes``). ``run_watched(cmd, limit)`` runs a command and samples
the resident memory of its whole process tree, killing it above ``limit``: how the memory budget test
and ``benchmarks/memory.py`` measure a run without taking a shared machine down.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_attn import _compat
from edge_attn.runners.timing import proc_status_kib

MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _maxrss_bytes(who):
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def _own_peak_bytes():
    """This process's high-water resident memory since it exec'd. On Linux ``VmHWM`` (its address space's
    own mark); not ``ru_maxrss``, which an exec'd process inherits from the process that started it: a
    convert started from a 6 GB pytest or notebook would report 6 GB (measured: 2061 MB for a 13 MB child
    of a 2 GB parent)."""
    try:
        return proc_status_kib("VmHWM") * 1024
    except (OSError, ValueError):  # no procfs (macOS): the kernel's counter, an upper bound
        return _maxrss_bytes(resource.RUSAGE_SELF)


def peak_rss() -> dict:
    """``{"peak_rss_mb", "children_peak_rss_mb"}``: the high-water resident memory of this process and an
    upper bound for its finished, waited-for children (0 when none), in MiB. The children's figure is
    ``ru_maxrss``: a child counts at least this process's size when it was started (see :func:`run_watched`)."""
    return {"peak_rss_mb": round(_own_peak_bytes() / MB, 1),
            "children_peak_rss_mb": round(_maxrss_bytes(resource.RUSAGE_CHILDREN) / MB, 1)}


def release_free_memory():
    """Hand memory freed by Python and TensorFlow back to the OS (glibc ``malloc_trim``); no-op elsewhere.

    glibc keeps freed heap pages for reuse, so after a step that briefly needed gigabytes (a TFLite
    conversion: ~1.5 GB for CBAM-ResNet-50 at 224x224, measured) the process stays that large and the
    next step's peak stacks on top. Trimming between steps makes the run's peak the largest step's.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def current_rss(pid: int | str = "self") -> int:
    """Resident bytes of process ``pid`` now (``/proc/PID/statm``); 0 when it has gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def available_memory() -> int | None:
    """Bytes a new allocation can still get: min(MemAvailable, cgroup limit - cgroup usage); None if unknown."""
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    room = _cgroup_room()
    if room is not None:
        candidates.append(room)
    return min(candidates) if candidates else None


def _cgroup_room():
    """Bytes left under this process's cgroup memory limit, or None when there is no limit or no cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, usage = folder / "memory.max", folder / "memory.current"
        elif "memory" in controllers.split(","):  # cgroup v1
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if not folder.is_dir():  # inside a container the own cgroup is mounted as the root
                folder = Path("/sys/fs/cgroup/memory")
            limit, usage = folder / "memory.limit_in_bytes", folder / "memory.usage_in_bytes"
        else:
            continue
        try:
            text = limit.read_text().strip()
            if text == "max" or int(text) >= 2**60:  # v1 writes "no limit" as a huge page-aligned number
                continue
            return max(int(text) - int(usage.read_text().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


# A forward pass holds a few activations at once (a block's input, its branch, the residual sum, the
# next output being written): what a batch costs beyond the weights, in units of the largest one.
LIVE_ACTIVATIONS = 6


def largest_activation_bytes(model) -> int:
    """float32 bytes of the largest single layer output of a Keras ``model`` for one sample."""
    sizes = [4 * math.prod(d for d in output.shape[1:] if d is not None)
             for layer in model.layers for node in _compat.inbound_nodes(layer) for output in _flat(node.outputs)]
    return max(sizes, default=4)


def activation_bytes(model) -> int:
    """float32 bytes of all layer outputs of a Keras ``model`` for one sample: what training keeps for
    the backward pass."""
    return sum(4 * math.prod(d for d in output.shape[1:] if d is not None)
               for layer in model.layers for node in _compat.inbound_nodes(layer) for output in _flat(node.outputs))


def batch_within(model, budget_bytes: int, *, most: int = 64) -> int:
    """Samples per inference batch that keep ``LIVE_ACTIVATIONS`` of ``model``'s largest activation
    within ``budget_bytes``: between 1 and ``most``."""
    per_sample = LIVE_ACTIVATIONS * largest_activation_bytes(model)
    return int(max(1, min(most, budget_bytes // max(per_sample, 1))))


# Training keeps every activation for the backward pass, and the backward pass makes gradients of
# similar size while it runs; weights need themselves, their gradient and Adam's two slots.
TRAINING_ACTIVATION_FACTOR = 2
TRAINING_BYTES_PER_PARAMETER = 16


def memory_needed(model, batch: int, *, training: bool) -> int:
    """Estimated bytes to run (``training=False``: one forward pass) or train ``model`` on ``batch``
    samples: the activations the pass keeps plus what the weights need."""
    if training:
        activations = TRAINING_ACTIVATION_FACTOR * activation_bytes(model) * batch
        return activations + TRAINING_BYTES_PER_PARAMETER * model.count_params()
    return LIVE_ACTIVATIONS * largest_activation_bytes(model) * batch + 4 * model.count_params()


# What one training step may hold: a bound by design (the process also holds the models, the data
# pipeline and TensorFlow itself), lowered to half of what is available on a smaller machine.
TRAINING_STEP_BYTES = 2 * 2**30


def training_step_budget() -> int:
    """Bytes one training step may use: ``EDGE_ATTN_TRAIN_STEP_MB`` if set, else the smaller of
    :data:`TRAINING_STEP_BYTES` and half of :func:`available_memory`."""
    if os.environ.get("EDGE_ATTN_TRAIN_STEP_MB"):
        return int(float(os.environ["EDGE_ATTN_TRAIN_STEP_MB"]) * MB)
    available = available_memory()
    return TRAINING_STEP_BYTES if available is None else min(TRAINING_STEP_BYTES, available // 2)


def micro_batch_within(model, batch: int, budget_bytes: int) -> int:
    """The largest number of samples, at most ``batch``, whose training step (:func:`memory_needed`)
    fits ``budget_bytes``; 1 when even one sample does not (the caller's preflight refuses that)."""
    fixed = TRAINING_BYTES_PER_PARAMETER * model.count_params()
    per_sample = TRAINING_ACTIVATION_FACTOR * activation_bytes(model)
    return int(max(1, min(batch, (budget_bytes - fixed) // max(per_sample, 1))))


def require_memory(model, batch: int, *, training: bool, what: str, fix: str):
    """Raise BadInput, before the OOM killer would strike, when :func:`memory_needed` exceeds
    :func:`available_memory`; names the input size, the batch and both amounts. ``what`` names the step
    (e.g. "QAT fine-tune"), ``fix`` says what to change."""
    from edge_attn.errors import BadInput

    needed = memory_needed(model, batch, training=training)
    available = available_memory()
    if available is not None and needed > available:
        shape = "(" + ", ".join(str(d) for d in model.input_shape[1:]) + ")"
        raise BadInput(f"input shape {shape}", f"{what} in batches of {batch} needs about {needed / 2**30:.1f} GB "
                                               f"({activation_bytes(model) / MB:.0f} MB of activations per sample), "
                                               f"more than the {available / 2**30:.1f} GB of memory available; {fix}")


def _flat(outputs):
    if isinstance(outputs, (list, tuple)):
        return [leaf for item in outputs for leaf in _flat(item)]
    if isinstance(outputs, dict):
        return [leaf for item in outputs.values() for leaf in _flat(item)]
    return [outputs] if hasattr(outputs, "shape") else []


def _children(pid):
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants now.

    A child caught between fork (or vfork) and exec still runs its parent's program: its resident pages are
    the parent's, shared copy-on-write (or the very same memory), so adding them would count the parent
    twice — a 3 GB converter starting a small probe process read as 6 GB. Such a child (same command line
    as its parent) is not added; its own descendants are.
    """
    total, todo, seen = 0, [(pid, None)], set()
    while todo:
        current, parent_cmdline = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        cmdline = _cmdline(current)
        if parent_cmdline is None or cmdline != parent_cmdline:
            total += current_rss(current)
        todo += [(child, cmdline) for child in _children(current)]
    return total


@dataclasses.dataclass
class WatchedRun:
    """What :func:`run_watched` saw: exit code, peak process-tree RSS, whether it was killed for memory."""

    returncode: int
    peak_rss_mb: float  # the largest sample of the whole process tree
    killed_over_limit: bool  # killed by run_watched because a sample was above the limit
    seconds: float
    stdout: str
    stderr: str
    samples: list  # (seconds since start, tree RSS in MiB), one per sample
    maxrss_mb: float = 0.0  # wait4's ru_maxrss of the child (see run_watched: over-reads for exec'd children)


def run_watched(cmd, limit_mb: float | None = None, *, interval: float = 0.2, env=None, timeout=None) -> WatchedRun:
    """Run ``cmd`` (a list) and sample its process tree's resident memory every ``interval`` seconds.

    Above ``limit_mb`` the whole tree is killed (SIGKILL to its process group) and ``killed_over_limit``
    is set: a run that would need more than the budget stops at the budget instead of pushing a shared
    machine into its OOM killer. ``peak_rss_mb`` is the largest sample of the whole tree; a sampling
    interval can miss a short peak. ``maxrss_mb`` is what ``wait4`` says of the child: the largest
    ``ru_maxrss`` of it and the descendants it waited for. That is not a tree total, and it over-reads:
    Linux hands a process that execs its pre-exec high-water mark, and a child started by (v)fork + exec
    had its parent's pages then, so every such child "peaked" at its parent's size (measured: a convert at
    3116 MB whose probe children never exceeded 270 MB reported 3116 MB for its children). For the top
    process alone, ask it (``VmHWM``, as ``convert`` records in report.json; its ``ru_maxrss`` inherits too).
    """
    start = time.monotonic()
    samples, peak, killed = [], 0, False
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                          start_new_session=True) as child:
        import threading

        streams = {}

        def drain(name, stream):
            streams[name] = stream.read()

        readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
                   for n, s in (("stdout", child.stdout), ("stderr", child.stderr))]
        for reader in readers:
            reader.start()
        status = usage = None
        while True:
            # wait4 rather than poll(): it also returns the child's own ru_maxrss high-water mark.
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            rss = tree_rss(child.pid)
            peak = max(peak, rss)
            samples.append((round(time.monotonic() - start, 2), round(rss / MB, 1)))
            over_time = timeout is not None and time.monotonic() - start > timeout
            if over_time or (limit_mb is not None and rss > limit_mb * MB):
                killed = not over_time
                _kill_group(child)
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(interval)
        child.returncode = os.waitstatus_to_exitcode(status)
        maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        for reader in readers:
            reader.join()
    return WatchedRun(child.returncode, round(peak / MB, 1), killed, round(time.monotonic() - start, 2),
                      streams.get("stdout", ""), streams.get("stderr", ""), samples, round(maxrss / MB, 1))


def _kill_group(child):
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
