"""Names that become folder or file names (experiments, searches, benchmarks, methods, datasets).

One rule, checked where a name enters (the command line, a YAML file, a plugin's registration, a
record read back): letters, digits, ``.``, ``_``, ``-`` and ``+``, starting with a letter or digit
(so never ``.``, ``..``, a hidden name or an option-like ``-x``), no separator, at most
:data:`MAX_NAME_LENGTH` characters. Such a name cannot leave the folder it is joined to;
:func:`inside` is the store's second line of defence where it builds paths, and also refuses a path that a
symbolic link inside the results folder would lead out of it.
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
    """``path`` if it lies inside ``root``, with ``..`` and ``.`` resolved and every symbolic link on the way
    followed: a results folder is a closed space, so a link inside it that leads out of it (``runs/digits``
    -> ``/elsewhere``) is refused (``ValueError`` naming the link) rather than written through. A link that
    stays inside the folder, or a results folder that is itself a link, is followed."""
    base = os.path.abspath(root)
    if os.path.commonpath([base, os.path.abspath(path)]) != base:
        raise ValueError(f"{path} lies outside the results folder {root}")
    real_base = os.path.realpath(base)
    if os.path.commonpath([real_base, os.path.realpath(path)]) == real_base:
        return path
    current = Path(base)
    for part in Path(os.path.relpath(os.path.abspath(path), base)).parts:
        current = current / part
        if current.is_symlink() and os.path.commonpath([real_base, os.path.realpath(current)]) != real_base:
            raise ValueError(f"{current} is a symbolic link to {os.path.realpath(current)}, outside the results "
                             f"folder {root}: nothing is written through it (a results folder is a closed space); "
                             "remove the link, or give that folder as --results-dir")
    raise ValueError(f"{path} lies outside the results folder {root}")
