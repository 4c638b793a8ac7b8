"""The one base class of capsim's input errors.

``CapsimError`` is what the library raises for input a user can fix: a bad scenario file or data file, an
output folder in the way, a device or method that cannot be had. The command line turns exactly these into
exit code 2 with their message; anything else is a bug and keeps its traceback.

A message names Python arguments (``force=True``); where the fix differs on the command line, the error also
carries its flag form (``--force``), which the CLI prints instead.
"""

from __future__ import annotations


class CapsimError(ValueError):
    """Bad input to capsim. ``fix``: how to mend it, as ``(in Python, on the command line)``."""

    def __init__(self, message: str, fix: tuple[str, str] | None = None):
        self.message, self.fix = message, fix
        super().__init__(message + (f"; {fix[0]}" if fix else ""))

    def cli_message(self) -> str:
        """The message with the command-line form of the fix (flags instead of Python arguments)."""
        return self.message + (f"; {self.fix[1]}" if self.fix else "")


def combined(errors: list[CapsimError], cls: type[CapsimError] = CapsimError, header: str | None = None) -> CapsimError:
    """Several input errors reported at once, as one ``cls``: ``header``, then each message on its own lines,
    with the first fix given."""
    fixes = [e.fix for e in errors if e.fix]
    lines = ([header] if header else []) + [e.message for e in errors]
    return cls("\n".join(lines), fixes[0] if fixes else None)
