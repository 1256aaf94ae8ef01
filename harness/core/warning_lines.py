"""How the harness prints a warning: one line, ``warning: <message> (<category>)``, instead of Python's default
of file name, line number and source line (issue 34 item 19), in the command's process and in Ray's workers."""
from __future__ import annotations

import warnings


def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             line: str | None = None) -> str:
    """``warnings.formatwarning``'s replacement: the message's words on one line and the warning's category."""
    return f"warning: {' '.join(str(message).split())} ({category.__name__})\n"


def print_warnings_on_one_line() -> None:
    """Make every warning of this process print as :func:`one_line`."""
    warnings.formatwarning = one_line
