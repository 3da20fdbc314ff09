"""Find Qualcomm's QNN libraries and lay them out where LiteRT's Qualcomm compiler plug-in can load them.

LiteRT's plug-in (``ai_edge_litert/vendors/qualcomm/compiler/libLiteRtCompilerPlugin_Qualcomm.so``) has
``DT_NEEDED`` entries on ``libQnnHtp.so``, ``libQnnIr.so``, ``libQnnLpai.so``, ``libQnnSaver.so`` and
``libQnnSystem.so``, resolved through ``LD_LIBRARY_PATH`` by the dynamic loader when the process starts the
plug-in — so the folder must exist before the compiler process is started (:mod:`edge_attn.targets.qnn` runs it
as a child with that variable set). Where the libraries come from, in order:

1. ``QNN_SDK_ROOT`` — a user's QAIRT SDK: ``$QNN_SDK_ROOT/lib/x86_64-linux-clang`` holds all five.
2. The ``onnxruntime-qnn`` wheel (``pip install -e ".[npu]"``), which carries the x86-64 QNN libraries (2.7.0:
   QNN 2.51) for ONNX Runtime's own offline HTP compile. It has no ``libQnnLpai.so`` (the low-power AI backend,
   which the HTP path never calls), and the loader refuses to start the plug-in without a file of that name,
   ``RTLD_LAZY`` or not (measured: "Loaded 0 plugins"). We build an empty shared library of that name from a one-
   line C file (a C compiler is needed once; the result is cached). An empty library is the sound choice: when
   the plug-in asks ``libQnnLpai.so`` for its QNN interface, it finds none and fails cleanly, whereas a borrowed
   real library (e.g. a link to ``libQnnSaver.so``) would answer as the wrong backend.

The prepared folder (symlinks to the chosen files, plus the stub when needed) lives in a cache folder
(``$EDGE_ATTN_CACHE``, else ``$XDG_CACHE_HOME/edge_attn``, else ``~/.cache/edge_attn``), one per library source,
built in a temporary folder and renamed into place so that concurrent runs never see half of it.
"""

import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile

from edge_attn.errors import BadInput

SDK_LIB_SUBDIR = os.path.join("lib", "x86_64-linux-clang")
# What the plug-in's DT_NEEDED entries name (readelf -d), without the one the wheel lacks.
NEEDED = ("libQnnHtp.so", "libQnnIr.so", "libQnnSaver.so", "libQnnSystem.so")
LPAI = "libQnnLpai.so"
INSTALL_HINT = 'pip install -e ".[npu]" (the onnxruntime-qnn wheel), or set QNN_SDK_ROOT to a QAIRT SDK'
_STUB_SOURCE = "/* edge_attn: empty stand-in for libQnnLpai.so, which the HTP compile path never calls. */\n" \
               "void edge_attn_qnn_lpai_placeholder(void) {}\n"
_COMPILE_TIMEOUT_S = 120


@dataclasses.dataclass(frozen=True)
class QnnLibraries:
    """Where the compiler child process finds QNN: ``search_path`` goes into its ``LD_LIBRARY_PATH``.

    ``source`` says where the files came from (``"QNN_SDK_ROOT=/opt/qairt"`` or ``"onnxruntime-qnn 2.7.0"``);
    ``declared_version`` is the QNN version that source states (the wheel's ``qnn_version``; None for an SDK),
    the version the compiler reports in its log is authoritative. ``lpai_stub`` tells whether libQnnLpai.so is
    our empty stand-in.
    """

    folder: str
    search_path: tuple
    source: str
    declared_version: str | None
    lpai_stub: bool


def find_qnn_libraries(cache_dir=None):
    """The QNN libraries to compile with, prepared for loading; raises :class:`BadInput` when there are none."""
    root = os.environ.get("QNN_SDK_ROOT")
    if root:
        lib_dir = os.path.join(root, SDK_LIB_SUBDIR)
        missing = [name for name in NEEDED if not os.path.isfile(os.path.join(lib_dir, name))]
        if missing:
            raise BadInput("QNN_SDK_ROOT", f"{root} is not a QAIRT SDK for x86-64 Linux: {SDK_LIB_SUBDIR} lacks "
                                           f"{', '.join(missing)}")
        return _prepared(lib_dir, extra_paths=(), source=f"QNN_SDK_ROOT={root}", declared_version=None,
                         cache_dir=cache_dir)
    wheel_dir = _wheel_dir()
    if wheel_dir is None:
        raise BadInput("--delegate qnn", f"no QNN libraries found: {INSTALL_HINT}")
    missing = [name for name in NEEDED if not os.path.isfile(os.path.join(wheel_dir, name))]
    if missing:
        raise BadInput("onnxruntime-qnn", f"{wheel_dir} lacks {', '.join(missing)}; reinstall it: {INSTALL_HINT}")
    package_version, qnn_version = _wheel_versions(wheel_dir)
    # The wheel's libraries need its bundled libc++ from here; their RPATH ($ORIGIN/../onnxruntime_qnn.libs) is
    # read relative to the folder they were opened from, our symlink folder, so it does not find it.
    extra = tuple(p for p in (wheel_dir + ".libs",) if os.path.isdir(p))
    return _prepared(wheel_dir, extra_paths=extra, source=f"onnxruntime-qnn {package_version}",
                     declared_version=qnn_version, cache_dir=cache_dir)


def default_cache_dir():
    explicit = os.environ.get("EDGE_ATTN_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge_attn")


def _wheel_dir():
    spec = importlib.util.find_spec("onnxruntime_qnn")  # finds the folder without importing onnxruntime
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def _wheel_versions(wheel_dir):
    """(package version, QNN version) from the wheel's ``build_and_package_info.py`` (plain assignments)."""
    try:
        with open(os.path.join(wheel_dir, "build_and_package_info.py"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "(unknown version)", None
    found = dict(re.findall(r"^(__version__|qnn_version)\s*=\s*['\"]([^'\"]+)['\"]", text, re.M))
    return found.get("__version__", "(unknown version)"), found.get("qnn_version")


def _prepared(lib_dir, *, extra_paths, source, declared_version, cache_dir):
    real_lpai = os.path.join(lib_dir, LPAI)
    has_lpai = os.path.isfile(real_lpai)
    files = [os.path.join(lib_dir, name) for name in NEEDED] + ([real_lpai] if has_lpai else [])
    fingerprint = hashlib.sha256(_STUB_SOURCE.encode())  # a changed stand-in gets a new folder
    for path in files:
        st = os.stat(path)
        fingerprint.update(f"{os.path.realpath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cache_root = os.path.join(cache_dir or default_cache_dir(), "qnn-libs")
    folder = os.path.join(cache_root, fingerprint.hexdigest()[:16])
    if not os.path.isfile(os.path.join(folder, ".complete")):
        _build_folder(folder, files, stub=not has_lpai)
    return QnnLibraries(folder=folder, search_path=(folder, *extra_paths), source=source,
                        declared_version=declared_version, lpai_stub=not has_lpai)


def _build_folder(folder, files, *, stub):
    parent = os.path.dirname(folder)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".building-", dir=parent)
    except OSError as error:
        raise BadInput(parent, f"cannot prepare the QNN library folder there: {error.strerror or error}; set "
                               "EDGE_ATTN_CACHE to a writable folder") from error
    try:
        for path in files:
            os.symlink(os.path.realpath(path), os.path.join(staging, os.path.basename(path)))
        if stub:
            _compile_stub(os.path.join(staging, LPAI), staging)
        with open(os.path.join(staging, ".complete"), "w", encoding="utf-8") as f:
            f.write("\n".join(os.path.realpath(p) for p in files) + "\n")
        try:
            os.rename(staging, folder)
        except OSError:
            if not os.path.isfile(os.path.join(folder, ".complete")):  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _c_compiler():
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _compile_stub(target, workdir):
    compiler = _c_compiler()
    if compiler is None:
        raise BadInput(LPAI, "the onnxruntime-qnn wheel lacks it and no C compiler (cc) is here to build its empty "
                             "stand-in: install one (apt-get install gcc) or set QNN_SDK_ROOT to a QAIRT SDK")
    source = os.path.join(workdir, "lpai_stub.c")
    with open(source, "w", encoding="utf-8") as f:
        f.write(_STUB_SOURCE)
    try:
        result = subprocess.run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{LPAI}", "-o", target, source],
                                capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BadInput(LPAI, f"building its empty stand-in with {compiler} failed: {error}") from error
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        raise BadInput(LPAI, f"building its empty stand-in with {compiler} failed: {last[0]}")
    os.remove(source)
