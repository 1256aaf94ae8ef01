"""Names that become folder or file names (experiments, searches, benchmarks, methods, datasets).

One rule, checked where a name enters (the command line, a YAML file, a plugin's registration, a
record read back): letters, digits, ``.``, ``_``, ``-`` and ``+``, starting with a letter or digit
(so never ``.``, ``..``, a hidden name or an option-like ``-x``), no separator, at most
:data:`MAX_NAME_LENGTH` characters. Such a name cannot leave the folder it is joined to;
:func:`inside` is the store's second line of defence where it builds paths.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

#: the longest name accepted: a trial folder joins two of them (method, dataset) with ~30 characters,
#: well under the 255 bytes a file name may have
MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a valid folder name; else ``ValueError`` saying which ``kind`` of name and why."""
    if not isinstance(name, str):
        raise ValueError(f"{kind} name must be text, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{kind} name {name[:40]!r}... is {len(name)} characters long; at most {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} is not a plain folder name: use letters, digits, '.', '_', '-' "
                         "and '+', starting with a letter or digit (no '/', no '..')")
    return name


def inside(root: Path, path: Path) -> Path:
    """``path`` if, with ``..`` and ``.`` resolved (lexically: a symlinked subfolder is allowed), it lies
    inside ``root``; else ``ValueError`` (a name that escaped its check)."""
    base = os.path.abspath(root)
    if os.path.commonpath([base, os.path.abspath(path)]) != base:
        raise ValueError(f"{path} lies outside the results folder {root}")
    return path
