"""Stored per-device latency baselines, and the check that fails only on a significant regression.

A baseline file is JSON (``edge-attn bench --save-baseline FILE``, ``pytest --edge-save-baseline FILE``)::

    {"format": "edge_attn.latency-baseline", "version": 1,
     "entries": [{"device": {...fingerprint...}, "model": "se_resnet20-int8.tflite", "model_sha256": "...",
                  "delegate": "xnnpack", "threads": 2, "warm_times_ms": [...], "p50_ms": ...,
                  "p50_ci_ms": [low, high], "cold_start_ms": ..., "recorded_utc": "...",
                  "session_p50s_ms": [...]}]}

An entry is found by device (profile) name, model file name, delegate and threads, so a rebuilt model of
the same name is compared with the one recorded. The check (:func:`check_against`) runs the test of
:func:`edge_attn.runners.stats.compare_runs` on the warm runs (after the detected warm-up) and is
Runs within one session are not independent of the session: a phone's thermal state, background load
or where the allocator put the arena shift a whole session. Saving again into the same file adds the
session's p50 to ``session_p50s_ms`` (the last MAX_SESSIONS kept, the warm runs of the latest kept), and
the minimum effect a regression must exceed becomes at least the spread of those recorded p50s (largest /
smallest − 1): a device that moved 25% between recorded sessions must be more than 25% slower to fail.
Record the baseline two or three times on a noisy device.

The check is ``"not compared"`` — never a failure — when there is no entry, when the baseline was recorded on another
CPU, SoC or architecture (or one side is emulated), or when a side has no per-run times (adb's
``benchmark_model``). A changed runtime version is compared and said.
"""

import dataclasses
import datetime
import hashlib
import json
import os

from edge_attn.atomic import atomic_path
from edge_attn.errors import BadInput
import edge_attn.runners.stats as stats

FORMAT = "edge_attn.latency-baseline"
VERSION = 1
_SAME_DEVICE_FIELDS = ("arch", "cpu", "soc", "emulated")
MAX_SESSIONS = 10


@dataclasses.dataclass(frozen=True)
class BaselineCheck:
    """The verdict of one result against its baseline entry."""

    status: str  # "regressed" | "ok" | "not compared"
    reason: str  # one line for the terminal
    comparison: stats.Comparison | None = None

    @property
    def regressed(self):
        return self.status == "regressed"

    def to_dict(self):
        return {"status": self.status, "reason": self.reason,
                "comparison": self.comparison.to_dict() if self.comparison else None}


def entry_key(device, model, delegate, threads):
    return (device, os.path.basename(os.fspath(model)), delegate, int(threads))


def load_baseline(path, must_exist=True):
    """The entries of a baseline file as ``{key: entry}``; BadInput naming the file if it is not one.

    ``must_exist=False``: a missing file is an empty baseline (for adding to it)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        if must_exist:
            raise BadInput(path, "no such baseline file (record one with --save-baseline)") from None
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(path, f"not a latency baseline file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(path, f"not a latency baseline file (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise BadInput(path, f"baseline version {data.get('version')!r}; this edge_attn reads version {VERSION}")
    entries = {}
    for i, entry in enumerate(data.get("entries") or []):
        try:
            key = entry_key(entry["device"]["name"], entry["model"], entry["delegate"], entry["threads"])
            times = [float(t) for t in entry["warm_times_ms"]]
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(path, f"entries[{i}]: missing or malformed field ({e})") from None
        entries[key] = entry | {"warm_times_ms": times}
    return entries


def baseline_entry(result):
    """The baseline entry recording a measured :class:`~edge_attn.runners.result.LatencyResult`."""
    with open(result.model, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    info = result.to_dict()["device"]
    return {"device": info, "model": os.path.basename(result.model), "model_sha256": digest,
            "delegate": result.delegate, "threads": result.threads, "warm_times_ms": list(result.steady_times_ms),
            "p50_ms": result.warm.p50, "p50_ci_ms": list(result.warm.p50_ci) if result.warm.p50_ci else None,
            "cold_start_ms": result.cold_start_ms,
            "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def save_baseline(path, results):
    """Add (or replace) the entries of the measured ``results`` in the baseline file at ``path``, written
    atomically; results without per-run times are left out. Returns how many entries were written."""
    entries = load_baseline(path, must_exist=False)
    for result in results:
        if result.available and result.steady_times_ms:
            key = entry_key(result.device, result.model, result.delegate, result.threads)
            earlier = entries.get(key, {}).get("session_p50s_ms") or []
            entry = baseline_entry(result)
            entries[key] = entry | {"session_p50s_ms": (list(earlier) + [entry["p50_ms"]])[-MAX_SESSIONS:]}
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "version": VERSION, "entries": list(entries.values())}, f, indent=1)
            f.write("\n")
    return len(entries)


def check_against(result, entries, alpha=stats.ALPHA, min_effect=stats.MIN_EFFECT):
    """:class:`BaselineCheck` of ``result`` against the matching entry of ``entries`` (from load_baseline)."""
    key = entry_key(result.device, result.model, result.delegate, result.threads)
    what = f"{key[1]} on {key[0]} ({key[2]}, {key[3]} threads)"
    entry = entries.get(key)
    if entry is None:
        return BaselineCheck("not compared", f"no baseline entry for {what}")
    if not result.available or not result.steady_times_ms:
        return BaselineCheck("not compared", f"{what}: no per-run times to compare")
    current = result.to_dict()["device"]
    recorded = entry.get("device") or {}
    for field in _SAME_DEVICE_FIELDS:
        if recorded.get(field) is not None and current.get(field) is not None and recorded[field] != current[field]:
            return BaselineCheck("not compared", f"{what}: the baseline was recorded on another device "
                                                 f"({field} {recorded[field]!r}, now {current[field]!r})")
    sessions = [float(p) for p in entry.get("session_p50s_ms") or [] if p]
    session_spread = max(sessions) / min(sessions) - 1 if len(sessions) >= 2 else 0.0
    comparison = stats.compare_runs(result.steady_times_ms, entry["warm_times_ms"], alpha=alpha,
                                    min_effect=max(min_effect, session_spread))
    if comparison is None:
        return BaselineCheck("not compared", f"{what}: fewer than {stats.MIN_RUNS_TO_COMPARE} warm runs on a side")
    reason = comparison.summary()
    if session_spread > min_effect:
        reason += f"; minimum effect raised to the {len(sessions)} recorded sessions' spread of {session_spread:.0%}"
    if recorded.get("runtime_version") != current.get("runtime_version"):
        reason += (f"; runtime changed: {recorded.get('runtime')} {recorded.get('runtime_version')} -> "
                   f"{current.get('runtime')} {current.get('runtime_version')}")
    return BaselineCheck("regressed" if comparison.regressed else "ok", reason, comparison)
