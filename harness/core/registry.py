"""Name-keyed registries, in the style of timm's ``register_model`` / ``create_model``.

One :class:`Registry` per kind of thing (methods, datasets, backbones, recipes). Entries are added
by decorator; lookups of unknown names fail at once with the list of valid ones.
"""
from __future__ import annotations

import importlib
import traceback
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from harness.core.names import check_name

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping ``name -> entry`` filled by ``@registry.register("name")``."""

    def __init__(self, kind: str, entry_point_group: str | None = None, names_are_paths: bool = True):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.names_are_paths = names_are_paths
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Register under ``name``; where names become paths (method and dataset names are parts of trial
        folder names), a plain folder name (:func:`~harness.core.names.check_name`), else ``ValueError``."""
        if self.names_are_paths:
            check_name(self.kind, name)

        def decorator(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorator

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.entry_point_group:
            for ep in entry_points(group=self.entry_point_group):
                ep.load()

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Import third-party modules whose import registers methods, datasets or backbones; a module that
    cannot be imported, or raises while it is imported, raises ``ImportError`` naming it (and the file and
    line that raised) in one line."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"--plugins {module}: cannot import it ({error}); is it installed or on "
                              "PYTHONPATH?") from None
        except Exception as error:  # a plugin's own bug: one line, not its traceback
            if isinstance(error, SyntaxError):
                text, where = error.msg, (error.filename, error.lineno)
            else:
                text, where = str(error), tuple(traceback.extract_tb(error.__traceback__)[-1])[:2]
            raise ImportError(f"--plugins {module}: importing it raised {type(error).__name__}: {text} "
                              f"({where[0]}, line {where[1]})") from None
