"""The shiftflow error hierarchy.

Every error a user can cause (a bad file, an unsupported model, a bad flag) is a
``ShiftflowError``; the CLI prints its message on one line and exits 2. Anything else
escaping a command is a bug and keeps its traceback.

Messages say what must hold, what was found, and where (ONNX node, IR op, layer).
"""


class ShiftflowError(Exception):
    """Base class of all user-facing errors."""


class ImportError_(ShiftflowError):
    """The ONNX file cannot be read or is malformed (missing shapes, bad graph)."""


class UnsupportedError(ShiftflowError):
    """The model is well formed but uses something shiftflow does not support."""


class QuantizationError(UnsupportedError):
    """A scale, zero point or bit width that is not shift-quantizable."""


class ResourceError(ShiftflowError):
    """A layer does not fit the target (buffer, accumulator width, ...)."""


class VerifyError(ShiftflowError):
    """The IR is inconsistent; names the pass after which it was found."""


class ParseError(ShiftflowError):
    """The IR text form cannot be parsed."""


class UsageError(ShiftflowError):
    """A bad command-line argument or input file for a command."""


class ProgramError(ShiftflowError):
    """A build directory or program that is missing, corrupted, or made for something else,
    or an instruction a machine cannot run (``ir/program.py``, ``ir/decode.py``, the
    simulator and the RTL bench name the instruction and the field)."""
