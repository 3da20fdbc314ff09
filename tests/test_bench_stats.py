"""benchmarks/stats.py and benchmarks/machine.py: bootstrap intervals against known distributions, round
spread by hand, and the int8 ISA record parsed from real /proc/cpuinfo layouts (x86 and ARM)."""

import math

import numpy as np
import pytest

from benchmarks.machine import cpu_record
from benchmarks.stats import median_ci, ratio_ci, round_spread


def test_median_ci_width_matches_the_asymptotic_standard_error():
    """For n draws of N(0, 1) the sample median's standard error is sqrt(pi / 2) / sqrt(n)."""
    n = 400
    values = np.random.default_rng(1).normal(size=n)
    ci = median_ci(values, seed=2)
    expected_width = 2 * 1.959964 * math.sqrt(math.pi / 2) / math.sqrt(n)
    assert ci["low"] < ci["median"] < ci["high"]
    assert ci["median"] == pytest.approx(np.median(values))
    assert (ci["high"] - ci["low"]) == pytest.approx(expected_width, rel=0.25)


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    trials = 300
    covered = 0
    for trial in range(trials):
        values = rng.exponential(size=101)  # true median ln 2; skewed, as latencies are
        ci = median_ci(values, resamples=500, seed=trial)
        covered += ci["low"] <= math.log(2) <= ci["high"]
    # binomial(300, 0.95): sd 1.3 points; the percentile bootstrap of a median runs slightly wide
    assert 0.90 <= covered / trials <= 0.99


def test_ratio_ci_contains_the_true_ratio_and_is_seeded():
    rng = np.random.default_rng(4)
    slow, fast = rng.normal(10.0, 0.5, 200), rng.normal(2.0, 0.1, 200)
    ci = ratio_ci(slow, fast, seed=5)
    assert ci["low"] < 5.0 < ci["high"] and ci["ratio"] == pytest.approx(np.median(slow) / np.median(fast))
    assert ratio_ci(slow, fast, seed=5) == ci


def test_round_spread():
    assert round_spread([10, 10, 10]) == 0
    assert round_spread([9.0, 10.0, 12.0]) == pytest.approx(0.3)


X86_ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC 9R45
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx_vnni avx512_bf16
"""
X86_ZEN3 = "model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 avx512f avx512_vnni amx_tile amx_int8 avx_vnni\n"
ARM_A76 = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\nCPU part\t: 0xd0b\n"


@pytest.mark.parametrize("text, machine, dot, lacking", [
    (X86_ZEN5, "x86_64", True, ["AMX-INT8 (amx_int8)"]),
    (X86_ZEN3, "x86_64", False, ["AMX-INT8 (amx_int8)", "AVX-512 VNNI (avx512_vnni)", "AVX-VNNI (avx_vnni)"]),
    (X86_SAPPHIRE, "x86_64", True, []),
    (ARM_A76, "aarch64", True, ["int8 matrix multiply (I8MM) (i8mm)"]),
])
def test_cpu_record_reads_the_int8_isa_from_the_flags(text, machine, dot, lacking):
    record = cpu_record(text, machine)
    assert record["int8_dot_product"] is dot
    assert record["lacking"] == lacking


def test_cpu_record_of_this_machine_agrees_with_proc_cpuinfo():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    record = cpu_record()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.lower().startswith(("flags", "features"))), [])
    for flag, present in record["int8_isa"].items():
        assert present == (flag in flags)


def _latency(rounds_by_key):
    from benchmarks.latency import summarize

    return {2: {key: summarize(rounds) for key, rounds in rounds_by_key.items()}}


def _measurements(int8, f32, ort, plain):
    keys = {}
    for name in ("resnet50", "se_resnet50", "cbam_resnet50"):
        keys[f"{name}/litert_int8"] = plain if name == "resnet50" else int8
        keys[f"{name}/litert_f32"], keys[f"{name}/ort_int8"] = f32, ort
    return keys


def test_ratios_survive_drift_that_slows_whole_rounds_and_are_withheld_when_one_side_is_hit():
    """A round twice as slow for every model leaves every ratio intact (kept); a round where only the int8
    model was contended changes its ratios in that round only (withheld, naming the ratios)."""
    from benchmarks.latency import rows_from

    def rounds(base, factors):
        return [[base * f * (1 + 0.001 * i) for i in range(5)] for f in factors]

    drift = [1.0, 2.0, 1.0, 1.5]
    rows = rows_from(_latency(_measurements(rounds(10, drift), rounds(40, drift), rounds(12, drift),
                                            rounds(9, drift))), max_spread=0.10)
    se = next(r for r in rows if r["model"] == "se_resnet50")
    assert se["withheld"] is None and se["time_spread"]["se_resnet50/litert_int8"] > 0.5
    assert se["int8_speedup_vs_f32"] == pytest.approx(4.0, rel=0.01)
    assert se["int8_vs_plain_int8"] == pytest.approx(10 / 9, rel=0.01)

    contended = [1.0, 1.0, 1.3, 1.0]
    rows = rows_from(_latency(_measurements(rounds(10, contended), rounds(40, drift[:1] * 4), rounds(12, [1] * 4),
                                            rounds(9, [1] * 4))), max_spread=0.10)
    se = next(r for r in rows if r["model"] == "se_resnet50")
    assert se["int8_speedup_vs_f32"] is None and set(se["withheld"]) == {
        "int8_speedup_vs_f32", "int8_vs_plain_int8", "edge_attn_int8_vs_ort_int8"}
