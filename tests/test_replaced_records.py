"""Issue 34 (8, 9): ``--overwrite`` removes what belonged to the record it replaces and says so; a record whose
metrics were edited by hand is flagged."""
from __future__ import annotations

from harness.cli import main

RUN = ["run", "--methods", "pixels", "--dataset", "digits", "--executor", "local", "--no-progress"]


def test_overwrite_removes_the_replaced_records_weights_and_embeddings(tmp_path, capsys):
    argv = [*RUN, "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    (trial,) = (tmp_path / "runs" / "digits").iterdir()
    assert {"model.pt", "embeddings.npz", "record.json"} <= {p.name for p in trial.iterdir()}
    capsys.readouterr()
    assert main([*argv, "--overwrite", "--no-save-model"]) == 0
    out = capsys.readouterr().out
    assert f"replacing {trial / 'record.json'} (ok, finished " in out
    assert "; removed its model.pt, embeddings.npz" in out
    assert sorted(p.name for p in trial.iterdir()) == ["record.json"]
    assert main(["evaluate", str(trial)]) == 2  # nothing to evaluate from: never the replaced record's embeddings
    assert "embeddings.npz is missing" in capsys.readouterr().err
