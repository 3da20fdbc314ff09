"""A throw-away OpenSSH server on 127.0.0.1 for the ssh runner's tests: the "board" is this machine.

``running_sshd(workdir)`` generates a host key and a user key with ``ssh-keygen``, writes an sshd_config
that listens on a free port of 127.0.0.1 only, accepts only that user key (``AuthorizedKeysFile`` in
``workdir``; ``StrictModes no`` because the temp dir's permissions are not sshd's business here; ``UsePAM
no``; ``PermitRootLogin prohibit-password`` so it also works as root) and runs ``/usr/sbin/sshd -D -e`` as
the current user until the context exits, when it is terminated and waited for.

Without OpenSSH (Debian: ``apt-get install openssh-server``) the tests are skipped, except under CI
(``CI`` set), where they fail: a missing install step must not pass as green.
"""

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest

SSHD = "/usr/sbin/sshd"
PRIVILEGE_SEPARATION_DIR = "/run/sshd"  # sshd refuses to start without it
START_TIMEOUT_S = 15


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    key: str  # private key sshd accepts
    other_key: str  # a key sshd does not accept
    log: str  # sshd's own log (-e), for failure messages


def require_openssh():
    """Skip (or, under CI, fail) unless the OpenSSH server and client are installed."""
    missing = [tool for tool in (SSHD, "ssh", "scp", "ssh-keygen") if not shutil.which(tool)]
    if missing:
        message = f"OpenSSH not installed ({', '.join(missing)} missing): apt-get install openssh-server"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must install it)", pytrace=False)
        pytest.skip(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_sshd(workdir):
    workdir = os.fspath(workdir)
    keys = {}
    for name in ("host_key", "user_key", "other_key"):
        keys[name] = os.path.join(workdir, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edge_attn-test-{name}",
                        "-f", keys[name]], check=True, timeout=30)
    authorized_keys = os.path.join(workdir, "authorized_keys")
    shutil.copyfile(keys["user_key"] + ".pub", authorized_keys)
    port = free_port()
    config = os.path.join(workdir, "sshd_config")
    with open(config, "w") as f:
        f.write("\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {keys['host_key']}",
            f"PidFile {os.path.join(workdir, 'sshd.pid')}",
            f"AuthorizedKeysFile {authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",  # scp speaks SFTP since OpenSSH 9
            "",
        ]))
    os.makedirs(PRIVILEGE_SEPARATION_DIR, mode=0o755, exist_ok=True)
    log = os.path.join(workdir, "sshd.log")
    with open(log, "wb") as log_file:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        _wait_until_listening(process, port, log)
        yield SshServer(host="127.0.0.1", port=port, user=getpass.getuser(), key=keys["user_key"],
                        other_key=keys["other_key"], log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_listening(process, port, log):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {open(log).read().strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on port {port} within {START_TIMEOUT_S} s: {open(log).read().strip()}")
