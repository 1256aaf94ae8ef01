"""How a Ray trial's files reach the driver's results folder, whether or not its node can see it.

The driver of a Ray run keeps a :class:`ResultsKeeper` (a Ray actor pinned to the driver's node,
holding no CPU) and leaves a token file in its results folder. A trial whose node sees that token
(the driver's node, or any node sharing the folder) writes its checkpoint, weights and embeddings
there itself; a trial on a node that does not see it (no shared file system) writes them into a
node-local scratch folder and sends each file through Ray's object store to the keeper, which writes
it atomically into the driver's results folder, and reads its epoch checkpoint back the same way
after a restart. So nothing needs a file system shared between nodes. The keeper also counts each
trial's attempts in this run: a restarted attempt continues from the trial's last epoch checkpoint.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.core.store import Loaded, TrialStore, atomic_write_binary
from harness.core.trial import Trial
from harness.scheduling import ray_compat


class ResultsKeeper:
    """Driver side (a Ray actor on the driver's node): the files of trials that run on other nodes."""

    def __init__(self, root: str):
        self.root = Path(root)
        self.attempts: dict[str, int] = {}

    def _path(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{relative} is outside the results folder {self.root}")
        return path

    def write(self, relative: str, data: bytes) -> None:
        atomic_write_binary(self._path(relative), lambda f: f.write(data))

    def read(self, relative: str) -> bytes | None:
        path = self._path(relative)
        return path.read_bytes() if path.is_file() else None

    def delete(self, relative: str) -> None:
        self._path(relative).unlink(missing_ok=True)

    def attempt(self, trial_id: str) -> int:
        """This run's attempt number of the trial (0 the first time it starts, 1 after one restart...)."""
        self.attempts[trial_id] = self.attempts.get(trial_id, -1) + 1
        return self.attempts[trial_id]


class RelayedStore(TrialStore):
    """A worker's :class:`TrialStore` for a results folder it cannot see: files are written into a
    node-local ``scratch`` folder (same layout), sent to the driver's :class:`ResultsKeeper`, then removed
    (:func:`store_for` removes the folder itself when the trial ends)."""

    def __init__(self, keeper: Any, scratch: str | Path):
        super().__init__(scratch)
        self.keeper = keeper

    def _send(self, path: Path) -> Path:
        ray_compat.call(self.keeper.write, str(path.relative_to(self.root)), path.read_bytes())
        path.unlink()
        return path

    def save_checkpoint(self, trial: Trial, data: bytes) -> Path:
        return self._send(super().save_checkpoint(trial, data))

    def load_checkpoint(self, trial: Trial, load: Callable[[Path], Loaded]) -> Loaded | None:
        path = self.checkpoint_path(trial)
        data = ray_compat.call(self.keeper.read, str(path.relative_to(self.root)))
        if data is None:
            return None
        atomic_write_binary(path, lambda f: f.write(data))
        try:
            return super().load_checkpoint(trial, load)
        finally:
            path.unlink(missing_ok=True)

    def delete_checkpoint(self, trial: Trial) -> None:
        ray_compat.call(self.keeper.delete, str(self.checkpoint_path(trial).relative_to(self.root)))

    def save_model(self, trial: Trial, data: bytes) -> Path:
        return self._send(super().save_model(trial, data))

    def save_embeddings(self, trial: Trial, **arrays: Any) -> Path:
        return self._send(super().save_embeddings(trial, **arrays))


def visibility_token(run_name: str) -> str:
    """The name of the file a driver leaves in its results folder while ``run_name`` runs."""
    return f".driver-{run_name}"


@contextlib.contextmanager
def store_for(results_dir: str, token: str, keeper: Any) -> Iterator[TrialStore]:
    """The store a trial uses on this node, for as long as the trial runs: the driver's results folder
    itself where the driver's token is visible, else a :class:`RelayedStore` to the driver's keeper, whose
    scratch folder is removed when the trial ends, however it ends (a worker's process cannot share the
    driver's store object, so it builds this one, once per trial)."""
    if (Path(results_dir) / token).is_file():
        yield TrialStore(results_dir)
        return
    with tempfile.TemporaryDirectory(prefix="harness-relay-") as scratch:
        yield RelayedStore(keeper, scratch)
