"""The machine a benchmark ran on: CPU model, the ISA extensions int8 kernels use, runtimes, load.

Int8 convolutions are fast only where the CPU has int8 dot products: on x86 AVX-512 VNNI
(``avx512_vnni``), AVX-VNNI (``avx_vnni``) and AMX-INT8 (``amx_int8``; tile matrix multiply), on ARM
the dot-product (``asimddp``: SDOT/UDOT) and int8 matrix-multiply (``i8mm``) extensions. Without them
int8 runs on AVX2 / NEON multiply-adds and cannot beat float by much. ``cpu_record`` reads the flags
from ``/proc/cpuinfo`` (x86 ``flags``, ARM ``Features``), so a report says which of them the machine
had and lacked instead of assuming.
"""

import importlib.metadata
import os
import platform
from pathlib import Path

from edge_attn.runners.machine import _first_processor, cpu_name, fingerprint

# flag -> what it is, per architecture; the order is from the most to the least capable.
INT8_ISA = {
    "x86_64": {"amx_int8": "AMX-INT8", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx2": "AVX2"},
    "aarch64": {"i8mm": "int8 matrix multiply (I8MM)", "asimddp": "dot product (SDOT/UDOT)", "asimd": "NEON"},
}
# Flags that give int8 dot products (the rest are the plain SIMD fallback).
INT8_DOT_PRODUCT = {"amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp"}


def cpu_record(cpuinfo: str | None = None, machine: str | None = None) -> dict:
    """``{"model", "architecture", "int8_isa": {flag: present}, "int8_dot_product", "lacking"}`` from
    ``/proc/cpuinfo`` text (read when None). ``lacking`` lists the int8 flags of this architecture the
    CPU does not have, most capable first."""
    machine = machine or platform.machine()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = _first_processor(cpuinfo)  # the runners' parser: a board and this host read alike
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    wanted = INT8_ISA.get(machine, {})
    present = {flag: flag in flags for flag in wanted}
    model = cpu_name(cpuinfo) or fields.get("hardware") or platform.processor()
    return {
        "model": model or "unknown",
        "architecture": machine,
        "family_model": [fields.get("cpu family"), fields.get("model")],
        "int8_isa": present,
        "int8_dot_product": any(present[f] for f in present if f in INT8_DOT_PRODUCT),
        "lacking": [wanted[flag] + f" ({flag})" for flag, here in present.items() if not here],
    }


def versions() -> dict:
    """Installed versions of the runtimes the benchmarks time."""
    found = {}
    for package in ("ai-edge-litert", "onnxruntime", "tensorflow", "tf-keras", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["python"] = platform.python_version()
    return found


def load_average() -> list:
    """1, 5 and 15 minute load averages (runnable processes), or [] where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_record(threads) -> dict:
    """Everything above plus the CPU count and the thread counts timed (load: call at start and end)."""
    return {"cpu": cpu_record(), "cpus": os.cpu_count(), "threads": list(threads), "versions": versions(),
            "kernel": platform.release(), "governor": fingerprint()["governor"],
            "load_average_before": load_average()}
