"""The one owner of a results folder's layout and of every file in a trial folder.

::

    <root>/runs/<experiment>/<trial_id>/        a trial (role final or sweep)
    <root>/runs/<experiment>/.claims/           while runs are under way: one file per run, the trials it claimed
    <root>/searches/<search>/trials/<trial_id>/ a search's trial (role search; experiment = search name)
        record.json      the TrialRecord (written by the driver the moment the trial ends)
        checkpoint.pt    the last epoch's training state (while the trial runs; deleted when it ends)
        model.pt         the trained weights (a state dict)
        embeddings.npz   the evaluated embeddings and labels (cache for ``harness evaluate``)
    <root>/searches/<search>/   the search's study and outputs
    <root>/sweeps/<experiment>/ sensitivity plots
    <root>/benchmarks/<name>/   a benchmark's manifest, studies and report (its search trials live in
                                searches/<name>.<method>/, its final trials in runs/<name>/)
    <root>/leaderboards/        leaderboards
    <root>/tensorboard/         TensorBoard event files (``--tensorboard``)
    <root>/ray/                 Ray Tune's scratch state (default storage)

A results folder is a closed space: a symbolic link inside it may lead elsewhere inside it, but a path
through one that leads out of it is refused, naming the link, before anything is written
(:meth:`TrialStore.check_writable`, :func:`harness.core.names.inside`).

Every file is written through a temporary file in the same folder and an atomic rename, with the
permissions the umask gives (0644 under the usual 022), never 0600. Checkpoints and weights hold
tensors and plain types only and are loaded with ``torch.load(weights_only=True)``: nothing in a
results folder is unpickled. Their encoding is :mod:`harness.engine.tensor_files`'s (this layer imports
no torch): the store takes their bytes and hands their paths to a loader.

On a cluster, a trial's checkpoint, weights and embeddings are written by its worker (into
``--results-dir`` if its node sees it, else through the driver: see :mod:`harness.scheduling.trial_files`)
and its record by the driver; the record's ``nodes`` name the Ray nodes its attempts ran on.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
import uuid
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

from harness.core.names import inside
from harness.core.record import RecordError, TrialRecord
from harness.core.spec import TrialSpec
from harness.core.trial import Trial

#: the folders of a results folder (each checked by :meth:`TrialStore.check_writable`)
LAYOUT = ("runs", "searches", "sweeps", "benchmarks", "leaderboards", "tensorboard", "ray")
RECORD_FILE = "record.json"
CLAIMS_FOLDER = ".claims"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
EMBEDDINGS_FILE = "embeddings.npz"
#: the arrays of an embeddings file: always the queries, and a separate gallery (In-Shop) or none
QUERY_ARRAYS = ("query", "query_labels")
GALLERY_ARRAYS = ("gallery", "gallery_labels")

#: what the loader given to :meth:`TrialStore.load_checkpoint` returns (a checkpoint's tensors and plain types)
Loaded = TypeVar("Loaded")


class UnsafeFileError(ValueError):
    """A checkpoint or weights file that holds more than tensors and plain types; refused, never unpickled."""


class CorruptFileError(ValueError):
    """A truncated or unreadable checkpoint or weights file; the message names it."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_temporary(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    """``write(f)`` into a new temporary file beside ``path``, flushed to disk with the umask's permissions;
    its path. An ``OSError`` without a file name (a full disk, a read-only folder) is raised again naming
    ``path``, the temporary file removed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(error, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    """Write ``path`` through a temporary file and an atomic rename (errors as :func:`_write_temporary`'s)."""
    tmp = _write_temporary(path, write, mode)
    try:
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _naming(error, path) from None


class AtomicFiles:
    """Files that land together (a leaderboard's CSV, Markdown, LaTeX and figures): inside the ``with`` block
    each is written to a temporary file beside its target; when the block ends without an error they are all
    renamed into place, and when it raises (a full disk at the fourth file) none is and every temporary file
    is removed, so the files written before stay as they were, consistent with one another."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def write_text(self, path: str | Path, text: str) -> None:
        self._pending.append((_write_temporary(Path(path), lambda f: f.write(text), "w"), Path(path)))

    def write_binary(self, path: str | Path, write: Callable[[Any], None]) -> None:
        self._pending.append((_write_temporary(Path(path), write, "wb"), Path(path)))

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        if kind is None:
            for tmp, path in self._pending:
                os.replace(tmp, path)
        else:
            for tmp, _path in self._pending:
                tmp.unlink(missing_ok=True)
        self._pending = []


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` with ``path`` as its file name (``[Errno 28] No space left on device: 'path'``)."""
    if error.errno is None or error.filename is not None:
        return error
    return type(error)(error.errno, error.strerror, str(path))


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with the umask's permissions."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def atomic_write_binary(path: str | Path, write: Callable[[Any], None]) -> None:
    """``write(f)`` into a binary file object, landing at ``path`` atomically with the umask's permissions."""
    _atomic_write(Path(path), write, "wb")


def atomic_save_array(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` atomically (no pickled objects)."""
    _atomic_write(Path(path), lambda f: np.save(f, array, allow_pickle=False), "wb")


class TrialStore:
    """The trials, searches, sweeps and leaderboards under one results folder (the command's ``--results-dir``).

    A command builds its store once and hands it down (executors, the search driver, a benchmark,
    :func:`~harness.engine.runner.run_trial` all write through the store they are given); only a Ray
    worker builds its own, for its node's view of the folder (:mod:`harness.scheduling.trial_files`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        #: the unreadable record files this store has warned about: each is named once per command
        self._named_unreadable: set[Path] = set()

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        return self._under("runs")

    def _under(self, *parts: str) -> Path:
        """``root/parts...``, refused (``ValueError``) if a part, or a symbolic link on the way, leads out of
        the results folder (:func:`~harness.core.names.inside`)."""
        return inside(self.root, self.root.joinpath(*parts))

    def experiment_dir(self, experiment: str) -> Path:
        return self._under("runs", experiment)

    def search_dir(self, name: str) -> Path:
        return self._under("searches", name)

    def benchmark_dir(self, name: str) -> Path:
        return self._under("benchmarks", name)

    def sweep_dir(self, experiment: str) -> Path:
        return self._under("sweeps", experiment)

    @property
    def leaderboard_dir(self) -> Path:
        return self._under("leaderboards")

    @property
    def tensorboard_dir(self) -> Path:
        return self._under("tensorboard")

    @property
    def tune_dir(self) -> Path:
        return self._under("ray")

    def trial_dir(self, trial: Trial) -> Path:
        if trial.spec.role == "search":
            return self._under("searches", trial.placement.experiment, "trials", trial.trial_id)
        return self._under("runs", trial.placement.experiment, trial.trial_id)

    def record_path(self, trial: Trial) -> Path:
        return self.trial_dir(trial) / RECORD_FILE

    def check_writable(self, trials: Iterable[Trial] = ()) -> None:
        """Before any trial: raise ``ValueError`` naming the link if one of the layout's folders or the folder
        of one of ``trials`` is a symbolic link that leads out of the results folder, and
        ``PermissionError`` naming the folder unless files can be created in it."""
        for folder in LAYOUT:
            self._under(folder)
        for trial in trials:
            self.trial_dir(trial)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".write-check.")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise PermissionError(f"the results folder {self.root} is not writable: {error.strerror or error}") from None

    # ---- records --------------------------------------------------------------------------------
    def write_record(self, record: TrialRecord) -> Path:
        return write_record_file(self.record_path(record.trial), record)

    @staticmethod
    def read_record_file(path: str | Path) -> TrialRecord:
        """The record in ``path``; :class:`~harness.core.record.RecordError` naming the file if it is not one."""
        try:
            return TrialRecord.from_dict(json.loads(Path(path).read_text()))
        except UnicodeDecodeError as error:
            raise RecordError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
                              f"{error.start}), not a record") from None
        except RecursionError:
            raise RecordError(f"{path}: nested too deeply to be a record") from None
        except (OSError, json.JSONDecodeError, RecordError) as error:
            raise RecordError(f"{path}: {error}") from None

    def read_record(self, trial: Trial) -> TrialRecord | None:
        path = self.record_path(trial)
        if not path.exists():
            return None
        try:
            return self.read_record_file(path)
        except RecordError as error:
            warnings.warn(f"ignoring unreadable trial record {error}", stacklevel=2)
            return None

    def is_finished(self, trial: Trial) -> bool:
        """Whether ``trial`` has a record that ``--resume`` keeps: finished, or diverged (the same seed
        diverges again)."""
        record = self.read_record(trial)
        return record is not None and record.status in ("ok", "diverged")

    def record_files(self, experiment: str | None = None) -> list[Path]:
        base = self.experiment_dir(experiment) if experiment else self.runs
        return sorted(base.glob(f"*/*/{RECORD_FILE}" if not experiment else f"*/{RECORD_FILE}"))

    def known_records(self, experiment: str, known: Mapping[Path, TrialRecord]) -> Iterator[tuple[Path, TrialRecord]]:
        """(path, record) of ``experiment``'s records among ``known`` (every readable record, read once by the
        caller), none read again: a record that could not be read was warned about once, when it was read."""
        folder = self.experiment_dir(experiment)
        return ((path, record) for path, record in sorted(known.items()) if path.parent.parent == folder)

    def records(self, experiment: str | None = None,
                known: Mapping[Path, TrialRecord] | None = None) -> Iterator[tuple[Path, TrialRecord]]:
        """(path, record) of every readable record under ``runs/`` (sorted by path); an unreadable,
        partial or malformed one is skipped with a warning naming its file (once: a later look skips it
        silently). A file in ``known`` (records the caller read already) is not read again."""
        for path in self.record_files(experiment):
            if known is not None and path in known:
                yield path, known[path]
                continue
            try:
                yield path, self.read_record_file(path)
            except RecordError as error:
                if path not in self._named_unreadable:
                    self._named_unreadable.add(path)
                    warnings.warn(f"skipping trial record {error}", stacklevel=2)

    def search_records(self, name: str) -> Iterator[TrialRecord]:
        """Every readable record of search ``name``'s trials (sorted by path); an unreadable one is skipped
        with a warning naming its file."""
        for path in sorted((self.search_dir(name) / "trials").glob(f"*/{RECORD_FILE}")):
            try:
                yield self.read_record_file(path)
            except RecordError as error:
                warnings.warn(f"skipping trial record {error}", stacklevel=2)

    # ---- an experiment's protocol, claimed by the runs under way ----------------------------------
    @contextmanager
    def protocol_lock(self, experiment: str) -> Iterator[None]:
        """Hold the experiment's exclusive protocol lock (``flock`` on its folder, made if missing: released by
        the kernel if the process dies); says so on stderr, once, while another run holds it."""
        folder = self.experiment_dir(experiment)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another run into experiment {experiment} to claim its protocol (lock on {folder})",
                      file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def protocol_claim(self, experiment: str, specs: list[TrialSpec], check: Callable[[list[TrialSpec]], None],
                       known: Mapping[Path, TrialRecord] | None = None) -> Iterator[None]:
        """Check and claim an experiment's protocol in one step: under :meth:`protocol_lock`, call ``check`` with
        the specs the experiment already holds (:meth:`held_specs`: its records' and the other runs' claims),
        which raises to refuse, then write this run's claim (``specs``, ``runs/<experiment>/.claims/``); the
        claim goes when the context exits, by which time the run's records hold what it claimed. Two runs at
        once into one experiment are so checked one after the other, the second against the first's claim.
        ``known``: the records the caller read already (only the files written since are read)."""
        claims = self.experiment_dir(experiment) / CLAIMS_FOLDER
        path = claims / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        with self.protocol_lock(experiment):
            check(self.held_specs(experiment, known))
            atomic_write_text(path, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                "specs": [s.to_dict() for s in specs]}, sort_keys=True) + "\n")
        try:
            yield
        finally:
            with self.protocol_lock(experiment):
                path.unlink(missing_ok=True)
                if not any(claims.iterdir()):
                    claims.rmdir()

    def held_specs(self, experiment: str, known: Mapping[Path, TrialRecord] | None = None) -> list[TrialSpec]:
        """The specs an experiment's protocol is held by: its readable records (final, test split: the trials of
        its boards; those in ``known`` not read again) and the claims of the runs into it that are under way (a
        claim of a process of this host that no longer exists is stale: ignored and removed)."""
        held = [r.spec for _, r in self.records(experiment, known)
                if r.spec.role == "final" and r.spec.eval_split == "test"]
        for path in sorted((self.experiment_dir(experiment) / CLAIMS_FOLDER).glob("*.json")):
            try:
                claim = json.loads(path.read_text())
                specs = [TrialSpec(**s) for s in claim["specs"]]
                stale = claim["host"] == socket.gethostname() and not _process_exists(int(claim["pid"]))
            except (OSError, ValueError, KeyError, TypeError) as error:
                warnings.warn(f"ignoring unreadable protocol claim {path}: {error}", stacklevel=2)
                continue
            if stale:
                path.unlink(missing_ok=True)
            else:
                held += specs
        return held

    # ---- checkpoints, weights, embeddings -------------------------------------------------------
    def checkpoint_path(self, trial: Trial) -> Path:
        return self.trial_dir(trial) / CHECKPOINT_FILE

    def save_checkpoint(self, trial: Trial, data: bytes) -> Path:
        """Write the trial's epoch checkpoint (``data``: :func:`harness.engine.tensor_files.tensor_bytes`)."""
        path = self.checkpoint_path(trial)
        atomic_write_binary(path, lambda f: f.write(data))
        return path

    def load_checkpoint(self, trial: Trial, load: Callable[[Path], Loaded]) -> Loaded | None:
        """``load(path)`` of the epoch checkpoint an interrupted trial left in its folder, else None. A
        truncated one (``load`` raises :class:`CorruptFileError`) is named in a warning, deleted, and None
        returned (the trial starts again); one holding pickled code raises :class:`UnsafeFileError`."""
        path = self.checkpoint_path(trial)
        if not path.exists():
            return None
        try:
            return load(path)
        except CorruptFileError as error:
            warnings.warn(f"{error}; the trial starts again from epoch 0", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def delete_checkpoint(self, trial: Trial) -> None:
        self.checkpoint_path(trial).unlink(missing_ok=True)

    def save_model(self, trial: Trial, data: bytes) -> Path:
        """Write the trial's trained weights (``data``: its state dict through
        :func:`harness.engine.tensor_files.tensor_bytes`)."""
        path = self.trial_dir(trial) / MODEL_FILE
        atomic_write_binary(path, lambda f: f.write(data))
        return path

    def remove_outputs(self, trial: Trial) -> list[Path]:
        """Delete the trial's weights and embeddings (what its record's run left beside it, before the record
        is replaced: ``--overwrite``); the paths of those that existed."""
        removed = []
        for name in (MODEL_FILE, EMBEDDINGS_FILE):
            path = self.trial_dir(trial) / name
            if path.is_file():
                path.unlink()
                removed.append(path)
        return removed

    def save_embeddings(self, trial: Trial, **arrays: np.ndarray) -> Path:
        path = self.trial_dir(trial) / EMBEDDINGS_FILE
        _atomic_write(path, lambda f: np.savez(f, **arrays), "wb")
        return path


def write_record_file(path: Path, record: TrialRecord) -> Path:
    """Write ``record`` as the JSON of ``path`` (atomically)."""
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return path


class TrialFolder:
    """A finished trial's folder, as ``embed`` and ``evaluate`` read it: its record, weights and embeddings."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        missing = [name for name in (RECORD_FILE,) if not (self.path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.path / missing[0]} is missing: give a trial folder "
                                    "(results/runs/<experiment>/<trial_id>)")
        self.record = TrialStore.read_record_file(self.path / RECORD_FILE)

    @classmethod
    def found_in(cls, targets: list[str]) -> list[TrialFolder]:
        """The trial folders ``targets`` name (a trial folder, or an experiment folder: its trials);
        ``FileNotFoundError`` naming a target that is neither."""
        folders = []
        for target in targets:
            path = Path(target)
            if (path / RECORD_FILE).is_file():
                folders.append(cls(path))
            elif path.is_dir() and sorted(path.glob(f"*/{RECORD_FILE}")):
                folders += [cls(record.parent) for record in sorted(path.glob(f"*/{RECORD_FILE}"))]
            else:
                raise FileNotFoundError(f"{target}: neither a trial folder nor an experiment folder with trial records")
        return folders

    def rewrite_record(self, record: TrialRecord) -> Path:
        """Replace the folder's record by ``record`` (the same trial re-scored, ``evaluate --rescore``)."""
        if record.trial_id != self.record.trial_id:
            raise ValueError(f"{self.path}: holds trial {self.record.trial_id}, not {record.trial_id}")
        self.record = record
        return write_record_file(self.path / RECORD_FILE, record)

    def model_path(self) -> Path:
        """The trial's weights file (load it with :func:`harness.engine.tensor_files.load_tensors`)."""
        path = self.path / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the trial was run without saving its model")
        return path

    def embeddings(self) -> dict[str, np.ndarray]:
        path = self.path / EMBEDDINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the trial did not cache its embeddings")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise CorruptFileError(f"{path} is truncated or unreadable: {error}") from None
        missing = [name for name in QUERY_ARRAYS if name not in arrays]
        if not missing and (GALLERY_ARRAYS[0] in arrays) != (GALLERY_ARRAYS[1] in arrays):
            missing = [name for name in GALLERY_ARRAYS if name not in arrays]
        if missing:
            raise CorruptFileError(f"{path} lacks the array(s) {', '.join(missing)} (it holds "
                                   f"{', '.join(sorted(arrays)) or 'none'}): not the embeddings a trial writes")
        return arrays
