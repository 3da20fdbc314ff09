"""The machine fingerprint (edge_attn.runners.machine) against independent readings: lscpu, the LiteRT
package's own version, recorded /proc/cpuinfo texts of ARM boards, and qemu's environment."""

import shutil
import subprocess

import pytest

from edge_attn.runners import machine

# Raspberry Pi 4 (BCM2711, 4x Cortex-A72) as Raspberry Pi OS 64-bit prints it: part 0xd08.
PI4_CPUINFO = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                      f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
                      f"CPU revision\t: 3\n\n" for i in range(4)) + "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
ARMV7_CPUINFO = "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n"


def test_cpu_names_from_recorded_arm_cpuinfo():
    assert machine.cpu_name(PI4_CPUINFO) == "Cortex-A72 x4"
    assert machine.cpu_name(ARMV7_CPUINFO) == "ARMv7 Processor rev 4 (v7l)"
    assert machine.cpu_name("CPU implementer\t: 0x51\nCPU part\t: 0x802\n") == "implementer 0x51 part 0x802 x1"
    assert machine.cpu_name("") is None


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="no lscpu")
def test_host_cpu_is_what_lscpu_says():
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, env={"LC_ALL": "C"}).stdout
    lscpu_model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    found = machine.fingerprint()
    assert found["cpu"] == lscpu_model
    flags = next(line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags"))
    assert found["isa"] == sorted(set(machine.INT8_FEATURES) & set(flags))


def test_runtime_version_is_the_installed_litert():
    import ai_edge_litert.interpreter

    from importlib.metadata import version

    found = machine.fingerprint(ai_edge_litert.interpreter)
    assert (found["runtime"], found["runtime_version"]) == ("ai-edge-litert", version("ai-edge-litert"))


def test_qemu_cpu_in_the_environment_marks_emulation(monkeypatch):
    monkeypatch.delenv("QEMU_CPU", raising=False)
    assert machine.fingerprint()["emulated"] is False and machine.fingerprint()["emulated_cpu"] is None
    monkeypatch.setenv("QEMU_CPU", "cortex-a72")
    found = machine.fingerprint()
    assert found["emulated"] is True and found["emulated_cpu"] == "cortex-a72"
