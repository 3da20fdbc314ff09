"""edge_attn.resources.tree_rss: a child between fork and exec shares its parent's pages and is not counted twice.

The reference is the kernel's own reading of the parent alone (/proc/PID/statm) while its forked copy sleeps.
"""

import json
import os
import signal
import sys
import time

from edge_attn.resources import current_rss, tree_rss

HOLD_MB = 200


def test_a_forked_copy_is_not_counted_twice_and_an_execd_child_is():
    # The parent writes 200 MB, then forks a copy that sleeps without exec (as a child does before exec).
    code = (f"import os, sys, time\nx = b'x' * ({HOLD_MB} * 2**20)\nprint('held', flush=True)\n"
            "pid = os.fork()\nif pid == 0:\n    time.sleep(30)\n    os._exit(0)\n"
            "print(pid, flush=True)\ntime.sleep(30)\n")
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "held"
        child = int(parent.stdout.readline())
        time.sleep(0.2)
        alone, child_rss = current_rss(parent.pid), current_rss(child)
        assert child_rss > HOLD_MB * 2**20 * 0.9  # the kernel shows the copy's (shared) pages as its own
        tree = tree_rss(parent.pid)
        assert abs(tree - alone) < 0.1 * alone, (tree, alone, child_rss)
    finally:
        parent.kill()
        parent.wait()

    # A child that exec'd another program is added.
    holder = subprocess.Popen([sys.executable, "-c", f"import time\nx = b'x' * ({HOLD_MB} * 2**20)\nprint(1, flush=True)\n"
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        assert tree_rss(os.getpid()) >= current_rss() + 0.9 * HOLD_MB * 2**20
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_peak_rss_is_the_process_own_not_the_high_water_mark_of_whoever_started_it():
    """A convert run from a big process (pytest after many tests, a notebook) must report its own peak.
    Reference: the kernel's ru_maxrss of the same child, which carries the 200 MB parent's mark across exec."""
    import subprocess

    child = ("import json, resource\nfrom edge_attn.resources import peak_rss\n"
             "print(json.dumps([peak_rss()['peak_rss_mb'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))")
    parent = (f"import subprocess, sys\nx = b'x' * ({HOLD_MB} * 2**20)\n"
              f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, check=True).stdout)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True).stdout
    own, inherited = json.loads(out)
    assert inherited > HOLD_MB  # the premise: ru_maxrss inherits the parent's mark
    assert 0 < own < HOLD_MB / 2, (own, inherited)
