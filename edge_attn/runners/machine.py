"""The fingerprint of the Linux machine this code runs on: CPU, SoC, frequency governor, LiteRT version.

Self-contained (standard library only): the ssh runner copies it onto the board beside
:mod:`edge_attn.runners.remote_bench`, so the host and a board describe themselves with the same code.
Everything is read from ``/proc`` and ``/sys`` where readable and is ``None`` where not (containers,
Android's restricted ``/sys``); nothing here needs root.

``emulated`` is True when the process evidently runs under user-mode emulation: ``QEMU_CPU`` is set
(qemu-user reads it and passes the environment on), the kernel registers a qemu binfmt handler for this
very architecture (a native kernel never needs one), the kernel's own architecture
(``/proc/sys/kernel/arch``, which qemu-user does not translate, unlike ``uname``) is another than the one
Python runs as, or ``/proc/cpuinfo`` describes another architecture than the one Python runs on (qemu-user
shows the host's). Latency measured under emulation is not a device figure.
"""

import glob
import os
import platform

# CPU part numbers of Arm Ltd (implementer 0x41) cores, from the Arm Technical Reference Manuals (MIDR).
ARM_PARTS = {
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72",
    0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0D: "Cortex-A77", 0xD41: "Cortex-A78",
    0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD48: "Cortex-X2", 0xD4D: "Cortex-A715",
    0xD4E: "Cortex-X3", 0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4",
}
# ISA features that decide whether int8 kernels pay: x86 flags and ARM "Features" words of /proc/cpuinfo.
INT8_FEATURES = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")
RUNTIME_PACKAGES = ("ai-edge-litert", "tflite-runtime")
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "AMD64": "x86_64"}  # one name per architecture


def fingerprint(runtime_module=None):
    """This machine as plain data: ``arch`` (what Python runs as), ``kernel_arch`` (the kernel's, None
    where unreadable), ``cpu``, ``cores``, ``soc``, ``governor``, ``isa``, ``runtime``, ``runtime_version``,
    ``emulated``, ``emulated_cpu``. ``runtime_module``: the LiteRT package in use (its
    distribution's version is read); None: the first installed of RUNTIME_PACKAGES."""
    arch = platform.machine()
    text = _read("/proc/cpuinfo") or ""
    cpuinfo = _first_processor(text)
    runtime, version = _runtime(runtime_module)
    kernel_arch = _read("/proc/sys/kernel/arch") or None
    return {
        "arch": arch,
        "kernel_arch": kernel_arch,
        "cpu": cpu_name(text) or os.environ.get("QEMU_CPU") or None,
        "cores": os.cpu_count(),
        "soc": _soc(cpuinfo),
        "governor": _governor(),
        "isa": sorted(set(INT8_FEATURES) & set(cpuinfo.get("flags", cpuinfo.get("features", "")).split())),
        "runtime": runtime,
        "runtime_version": version,
        "emulated": _emulated(arch, kernel_arch, cpuinfo),
        "emulated_cpu": os.environ.get("QEMU_CPU") or None,
    }


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip("\0\n ")
    except OSError:
        return None


def _first_processor(text):
    """The first processor's ``key: value`` lines of /proc/cpuinfo (and machine-wide ones), lower-case keys."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in info:
            info[key] = value.strip()
    return info


def cpu_name(cpuinfo_text):
    """The CPU as /proc/cpuinfo names it: x86 "model name"; on ARM the distinct cores from "CPU part"
    (e.g. "Cortex-A55 x4 + Cortex-A76 x4"); None where it says neither."""
    first = _first_processor(cpuinfo_text)
    if first.get("model name") and not first["model name"].isdigit():
        return first["model name"]
    cores = {}
    implementer = first.get("cpu implementer")
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "cpu implementer":
            implementer = value.strip()
        elif key == "cpu part":
            name = _arm_core(implementer, value.strip())
            cores[name] = cores.get(name, 0) + 1
    if cores:
        return " + ".join(f"{name} x{count}" for name, count in cores.items())
    processor = first.get("processor")  # 32-bit ARM kernels: "ARMv7 Processor rev 4 (v7l)"; others: "0"
    return processor if processor and not processor.isdigit() else None


def _arm_core(implementer, part):
    try:
        if int(implementer or "", 16) == 0x41 and int(part, 16) in ARM_PARTS:
            return ARM_PARTS[int(part, 16)]
    except ValueError:
        pass
    return f"implementer {implementer} part {part}"


def _soc(cpuinfo):
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        model = _read(path)
        if model:
            return model
    return cpuinfo.get("hardware") or None


def _governor():
    governors = sorted({g for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
                        if (g := _read(path))})
    return ",".join(governors) or None


def _runtime(module):
    from importlib import metadata

    names = RUNTIME_PACKAGES
    if module is not None:
        top = module.__name__.split(".")[0]
        names = [name for name in RUNTIME_PACKAGES if name.replace("-", "_") == top] or [top]
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return (names[0] if module is not None else None), None


def _emulated(arch, kernel_arch, cpuinfo):
    if os.environ.get("QEMU_CPU"):
        return True
    if kernel_arch and ARCH_ALIASES.get(kernel_arch, kernel_arch) != ARCH_ALIASES.get(arch, arch):
        return True
    handler = _read(f"/proc/sys/fs/binfmt_misc/qemu-{arch}")
    if handler and handler.startswith("enabled"):
        return True
    x86_cpuinfo = "vendor_id" in cpuinfo
    return x86_cpuinfo != (arch in ("x86_64", "i686", "i386", "AMD64"))
