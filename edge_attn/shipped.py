"""TOML data shipped inside the package (conversion recipes, device profiles), found by name or by path.

The files live in the package (``edge_attn/recipes``, ``edge_attn/profiles``) so the installed command finds
them anywhere; the repository's ``converters/`` and ``devices/`` link to them for users to copy and edit.
"""

import os
import tomllib
from importlib import resources

from edge_attn.errors import BadInput


def shipped_names(folder):
    """Names (file names without ``.toml``) of the files shipped in ``edge_attn/<folder>``, sorted."""
    directory = resources.files("edge_attn") / folder
    return sorted(entry.name[: -len(".toml")] for entry in directory.iterdir() if entry.name.endswith(".toml"))


def resolve(name_or_path, folder, what, what_plural):
    """The file to load for ``name_or_path``: a path as given, or the shipped ``<folder>/<name>.toml``.

    An empty or unknown name is a ``BadInput`` listing the shipped names.
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise BadInput(f"{what} name {text!r}", f"is empty; known {what_plural}: {', '.join(shipped_names(folder))} "
                                                 "(or give a path to a .toml)")
    if os.sep in text or "/" in text or text.endswith(".toml") or os.path.isfile(text):
        return text
    path = resources.files("edge_attn") / folder / f"{text}.toml"
    if not path.is_file():
        raise BadInput(text, f"unknown {what}; known {what_plural}: {', '.join(shipped_names(folder))} "
                             "(or give a path to a .toml)")
    return str(path)


def load_table(name_or_path, folder, what, what_plural):
    """(TOML table, its path) for a shipped name or a path; unreadable or invalid files are BadInput."""
    path = resolve(name_or_path, folder, what, what_plural)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), path
    except FileNotFoundError:
        raise BadInput(path, f"no such {what} file") from None
    except OSError as e:
        raise BadInput(path, f"cannot read {what}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise BadInput(path, f"not valid TOML: {e}") from e
