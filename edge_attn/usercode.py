"""The user's own Python modules, imported so that their models' ``Lambda`` layers load (``--import``).

A Lambda saved in a ``.keras``/``.h5`` file is Python bytecode whose global names (``K``, ``tf``, a helper
function) lived in the module that defined it, usually the user's training script. tf-keras resolves
them from that module only if it is already imported (``sys.modules``), and from ``custom_objects``.
``--import MODULE`` (repeatable, with ``--code-path DIR`` for where it lives) imports each module, as the
training script had it, and offers its module-level names to the loader. Importing runs the module's
top-level code, so it only happens when the user also passes ``--trust-model-code``.
"""

import importlib
import os
import sys

from edge_attn.errors import BadInput

_namespace = {}  # names the imported modules define, offered to Lambda layers as globals


def import_user_code(modules=(), code_paths=()):
    """Import ``modules`` (after putting ``code_paths`` first on ``sys.path``); BadInput naming the module."""
    for path in code_paths:
        if not os.path.isdir(path):
            raise BadInput(f"--code-path {path}", "is not a folder")
        sys.path.insert(0, os.path.abspath(path))
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            missing = error.name or name
            raise BadInput(f"--import {name}", f"no module named {missing!r} on the Python path; pass the folder "
                                               "that holds it with --code-path DIR") from error
        except Exception as error:  # the user's module failed while running its top-level code
            first = " ".join(str(error).split())[:200]
            raise BadInput(f"--import {name}", f"importing it raised {type(error).__name__}: {first}") from error
        # Classes are left out: a module that imported Keras 3 classes must not shadow tf-keras' own.
        _namespace.update({key: value for key, value in vars(module).items()
                           if not key.startswith("__") and not isinstance(value, type)})


def lambda_globals():
    """Names from the imported modules, for the loader's ``custom_objects`` (empty without ``--import``)."""
    return dict(_namespace)
