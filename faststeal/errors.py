"""The one base class of every error that bad input can cause: the CLI prints it as one `error:` line.

Each module raises its own subclass (DataError, TargetError, StaleCheckpoint, ...), which also keeps its
older built-in base (ValueError, RuntimeError, OSError) so library callers that caught those still do.
"""
from __future__ import annotations


class FaststealError(Exception):
    """Input or state the user can fix; the message says how, in one line."""


class OptionError(FaststealError, ValueError):
    """A command's option has a value the run cannot use; ``flag`` names it (e.g. "--queries")."""

    def __init__(self, message: str, flag: str | None = None):
        super().__init__(f"{flag}: {message}" if flag else message)
        self.flag, self.detail = flag, message
