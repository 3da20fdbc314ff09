"""Device profiles: where and how ``edge-attn bench`` measures a model, as data users copy and edit.

A profile is a TOML file (the shipped ones live in ``edge_attn/profiles/``: ``host``, ``android-example``,
``linux-board-example``) loaded into the frozen :class:`DeviceProfile`. ``kind`` picks the runner:
``host`` (LiteRT in this process), ``adb`` (an Android phone running TFLite's ``benchmark_model``) or
``ssh`` (a Linux board running LiteRT in its own Python). Common fields say what to measure (delegates,
threads, runs, warm-up, timeout) and the latency budget per model; the other fields belong to one kind.

Every key is checked like a recipe's (:mod:`edge_attn.convert.recipe`): an unknown key, a wrong type, a
bad enum value, a missing required field or a field of another kind is a
:class:`~edge_attn.errors.BadInput` naming the file and the field. Values that end up on an adb or ssh
command line (serial, host, user, remote paths, the taskset mask) must match the strict patterns of
:mod:`edge_attn.runners.command_line`: no spaces, no shell metacharacters, no leading ``-``.
Local paths (binaries, the ssh key) are expanded (``~``) and resolved against the profile's folder.
"""

import dataclasses
import os
import re

from edge_attn.convert.recipe import TableFields
from edge_attn.errors import BadInput
from edge_attn.runners.command_line import ABSOLUTE_PATH, COMMAND, CPU_MASK, HOST, SERIAL, USER, has_dot_parts
from edge_attn.runners.settings import DELEGATES, ENGINES
from edge_attn.shipped import load_table, shipped_names

KINDS = ("host", "adb", "ssh")
# Fields that belong to one kind; setting one in a profile of another kind is an error, not ignored.
KIND_FIELDS = {
    "host": ("engine",),
    "adb": ("serial", "remote_dir", "benchmark_model", "inference_diff", "taskset_mask"),
    "ssh": ("host", "user", "port", "identity_file", "python", "remote_dir", "connect_timeout_s"),
}
DEFAULT_REMOTE_DIRS = {"adb": "/data/local/tmp/edge_attn", "ssh": "/tmp/edge_attn"}
BUDGET_DEFAULT_KEY = "default"

_HEX_MASK = re.compile(rf"(0[xX])?{CPU_MASK.pattern}")  # as taskset takes it; stored without "0x"


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """One device; see the comments in the shipped TOML files for what each field does.

    Fields of another kind are ``None``. Local paths are absolute; remote paths are as written.
    """

    name: str
    kind: str  # "host" | "adb" | "ssh"
    description: str = ""
    delegates: tuple = ("xnnpack",)  # subset of runners.base.DELEGATES, in the order to try them
    threads: int = 2
    runs: int = 50
    warmup: int = 5
    timeout_s: float = 300.0
    emulated: bool = False  # true: an emulated device (qemu); its latency is reported as not a device figure
    budgets_ms: dict = dataclasses.field(default_factory=dict)  # model file name (or "default") → p50 budget
    # kind = "host"
    engine: str | None = None  # "interpreter" | "compiled_model"
    # kind = "adb"
    serial: str | None = None  # None: the only attached device
    benchmark_model: str | None = None  # local path of TFLite's benchmark_model binary for the phone
    inference_diff: str | None = None  # local path of the inference_diff (run_eval) binary, optional
    taskset_mask: str | None = None  # hex CPU mask without "0x", e.g. "f0"; None: no pinning
    # kind = "adb" or "ssh"
    remote_dir: str | None = None
    # kind = "ssh"
    host: str | None = None
    user: str | None = None  # None: ssh's default (ssh config or the local user)
    port: int | None = None
    identity_file: str | None = None  # local path of the private key; None: ssh's default keys
    python: str | None = None  # remote Python with ai-edge-litert
    connect_timeout_s: int | None = None
    source: str = ""  # the TOML file the profile was read from

    def budget_for(self, model_path):
        """The p50 budget in ms for ``model_path`` (looked up by file name, else ``default``), or None."""
        name = os.path.basename(os.fspath(model_path))
        return self.budgets_ms.get(name, self.budgets_ms.get(BUDGET_DEFAULT_KEY))

    def to_dict(self):
        """The profile as plain JSON-serialisable data."""
        return dataclasses.asdict(self) | {"delegates": list(self.delegates)}


def list_profiles():
    """Names of the shipped profiles, sorted."""
    return shipped_names("profiles")


def load_profile(name_or_path):
    """Load a shipped profile by name (``"host"``) or any profile file by path (``"phone.toml"``)."""
    return parse_profile(*load_table(name_or_path, "profiles", "device profile", "profiles"))


def parse_profile(table, source):
    """Validate a TOML table (a dict) into a :class:`DeviceProfile`; ``source`` names it in errors and
    relative local paths are resolved against its folder."""
    fields = _ProfileFields(table, source, prefix="")
    kind = fields.choice("kind", KINDS, required=True)
    for other in KINDS:
        misplaced = [key for key in KIND_FIELDS[other] if key in table and key not in KIND_FIELDS[kind]]
        if misplaced:
            raise BadInput(source, f"{misplaced[0]}: only applies to kind = \"{other}\", not {kind!r} (remove it)")
    common = dict(
        name=fields.string("name", default=os.path.splitext(os.path.basename(source))[0]),
        kind=kind,
        description=fields.string("description", default=""),
        delegates=fields.delegates("delegates", kind),
        threads=fields.integer("threads", default=DeviceProfile.threads, minimum=1),
        runs=fields.integer("runs", default=DeviceProfile.runs, minimum=1),
        warmup=fields.integer("warmup", default=DeviceProfile.warmup, minimum=0),
        timeout_s=fields.positive_float("timeout_s", default=DeviceProfile.timeout_s),
        emulated=fields.boolean("emulated", default=False),
        budgets_ms=_parse_budgets(fields.table("budgets_ms"), source),
        source=str(source),
    )
    base_dir = os.path.dirname(os.path.abspath(source))
    if kind == "host":
        specific = dict(engine=fields.choice("engine", ENGINES, default="interpreter"))
    elif kind == "adb":
        specific = dict(
            serial=fields.matching("serial", SERIAL, "an adb serial such as emulator-5554 or 192.168.1.20:5555"),
            remote_dir=fields.remote_dir("remote_dir", "an absolute path on the phone", DEFAULT_REMOTE_DIRS["adb"]),
            benchmark_model=fields.local_path("benchmark_model", base_dir, required=True),
            inference_diff=fields.local_path("inference_diff", base_dir),
            taskset_mask=fields.hex_mask("taskset_mask"),
        )
    else:
        specific = dict(
            host=fields.matching("host", HOST, "a host name, ssh-config alias or IP address", required=True),
            user=fields.matching("user", USER, "a user name"),
            port=fields.integer("port", default=22, minimum=1, maximum=65535),
            identity_file=fields.local_path("identity_file", base_dir),
            python=fields.matching("python", COMMAND, "a command name or path such as /opt/venv/bin/python",
                                   default="python3"),
            remote_dir=fields.remote_dir("remote_dir", "an absolute path on the board", DEFAULT_REMOTE_DIRS["ssh"]),
            connect_timeout_s=fields.integer("connect_timeout_s", default=10, minimum=1),
        )
    fields.reject_unknown()
    return DeviceProfile(**common, **specific)


def _parse_budgets(table, source):
    """``[budgets_ms]``: model file name (or ``default``) → positive p50 budget in milliseconds."""
    fields = _ProfileFields(table, source, prefix="budgets_ms.")
    budgets = {}
    for key in table:
        if "/" in key or os.sep in key:
            raise BadInput(source, f"budgets_ms.{key}: budgets are looked up by the model's file name; drop the folder")
        budgets[key] = fields.positive_float(key, default=None)
    return budgets


class _ProfileFields(TableFields):
    """The recipe loader's typed reads, plus the checks profiles need: patterns for values that reach a
    remote command line, local paths, a delegate list and bounded integers."""

    def integer(self, key, default, minimum, maximum=None):
        value = super().integer(key, default, minimum)
        if maximum is not None and value > maximum:
            raise self._bad(key, f"must be <= {maximum}, got {value}")
        return value

    def matching(self, key, pattern, expected, default=None, required=False):
        """A string that must match ``pattern`` entirely (``None`` when absent and not required)."""
        value = self._get(key, default, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(key, f"expected a string, got {value!r}")
        if not pattern.fullmatch(value):
            raise self._bad(key, f"expected {expected} (no spaces, quotes or shell metacharacters, not "
                                 f"starting with '-'), got {value!r}")
        return value

    def remote_dir(self, key, expected, default):
        """An absolute folder on the device, without "." or ".." parts (the runners create and fill it)."""
        value = self.matching(key, ABSOLUTE_PATH, expected, default=default)
        if has_dot_parts(value):
            raise self._bad(key, f"must not contain '.' or '..' parts, got {value!r}")
        return value

    def local_path(self, key, base_dir, required=False):
        """A path on this machine: ``~`` expanded, relative paths taken from the profile's folder."""
        value = self._get(key, None, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, f"expected a path, got {value!r}")
        if any(c in value for c in "\0\n\r"):
            raise self._bad(key, f"path contains a control character: {value!r}")
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))

    def hex_mask(self, key):
        """A taskset CPU mask in hex ("f0" or "0xf0"), returned lower-case without "0x"; None when absent."""
        value = self.matching(key, _HEX_MASK, 'a hexadecimal CPU mask such as "f0"')
        if value is None:
            return None
        digits = value[2:] if value[:2].lower() == "0x" else value
        if int(digits, 16) == 0:
            raise self._bad(key, "the mask selects no CPU")
        return digits.lower()

    def delegates(self, key, kind):
        value = self._get(key, list(DeviceProfile.delegates))
        if not isinstance(value, list) or not value:
            raise self._bad(key, f"expected a non-empty list such as [\"xnnpack\", \"cpu\"], got {value!r}")
        for entry in value:
            if entry not in DELEGATES:
                raise self._bad(key, f"expected names from {', '.join(map(repr, DELEGATES))}, got {entry!r}")
        if len(set(value)) != len(value):
            raise self._bad(key, f"lists a delegate twice: {value!r}")
        if "nnapi" in value and kind != "adb":
            raise self._bad(key, "'nnapi' is Android's neural-network API; it only applies to kind = \"adb\"")
        return tuple(value)
