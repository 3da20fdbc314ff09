"""Errors the command line turns into exit codes (see docs/cli.md, "Exit codes").

``BadInput`` (exit 2) is for anything the user handed us that we cannot use: it names the input and
says what is wrong, in one line. ``CheckFailed`` (exit 1) is for a check that ran and missed its budget.
"""


class EdgeAttnError(Exception):
    """Base class of the errors edge_attn reports without a traceback."""

    exit_code = 2


class BadInput(EdgeAttnError):
    """An input (file, data spec, model name, argument) that cannot be used.

    ``BadInput("data.npz", "array 'x' is missing")`` renders as ``data.npz: array 'x' is missing``.
    """

    exit_code = 2

    def __init__(self, what, problem):
        self.what = str(what)
        self.problem = " ".join(str(problem).split())  # one line, whatever a library's message held
        super().__init__(f"{self.what}: {self.problem}")


class CheckFailed(EdgeAttnError):
    """A check ran to the end and its result is outside the user's budget."""

    exit_code = 1
