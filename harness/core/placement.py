"""A trial's placement: where and how it runs, and what it carries besides its result; never hashed.

Two runs of one :class:`~harness.core.spec.TrialSpec` under different placements are the same trial
(one id, one record that ``--resume`` finds), so nothing here may change the trained model or its
standard metrics. Each field, and why it is not identity:

* ``experiment``: the name of the folder the record joins (``runs/<experiment>/``, a search's name for
  search trials): where it is written.
* ``results_dir``: the results folder, as recorded with the trial; the command's
  :class:`~harness.core.store.TrialStore`, built once from the same flag, writes it (a Ray worker on a
  node without that folder relays its files, :mod:`harness.scheduling.trial_files`).
* ``device``, ``num_workers``: where it trains and how many processes load its images (on the CPU,
  resumed trials are exact whatever the workers; the device is recorded in the record's environment).
* ``save_model``: whether the trained weights and embeddings are kept beside the record.
* ``data_root``, ``pretrained``: where the dataset and the initial weights lie on this machine; the
  weights enter the identity through their sha256 (``TrialSpec.pretrained_sha256``), the dataset
  through its name and split.
* ``image_cache_bytes``: how many decoded images the trial keeps in memory (its share of a node's
  memory; None: the process default): a speed, not a result.
* ``extra_metrics``: optional registered metrics (:mod:`harness.core.metrics`) computed on the same
  embeddings besides the standard ones; they add numbers to the record and change none, so a trial
  run with and without one is one trial (it is the records of today's ids that hold them).
* ``method_family``: the family the method declares, recorded for the figures' colours (None in
  records written before it was recorded); a label of the method, which the spec names already.
* ``fail_at_epoch``: a test-only fault injection (``--fail-at-epoch``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core.names import check_name


@dataclass(frozen=True)
class Placement:
    """Where and how one trial runs (see the module's docstring for why each field is not its identity)."""

    experiment: str = "default"
    results_dir: str = "results"
    device: str = "auto"
    num_workers: int = 0
    save_model: bool = True
    data_root: str | None = None
    pretrained: str | None = None
    image_cache_bytes: int | None = None
    extra_metrics: list[str] = field(default_factory=list)
    method_family: str | None = None
    fail_at_epoch: int | None = None

    def __post_init__(self) -> None:
        check_name("experiment", self.experiment)  # it names the trial's folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
