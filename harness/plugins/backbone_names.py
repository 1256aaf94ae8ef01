"""The backbone names a run may ask for, known without importing timm or torch (issue 33: a typo is
answered in well under a second).

timm lists its models only once it has imported all of them (seconds, with torch). The list depends on
timm's version alone, so the first look-up under a timm version imports timm once and keeps
``timm.list_models()`` in the user's cache (``$XDG_CACHE_HOME/dmlbench``, else ``~/.cache/dmlbench``,
``$DMLBENCH_CACHE`` overriding both), written atomically; every later look-up reads that file. When timm is
imported already (a ``--plugins`` module that registers its own backbone with timm imports it), its live list
is read instead, so a plugin's backbone is always known. Our own backbones (:data:`PAPER_BACKBONES`) are
always valid.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

from harness.core.registry import UnknownNameError
from harness.core.store import atomic_write_text

#: The timm names :mod:`harness.plugins.backbones` registers.
PAPER_BACKBONES: tuple[str, ...] = ("bninception", "small_cnn", "pixels")

#: Backbones named in help texts and ``python -m harness list``: ours plus the usual timm ones.
EXAMPLE_BACKBONES: tuple[str, ...] = PAPER_BACKBONES + ("resnet50", "vit_small_patch16_224")


def cache_dir() -> Path:
    """The folder of the harness's per-user caches (not results: deleting it loses nothing)."""
    if os.environ.get("DMLBENCH_CACHE"):
        return Path(os.environ["DMLBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dmlbench"


def _timm_names() -> list[str]:
    """``timm.list_models()`` of the installed timm: live when timm is imported, else from the cache file of
    its version (made here on the first look-up, importing timm that once)."""
    if "timm" in sys.modules:
        return sys.modules["timm"].list_models()
    path = cache_dir() / f"timm-{version('timm')}-models.txt"
    try:
        return path.read_text().split()
    except OSError:
        pass
    import timm

    names = timm.list_models()
    try:
        atomic_write_text(path, "\n".join(names) + "\n")
    except OSError:  # a read-only home: the names are still right, the next look-up imports timm again
        pass
    return names


def backbone_names() -> list[str]:
    """Every backbone a trial can build here: timm's models and ours, sorted."""
    return sorted(set(_timm_names()) | set(PAPER_BACKBONES))


def check_backbone_name(name: str) -> None:
    """Raise :class:`UnknownNameError` (with examples) unless a trial can build backbone ``name``."""
    if name in PAPER_BACKBONES:
        return
    names = backbone_names()
    if name not in names:
        raise UnknownNameError(f"unknown backbone {name!r}; e.g. {', '.join(EXAMPLE_BACKBONES)} "
                               f"or any of timm's {len(names) - len(PAPER_BACKBONES)} models (python -m harness list)")
