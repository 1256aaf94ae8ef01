"""The encoding of a trial's tensor files, ``checkpoint.pt`` and ``model.pt``: ``torch.save`` of tensors and
plain types, read back with ``torch.load(weights_only=True)``, so nothing in a results folder is unpickled.

Where those files live, how they are written (atomically) and what happens to a truncated checkpoint is
the :class:`~harness.core.store.TrialStore`'s; this module only turns objects into bytes and files back
into objects (the core layer does not import torch).
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from harness.core.store import CorruptFileError, UnsafeFileError


def tensor_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory (tensors and plain types only: readable with ``weights_only=True``).
    Serialising first and writing the bytes after keeps a failed write (a full disk) an ``OSError`` that
    says why, where torch's own writer raises an opaque ``RuntimeError``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_tensors(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``: refuses pickled code (:class:`UnsafeFileError`) and names a
    truncated or unreadable file (:class:`CorruptFileError`)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(f"{path} holds more than tensors and plain types and was not loaded "
                              f"(nothing in a results folder is unpickled); delete it: {str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CorruptFileError(f"{path} is truncated or unreadable: {error}") from None
