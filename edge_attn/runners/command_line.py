"""Patterns for values that reach a command line on another machine, and the checks that apply them.

ssh hands its command to the remote shell as one string and ``adb shell`` does the same, so passing an
argument list is not enough protection on the far side: serials, hosts, users, remote paths, commands
and CPU masks must match these strict patterns. Each starts with a character that cannot begin an
option, and none admits whitespace, quotes, ``$``, backquote, ``;``, ``|``, ``&``, ``<``, ``>``, ``*``,
``?``, ``~`` or backslash. The profile loader (:mod:`edge_attn.devices`) checks profile fields with
them, and the runners check again right where a value reaches a command line, so a hand-made profile
object cannot slip past.
"""

import re

from edge_attn.errors import BadInput

# adb serials: "emulator-5554", "R58M123ABC", "192.168.1.20:5555", "adb-XYZ._adb-tls-connect._tcp".
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}")  # a name, an ssh-config alias, IPv4 or bare IPv6
USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")  # POSIX-portable user names
# An absolute path of plain path characters: no spaces, quotes, $, ;, globs; "." and ".." are refused apart.
ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9_.+/-]*")
COMMAND = re.compile(r"[A-Za-z0-9_./+][A-Za-z0-9_.+/-]*")  # "python3" or a path to one
CPU_MASK = re.compile(r"[0-9a-fA-F]{1,16}")  # taskset's hex mask without "0x": up to 64 CPUs


def checked(value, pattern, what):
    """``value`` as a string if all of it matches ``pattern`` (and it cannot pass for an option), else BadInput."""
    text = str(value)
    if not pattern.fullmatch(text) or text.startswith("-"):
        raise BadInput(what, f"{text!r} is not allowed here (expected {pattern.pattern})")
    return text


def has_dot_parts(path):
    """True if ``path`` has a "." or ".." component."""
    return bool({".", ".."} & set(path.split("/")))


def checked_remote_dir(value, what):
    """An absolute remote directory (see ABSOLUTE_PATH) without "." or ".." parts, without a trailing "/"."""
    path = checked(value, ABSOLUTE_PATH, what)
    if has_dot_parts(path):
        raise BadInput(what, f"{path!r} must not contain '.' or '..' parts")
    return path.rstrip("/") or "/"
