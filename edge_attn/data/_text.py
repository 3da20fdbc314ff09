"""Small text helpers for the data loaders' one-line BadInput messages (sizes, shapes, exceptions)."""


def size_text(nbytes):
    """``1.5 GB`` style (binary units)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def shape_text(shape):
    """``(16, 16, 1)``, with ``?`` for an unknown size."""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def one_line(exc):
    """An exception as ``Type: message`` on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())
