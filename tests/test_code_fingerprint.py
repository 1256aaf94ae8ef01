"""A trial's id covers its method's code (issue 20, item 3): an edited loss is a new trial, never a reused record."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from harness.experiment import ExperimentConfig
from harness.plugins.method import code_fingerprint, get_method_class

PLUGIN = '''
import torch
from harness.plugins.method import Method, register_method
from {package}.helpers import SCALE


@register_method("edited_loss")
class EditedLoss(Method):
    def loss(self, outputs, labels):
        return SCALE * outputs["embedding"].pow(2).mean()
'''


def test_editing_a_methods_code_or_a_module_it_imports_changes_its_trial_ids(tmp_path, monkeypatch):
    package = tmp_path / "fingerprinted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 1.0\n")
    (package / "loss.py").write_text(PLUGIN.format(package="fingerprinted"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("fingerprinted.loss")
    try:
        cls = get_method_class("edited_loss")

        def trial_id() -> str:
            return ExperimentConfig(methods=["edited_loss"], dataset="digits").trials()[0].trial_id

        first, fingerprint = trial_id(), code_fingerprint(cls)
        assert trial_id() == first  # the same code, the same trial
        (package / "loss.py").write_text(PLUGIN.format(package="fingerprinted").replace("pow(2)", "abs()"))
        assert code_fingerprint(cls) != fingerprint and trial_id() != first
        edited = trial_id()
        (package / "helpers.py").write_text("SCALE = 2.0\n")  # a module the loss imports from its own package
        assert trial_id() not in (first, edited)
    finally:
        from harness.plugins.method import METHODS

        METHODS._entries.pop("edited_loss", None)
        for name in [m for m in sys.modules if m.startswith("fingerprinted")]:
            del sys.modules[name]


def test_records_written_before_the_fingerprint_keep_their_ids():
    """A record written before trial ids covered the method's code (the committed omniglot board's, at
    94a857f, kept in tests/data) keeps its id; so does every committed record, before it and after."""
    from harness.core.store import TrialStore

    old = TrialStore.read_record_file(Path(__file__).parent / "data" / "record-before-the-fingerprint.json")
    assert old.spec.code is None and old.spec.trial_id == old.trial_id == "amsoftmax-omniglot-test-s0-ffde07987f"
    results = Path(__file__).resolve().parents[1] / "results"
    for path, record in TrialStore(results).records():  # the id re-hashed is the one on disk
        assert record.spec.trial_id == record.trial_id, path