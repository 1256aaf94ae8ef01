"""Issue 30 items 1, 3, 5 and issue 34 item 5: every number on a board means one thing.

The evaluation has a version per metric family, boards never pool values scored by different versions
(split columns, re-scoring from kept embeddings), each (configuration, seed) counts once per row (the
code fingerprint is part of a row; a newer record supersedes, saying so), diverged seeds are flagged
and never averaged in, and ``reproduce`` names an evaluation change before the hardware.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.reporting.leaderboard import write_leaderboards
from harness.reporting.tables import CODE_NOT_RECORDED, records_frame
from test_leaderboard import pairs, record

REPO = Path(__file__).resolve().parents[1]
LEGACY_KMEANS = "faiss-cpu 1.15.1 Kmeans, batched k-means++ seeding (1024 rounds), 20 iterations, best of 1"
NEWER_KMEANS = ("faiss-cpu 1.15.1 Kmeans, batched greedy k-means++ seeding on the CPU (1024 rounds, 3 candidates), "
                "at most 20 iterations, best of 1")
KNN = "faiss candidates, near-ties re-scored exactly (float64)"


def with_code(rec: TrialRecord, code: str | None, **changes) -> TrialRecord:
    """``rec`` as the same configuration run by method code ``code`` (its id follows)."""
    spec = replace(rec.spec, code=code)
    return replace(rec, spec=spec, trial_id=spec.trial_id, **changes)


# ---- the evaluation's version ----------------------------------------------------------------------------

def _module(path: Path, text: str):
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fingerprint_follows_the_code_and_settings_not_the_docstrings(tmp_path):
    from harness.engine.evaluate import code_fingerprint

    plain = _module(tmp_path / "a.py", '"""One."""\ndef f(x):\n    """Doubles."""\n    return 2 * x  # twice\n')
    reworded = _module(tmp_path / "b.py", '"""Two, longer."""\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    changed = _module(tmp_path / "c.py", '"""One."""\ndef f(x):\n    """Doubles."""\n    return 3 * x\n')
    reworded.__name__ = changed.__name__ = plain.__name__
    assert code_fingerprint([plain], {"n": 1}) == code_fingerprint([reworded], {"n": 1})
    assert code_fingerprint([plain], {"n": 1}) != code_fingerprint([changed], {"n": 1})
    assert code_fingerprint([plain], {"n": 1}) != code_fingerprint([plain], {"n": 2})


def test_a_kmeans_change_is_a_new_clustering_evaluation_and_leaves_retrieval_alone(monkeypatch):
    from harness.engine import evaluate, kmeans

    before = evaluate.evaluation_fingerprints()
    monkeypatch.setattr(kmeans, "SEEDING_CANDIDATES", 2)
    after = evaluate.evaluation_fingerprints()
    assert after["retrieval"] == before["retrieval"] == "exact-knn-1" and after["clustering"] != before["clustering"]
    monkeypatch.setattr(evaluate, "NMI_RESTARTS", 1)
    assert evaluate.evaluation_fingerprints()["clustering"] not in (before["clustering"], after["clustering"])
    described = evaluate.describe_evaluation("cpu")
    assert described["clustering"] == evaluate.evaluation_fingerprints()["clustering"]
    assert "best of 1" in described["kmeans"] and described["knn"].endswith("re-scored exactly (float64)")


#: the retrieval definitions' values on the input of the test below, under each RETRIEVAL_VERSION: a change
#: of a definition (or of the neighbour order) either bumps the version and adds its values here, or is a bug
PINNED_RETRIEVAL = {"exact-knn-1": {
    "cosine": {"recall@1": 21 / 30, "recall@2": 25 / 30, "recall@4": 26 / 30, "recall@64": 29 / 30,
               "map@r": 0.546436781609, "r_precision": 0.608620689655},
    "euclidean": {"recall@1": 22 / 30, "recall@2": 26 / 30, "recall@4": 27 / 30, "recall@64": 29 / 30,
                  "map@r": 0.469396551724, "r_precision": 0.553448275862}}}


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_retrieval_definitions_are_pinned_to_their_version(metric):
    """30 embeddings in 6 classes, one class of a single item (R = 0: never a hit, left out of MAP@R and
    R-Precision), an exact duplicate across classes (a tie ordered by index), and a K beyond the 29
    candidates (every candidate retrieved)."""
    from harness.core.evaluation import RETRIEVAL_VERSION
    from harness.engine.evaluate import evaluate_embeddings

    rng = np.random.default_rng(30)
    labels = np.array([0] * 6 + [1] * 6 + [2] * 6 + [3] * 6 + [4] * 5 + [5])
    x = (rng.normal(size=(6, 8))[labels] + 0.9 * rng.normal(size=(30, 8))).astype(np.float32)
    x[7] = x[3]
    scores = evaluate_embeddings(x, labels, recall_ks=(1, 2, 4, 64), metric=metric, include_nmi=False)
    assert scores == pytest.approx(PINNED_RETRIEVAL[RETRIEVAL_VERSION][metric], abs=1e-11)


def test_a_board_splits_the_nmi_column_by_evaluation_and_says_why(tmp_path):
    """The committed omniglot board's case: most rows scored NMI with the old k-means seeding, two methods
    with the newer one. Recall@K (one retrieval evaluation) stays one column; NMI becomes one column per
    k-means, each ranked on its own, and the notes name both in words."""
    store = TrialStore(tmp_path / "results")
    for seed in range(3):
        store.write_record(replace(record("ms", seed, 0.60 + seed / 100), evaluation={"knn": KNN, "kmeans": LEGACY_KMEANS}))
        store.write_record(replace(record("nir", seed, 0.70), evaluation={"knn": KNN, "kmeans": NEWER_KMEANS}))
    out = tmp_path / "boards"
    written = write_leaderboards(store, out, formats=["csv", "md"])
    long = pd.read_csv(written["cub.long.csv"])
    nmi = sorted(m for m in long["metric"].unique() if m.startswith("nmi"))
    assert len(nmi) == 2 and all(m.startswith("nmi[unversioned-") for m in nmi), set(long["metric"])
    assert "recall@1" in set(long["metric"]) and "nmi" not in set(long["metric"])
    for metric in nmi:  # each method has NMI in exactly one column, ranked 1 there
        rows = long[(long["metric"] == metric) & long["mean"].notna()]
        assert len(rows) == 1 and rows["rank"].tolist() == [1]
    markdown = written["cub.md"].read_text()
    assert "NMI [unversioned-" in markdown and LEGACY_KMEANS in markdown and NEWER_KMEANS in markdown
    assert "not comparable" in markdown


# ---- each (configuration, seed) once per row ---------------------------------------------------------------

def test_a_plugin_edited_between_runs_gives_two_rows_each_seed_once(tmp_path, capsys):
    """Issue 34 item 5: seed 0 under code A, then the loss edited and seeds 1 and 0 under code B."""
    store = TrialStore(tmp_path / "results")
    store.write_record(with_code(record("my_loss", 0, 0.942), "code-a"))
    store.write_record(with_code(record("my_loss", 1, 0.950, finished_at="2024-01-02T00:00:00+00:00"), "code-b"))
    store.write_record(with_code(record("my_loss", 0, 0.982, finished_at="2024-01-02T00:00:00+00:00"), "code-b"))
    out = tmp_path / "boards"
    board = pd.read_csv(write_leaderboards(store, out, formats=["csv"])["cub.csv"]).set_index("code")
    assert board.loc["code-a", "n_seeds"] == 1 and board.loc["code-a", "recall@1_mean"] == pytest.approx(0.942)
    assert board.loc["code-b", "n_seeds"] == 2 and board.loc["code-b", "recall@1_mean"] == pytest.approx(0.966)


def test_a_newer_record_of_one_configuration_and_seed_supersedes_the_older_and_says_so(tmp_path, capsys):
    old = record("ms", 0, 0.50)
    new = record("ms", 0, 0.60, finished_at="2024-02-01T00:00:00+00:00")
    spec = replace(new.spec, pretrained_sha256="ab" * 32)  # the same row, resolved otherwise: another id
    new = replace(new, spec=spec, trial_id=spec.trial_id)
    assert new.trial_id != old.trial_id
    with pytest.warns(UserWarning, match="supersedes"):
        frame = records_frame(pairs([old, new]))
    assert frame["recall@1"].tolist() == [0.60]


def test_rerunning_pixels_into_a_copy_of_the_committed_board_counts_each_seed_once(tmp_path, capsys):
    """Issue 30 case 2, run as written: a copy of the committed omniglot28 records whose pixels records
    predate code fingerprints (as the committed ones did until 2026-12-07: their ``code`` removed here); a
    re-run of pixels seed 0 is its own row (code recorded) and the old row keeps its three seeds."""
    scratch = tmp_path / "scratch"
    shutil.copytree(REPO / "results" / "runs" / "omniglot28", scratch / "runs" / "omniglot28")
    store = TrialStore(scratch)
    for path, rec in list(store.records("omniglot28")):
        if rec.spec.method == "pixels":
            spec = replace(rec.spec, code=None)
            store.write_record(replace(rec, spec=spec, trial_id=spec.trial_id))
            shutil.rmtree(path.parent)
    assert main(["run", "--methods", "pixels", "--seeds", "0", "--results-dir", str(scratch),
                 "--executor", "local", "--no-progress"]) == 0
    board = pd.read_csv(scratch / "leaderboards" / "omniglot28.csv")
    pixels = board[board["method"] == "pixels"].set_index("code")
    assert pixels.loc[CODE_NOT_RECORDED, "n_seeds"] == 3
    (fingerprint,) = [code for code in pixels.index if code != CODE_NOT_RECORDED]
    assert pixels.loc[fingerprint, "n_seeds"] == 1
    frame = records_frame(TrialStore(scratch).records())
    counted = frame.groupby(["method", "code", "seed"]).size()
    assert counted.max() == 1


# ---- diverged seeds ----------------------------------------------------------------------------------------

def test_seeds_below_half_the_pixel_floor_are_diverged_and_never_averaged_in(tmp_path):
    """The committed omniglot board's jrd_intra cases: every seed collapsed (4.51), and one seed of three
    (82.00, 79.76, 6.88); a seed below the floor but above half of it (an undertrained 30.00) still counts."""
    store = TrialStore(tmp_path / "results")
    for seed in range(3):
        pixels = record("pixels", seed, 0.3553)
        store.write_record(replace(pixels, placement=replace(pixels.placement, method_family="floor")))
        store.write_record(record("jrd_intra", seed, [0.8200, 0.7976, 0.0688][seed]))
        store.write_record(record("collapsed", seed, [0.0451, 0.02, 0.07][seed]))
        store.write_record(record("undertrained", seed, [0.30, 0.25, 0.20][seed]))
    frame = records_frame(store.records())
    diverged = frame[frame["status"] == "diverged"]
    assert sorted(zip(diverged["method"], diverged["seed"])) == [("collapsed", 0), ("collapsed", 1),
                                                                 ("collapsed", 2), ("jrd_intra", 2)]
    assert diverged["status_reason"].str.contains("below half the pixel floor 35.53").all()
    out = tmp_path / "boards"
    written = write_leaderboards(store, out, formats=["csv", "md"])
    board = pd.read_csv(written["cub.csv"]).set_index("method")
    assert board.loc["jrd_intra", ["n_seeds", "n_diverged", "n_failed"]].tolist() == [2, 1, 0]
    assert board.loc["jrd_intra", "recall@1_mean"] == pytest.approx((0.8200 + 0.7976) / 2)
    assert board.loc["collapsed", ["n_seeds", "n_diverged"]].tolist() == [0, 3]
    assert board.loc["undertrained", ["n_seeds", "n_diverged"]].tolist() == [3, 0]  # 20.00 > 35.53 / 2
    markdown = written["cub.md"].read_text()
    assert "2 of 3 seeds; 1 diverged" in markdown and "0 of 3 seeds; 3 diverged" in markdown


def test_a_non_finite_loss_is_recorded_as_diverged(tmp_path):
    code = main(["run", "--methods", "amsoftmax", "--hparam", "amsoftmax.scale=1e300", "--dataset", "digits",
                 "--epochs", "1", "--seeds", "0", "--results-dir", str(tmp_path), "--executor", "local",
                 "--no-progress"])
    assert code == 1
    (path,) = (tmp_path / "runs" / "digits").glob("*/record.json")
    saved = json.loads(path.read_text())
    assert saved["status"] == "diverged" and "non-finite loss" in saved["error"]
    board = pd.read_csv(tmp_path / "leaderboards" / "digits.csv")
    assert board[["n_seeds", "n_diverged", "n_failed"]].values.tolist() == [[0, 1, 0]]
    assert main(["run", "--methods", "pixels", "--dataset", "digits", "--seeds", "0", "--results-dir", str(tmp_path),
                 "--executor", "local", "--no-progress"]) == 0  # the diverged record's empty evaluation splits nothing
    board = pd.read_csv(tmp_path / "leaderboards" / "digits.csv").set_index("method")
    assert "recall@1_mean" in board.columns and board.loc["amsoftmax", "n_diverged"] == 1


# ---- re-scoring and reproduce ------------------------------------------------------------------------------

def _trial_with_embeddings(tmp_path: Path, kept: bool = True) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 8)
    query = (rng.normal(size=(12, 16))[labels] + 0.4 * rng.normal(size=(96, 16))).astype(np.float32)
    store = TrialStore(tmp_path / "results")
    legacy = replace(record("ms", 0 if kept else 1, 0.5), evaluation={"knn": KNN, "kmeans": LEGACY_KMEANS})
    path = store.write_record(legacy).parent
    if kept:
        np.savez(path / "embeddings.npz", query=query, query_labels=labels)
    return path


def test_rescore_rewrites_a_record_under_todays_evaluation_from_its_embeddings(tmp_path, capsys):
    from harness.engine.evaluate import evaluate_saved, evaluation_fingerprints

    kept, lost = _trial_with_embeddings(tmp_path), _trial_with_embeddings(tmp_path, kept=False)
    assert main(["evaluate", "--rescore", str(kept.parent)]) == 1  # one trial kept no embeddings
    out, err = capsys.readouterr()
    assert "re-scored (clustering)" in out  # its kNN was the exact one: only its k-means is not today's
    assert lost.name in err and "re-run it" in err
    again = TrialStore.read_record_file(kept / "record.json")
    with np.load(kept / "embeddings.npz") as arrays:
        expected = evaluate_saved(dict(arrays), recall_ks=(1, 2, 4, 8))
    assert again.metrics == expected
    assert {k: again.evaluation[k] for k in ("retrieval", "clustering")} == evaluation_fingerprints()
    assert again.evaluation["rescored_from"].startswith("retrieval=exact-knn-1, clustering=unversioned-")
    assert main(["evaluate", "--rescore", str(kept)]) == 0
    assert "already scored by today's evaluation" in capsys.readouterr().out


def test_reproduce_names_an_evaluation_change_before_the_hardware():
    from harness.reporting.drift import environment_differences

    recorded = replace(record("ms", 0, 0.5), evaluation={"knn": KNN, "kmeans": LEGACY_KMEANS})
    reproduced = replace(recorded, evaluation={"knn": KNN, "kmeans": NEWER_KMEANS},
                         environment={**recorded.environment, "device": "cpu (x86_64, 1 threads)"})
    differences = environment_differences(recorded, reproduced)
    assert differences[0].startswith("evaluation (clustering: NMI) unversioned-")
    assert LEGACY_KMEANS in differences[0] and NEWER_KMEANS in differences[0]
    assert not any(d.startswith("evaluation (retrieval") for d in differences)
    assert differences[1].startswith("device: ")
