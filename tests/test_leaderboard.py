"""Leaderboards from fixed trial records: statistics, byte-stable regeneration, recipes, corrupt records,
significance marks, published rows, failed trials, plots and the ``leaderboard`` subcommand."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.cli import main
from harness.reporting.leaderboard import write_leaderboards
from harness.reporting.tables import records_frame
from harness.reporting.plots import sensitivity_figure, sensitivity_plot, sweep_points
from harness.reporting.published import canonical_dataset, canonical_metric, load_published
from harness.core.placement import Placement
from harness.core.spec import TrialSpec
from harness.core.record import TrialRecord
from harness.core.recipe import Recipe
from harness.core.store import TrialStore
from harness.reporting.stats import paired_pvalue, summarize, welch_pvalue

RECIPE_A = {"name": "default", "epochs": 50, "batch_size": 112}
RECIPE_B = {"name": "default", "epochs": 5, "batch_size": 112}
HASH_A, HASH_B = Recipe(**RECIPE_A).hash, Recipe(**RECIPE_B).hash
ENV = {"git_commit": "abc1234", "versions": {"python": "3.11.0", "torch": "2.4.0"}, "device": "NVIDIA H100", "host": "node1"}

MS_R1 = [0.60, 0.61, 0.62]
BETTER_R1 = [0.70, 0.705, 0.72]     # clearly above ms on every seed
EQUAL_R1 = [0.61, 0.60, 0.62]       # the same values as ms, other seeds' order


def record(method: str, seed: int, r1: float | None, *, dataset: str = "cub", recipe: dict = RECIPE_A,
           status: str = "ok", eval_split: str = "test", experiment: str | None = None, role: str = "final",
           hparams: dict | None = None, finished_at: str = "2024-01-01T00:00:00+00:00") -> TrialRecord:
    """A trial record as run_trial/TrialRecord.failed build it (metrics derived from Recall@1); its
    experiment is the dataset's name unless given, as ``run`` names it."""
    spec = TrialSpec(method=method, dataset=dataset, seed=seed, recipe=Recipe(**recipe).to_dict(),
                     backbone="resnet50", embedding_dim=512, hparams=hparams or {}, eval_split=eval_split, role=role)
    metrics = {} if r1 is None else {"recall@1": r1, "recall@2": r1 + 0.1, "recall@4": r1 + 0.15,
                                     "recall@8": r1 + 0.2, "map@r": r1 / 3, "r_precision": r1 / 2, "nmi": 0.6}
    return TrialRecord(trial_id=spec.trial_id, status=status, error=None if status == "ok" else "boom",
                       spec=spec, placement=Placement(experiment=experiment or dataset), metrics=metrics, wall_time_s=1.0, n_trainable_params=10, environment=ENV,
                       finished_at=finished_at, hparams_changed=hparams or {})


def pairs(records: list[TrialRecord]) -> list[tuple[Path, TrialRecord]]:
    return [(Path(f"{r.trial_id}.json"), r) for r in records]


@pytest.fixture
def store(tmp_path: Path) -> TrialStore:
    """ms (baseline), jrd (better), triplet (equal), one failed ms trial and a val-split search trial, on cub."""
    store = TrialStore(tmp_path / "results")
    for seed, (a, b, c) in enumerate(zip(MS_R1, BETTER_R1, EQUAL_R1)):
        store.write_record(record("ms", seed, a))
        store.write_record(record("jrd", seed, b))
        store.write_record(record("triplet", seed, c))
    store.write_record(record("ms", 3, None, status="failed"))
    store.write_record(record("ms", 0, 0.99, eval_split="val"))
    return store


def long_csv(out: Path, dataset: str = "cub") -> pd.DataFrame:
    return pd.read_csv(out / f"{dataset}.long.csv", keep_default_na=True)


def row(long: pd.DataFrame, method: str, metric: str = "recall@1") -> pd.Series:
    rows = long[(long["method"] == method) & (long["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_summary_matches_scipy() -> None:
    x = [0.61, 0.64, 0.58, 0.66]
    s = summarize(x)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (s.n, s.mean, s.std) == (4, pytest.approx(np.mean(x)), pytest.approx(np.std(x, ddof=1)))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    one = summarize([0.5])
    assert one.mean == 0.5 and np.isnan(one.std) and np.isnan(one.ci_low)
    assert np.isnan(welch_pvalue([0.5], [0.1, 0.2]))
    p, matched = paired_pvalue({0: 0.5, 1: 0.6}, {1: 0.4, 2: 0.3})
    assert np.isnan(p) and matched == 1


def test_long_csv_statistics_match_scipy(store: TrialStore, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(store, out, formats=["csv"])
    r = row(long_csv(out), "ms")
    low, high = sps.t.interval(0.95, 2, loc=np.mean(MS_R1), scale=sps.sem(MS_R1))
    assert r["n_seeds"] == 3 and r["n_failed"] == 1
    assert r["mean"] == pytest.approx(np.mean(MS_R1), rel=1e-5)
    assert r["std"] == pytest.approx(np.std(MS_R1, ddof=1), rel=1e-5)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(low, rel=1e-5), pytest.approx(high, rel=1e-5))
    assert r["recipe.epochs"] == 50 and r["recipe.batch_size"] == 112
    ranks = {m: row(long_csv(out), m)["rank"] for m in ("jrd", "ms", "triplet")}
    assert ranks == {"jrd": 1, "ms": 2, "triplet": 2}  # ms and triplet tie on the mean


def test_regeneration_is_byte_identical(store: TrialStore, tmp_path: Path) -> None:
    first = write_leaderboards(store, tmp_path / "one", baseline="ms")
    second = write_leaderboards(store, tmp_path / "two", baseline="ms")
    again = write_leaderboards(store, tmp_path / "one", baseline="ms")
    names = {"cub.csv", "cub.long.csv", "cub.wide.csv", "cub.md", "cub.tex", "cub.column.tex", "cub.env.json",
             "cub.recall_at_k.png", "cub.recall_at_1.png", "cub.recall_at_k.pdf", "cub.recall_at_1.pdf"}
    assert set(first) == set(second) == set(again) == names
    for name in names:
        assert first[name].read_bytes() == second[name].read_bytes(), name
        assert again[name].read_bytes() == second[name].read_bytes(), name
    assert first["cub.recall_at_k.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first["cub.recall_at_1.pdf"].read_bytes()[:5] == b"%PDF-"


def test_environment_side_file_comes_from_the_records(store: TrialStore, tmp_path: Path) -> None:
    written = write_leaderboards(store, tmp_path / "boards", formats=[])
    env = json.loads(written["cub.env.json"].read_text())
    assert env["git_commits"] == {"abc1234": 10} and env["devices"] == {"NVIDIA H100": 10}
    assert env["versions"]["torch"] == {"2.4.0": 10} and env["n_trials"] == 10
    assert "abc1234" in (write_leaderboards(store, tmp_path / "b2", formats=["md"])["cub.md"]).read_text()


def test_different_recipes_and_hparams_never_average(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "results")
    for seed in range(2):
        store.write_record(record("ms", seed, 0.6 + seed / 100))
        store.write_record(record("ms", seed, 0.3 + seed / 100, recipe=RECIPE_B))
        store.write_record(record("ms", seed, 0.5, hparams={"alpha": 0.1}))
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv", "md"])
    summary = pd.read_csv(written["cub.csv"])
    assert len(summary) == 3 and set(summary["recipe_hash"]) == {HASH_A, HASH_B}
    assert sorted(summary["recall@1_mean"].round(6)) == [0.305, 0.5, 0.605]
    assert {"recall@1_std", "n_seeds", "n_failed"} <= set(summary.columns)
    wide = pd.read_csv(written["cub.wide.csv"])
    # the recipe that differs from the name's most used one says how, in words (issue 20: a 2-epoch run
    # showed only as another hash)
    assert sorted(wide["Recipe"]) == sorted([f"default:{HASH_A}", f"default:{HASH_A}", f"default:{HASH_B} (epochs=5)"])
    assert "ms (alpha=0.1)" in set(wide["Method"])
    assert set(pd.read_csv(written["cub.long.csv"])["recipe.epochs"]) == {5, 50}


def test_corrupt_and_partial_records_are_skipped_with_a_warning(store: TrialStore, tmp_path: Path, capsys) -> None:
    def write_raw(name: str, text: str) -> Path:
        path = store.runs / "exp" / name / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        return path

    truncated = write_raw("truncated", '{"trial_id": "truncated", "status": "o')
    partial = record("jrd", 9, 0.1).to_dict()
    del partial["metrics"]
    null_metric, text_metric = record("jrd", 8, 0.1).to_dict(), record("jrd", 7, 0.1).to_dict()
    null_metric["metrics"]["recall@1"], text_metric["metrics"]["map@r"] = None, "high"
    bad = [truncated, write_raw("partial", json.dumps(partial)), write_raw("null", json.dumps(null_metric)),
           write_raw("text", json.dumps(text_metric)), write_raw("list", "[1, 2]")]
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv"])
    err = capsys.readouterr().err
    for path in bad:
        assert str(path) in err
    jrd = row(long_csv(tmp_path / "boards"), "jrd")
    assert jrd["n_seeds"] == 3 and jrd["mean"] == pytest.approx(np.mean(BETTER_R1), rel=1e-5)
    assert "cub.csv" in written


def test_significance_marks_and_pvalues(store: TrialStore, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    written = write_leaderboards(store, out, baseline="ms", formats=["csv", "md", "tex"])
    long = long_csv(out)
    better, equal, base = row(long, "jrd"), row(long, "triplet"), row(long, "ms")
    assert better["p_welch"] == pytest.approx(sps.ttest_ind(BETTER_R1, MS_R1, equal_var=False).pvalue, rel=1e-5)
    assert better["p_paired"] == pytest.approx(sps.ttest_rel(BETTER_R1, MS_R1).pvalue, rel=1e-5)
    assert better["n_paired"] == 3 and better["p_welch"] < 0.05 and better["p_paired"] < 0.05
    assert equal["p_welch"] == pytest.approx(1.0) and equal["p_paired"] == pytest.approx(1.0)
    assert np.isnan(base["p_welch"]) and np.isnan(base["p_paired"])
    assert better["baseline"].startswith(f"ms [resnet50, 512-d, default:{HASH_A}, code not recorded]")
    wide = pd.read_csv(written["cub.wide.csv"]).set_index("Method")
    assert wide.loc["jrd", "R@1"] == "70.83 ± 1.04†‡"
    assert wide.loc["triplet", "R@1"] == "61.00 ± 1.00" and wide.loc["ms", "R@1"] == "61.00 ± 1.00"
    assert wide.loc["ms", "Seeds"] == "3 of 4 seeds; 1 failed"
    assert list(wide.columns) == ["Backbone", "Dim", "Recipe", "Seeds", "R@1", "R@2", "R@4", "R@8",
                                  "MAP@R", "R-Precision", "NMI"]
    md, tex = written["cub.md"].read_text(), written["cub.tex"].read_text()
    assert "**70.83 ± 1.04**†‡" in md and "† Welch t-test, ‡ paired t-test" in md
    assert r"\textbf{70.83{\scriptsize${\pm}$1.04}}$^\dagger$$^\ddagger$" in tex and r"$^\dagger$ Welch t-test" in tex


def test_paper_tables_keep_only_the_columns_that_vary(store: TrialStore, tmp_path: Path) -> None:
    """What every row shares (source, backbone, dimension, recipe, selection) moves into the caption; a
    method's hyperparameters move into a note where its name alone tells its row apart."""
    store.write_record(record("jrd", 0, 0.7, hparams={"alpha": 0.5}))
    written = write_leaderboards(store, tmp_path / "boards", baseline="ms", formats=["md", "tex"], published_csv=None)
    md, tex = written["cub.md"].read_text(), written["cub.tex"].read_text()
    assert "| Method | Seeds | R@1 | R@2 | R@4 | R@8 | MAP@R | R-Precision | NMI |" in md
    common = f"all rows measured; backbone resnet50; 512-d embeddings; recipe default:{HASH_A}; selection: last epoch."
    assert f"cub: test classes, mean ± std over seeds (%); {common}" in md
    assert "| jrd | 3 |" in md and "| jrd (alpha=0.5) | 1 |" in md and "| triplet | 3 |" in md
    assert r"\begin{tabular}{lrrrrrrrr}" in tex and r"\toprule" in tex and r"\begin{table*}" in tex
    assert r"mean $\pm$ std over seeds (\%); all rows measured; backbone resnet50;" in tex


def test_published_rows_in_md_and_tex_only(store: TrialStore, tmp_path: Path) -> None:
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv", "md", "tex"])
    md, tex = written["cub.md"].read_text(), written["cub.tex"].read_text()
    assert "| published [1] | DE_DSP | BN-Inception | — | — | as quoted | 53.6 | 65.5 | 76.9 | — |" in md
    assert "| published [1] | JRD | BN-Inception | — | — | best test epoch | 67.9 |" in md
    assert "| measured | jrd | resnet50 | default:" in md and "| 3 | last epoch | **70.83" in md
    assert "over seeds (%); 512-d embeddings." in md  # the one column every row shares
    assert "[1] Chu et al., Distance Metric Learning with Joint Representation Diversification" in md
    assert "Selection: measured rows score the model after the last epoch" in md and "best test epoch = " in md
    assert "published [1] & DE\\_DSP & BN-Inception & -- & -- & as quoted & 53.6 & 65.5 & 76.9 & --" in tex
    assert "Selection: measured rows score the model after the last epoch" in tex
    assert "IntraBatch" in md and "73.2" in md  # NMI from the intra-batch paper
    for name in ("cub.csv", "cub.long.csv", "cub.wide.csv"):
        text = written[name].read_text()
        assert "DE_DSP" not in text and "published" not in text
    assert set(pd.read_csv(written["cub.csv"])["method"]) == {"jrd", "ms", "triplet"}
    plain = write_leaderboards(store, tmp_path / "plain", formats=["md"], published_csv=None)
    assert "published" not in plain["cub.md"].read_text()


def test_failed_trials_only_count_in_n_failed(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5))
    store.write_record(record("ms", 1, None, status="failed"))
    store.write_record(record("triplet", 0, None, status="failed"))
    out = tmp_path / "boards"
    summary = pd.read_csv(write_leaderboards(store, out, formats=["csv"])["cub.csv"]).set_index("method")
    assert summary.loc["ms", ["n_seeds", "n_failed"]].tolist() == [1, 1]
    assert summary.loc["ms", "recall@1_mean"] == 0.5 and np.isnan(summary.loc["ms", "recall@1_std"])
    assert summary.loc["triplet", ["n_seeds", "n_failed"]].tolist() == [0, 1]
    assert np.isnan(summary.loc["triplet", "recall@1_mean"])


def test_val_split_excluded_and_each_experiment_its_own_leaderboard(tmp_path: Path) -> None:
    """The same trial in two experiments (two protocols on one dataset) is a row in each experiment's
    leaderboard, never pooled; a validation-split record enters neither; --experiment picks one."""
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5, experiment="old", finished_at="2024-01-01T00:00:00+00:00"))
    store.write_record(record("ms", 0, 0.7, experiment="new", finished_at="2024-02-01T00:00:00+00:00"))
    store.write_record(record("ms", 1, 0.9, eval_split="val", experiment="new"))
    frame = records_frame(store.records())
    assert len(frame) == 3 and sorted(frame["experiment"]) == ["new", "new", "old"]
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv", "md"])
    assert sorted(written) == ["new.csv", "new.env.json", "new.long.csv", "new.md", "new.wide.csv",
                               "old.csv", "old.env.json", "old.long.csv", "old.md", "old.wide.csv"]
    for name, r1 in (("new", 0.7), ("old", 0.5)):
        summary = pd.read_csv(written[f"{name}.csv"])
        assert summary[["n_seeds", "recall@1_mean"]].values.tolist() == [[1, r1]]
        assert written[f"{name}.md"].read_text().startswith(f"## {name} (cub)\n")
    only = write_leaderboards(store, tmp_path / "only", formats=["csv"], experiments=["old"])
    assert sorted(only) == ["old.csv", "old.env.json", "old.long.csv", "old.wide.csv"]


def test_an_experiment_over_several_datasets_gets_one_leaderboard_per_dataset(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5, experiment="both"))
    store.write_record(record("ms", 0, 0.6, dataset="cars", experiment="both"))
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv"])
    assert {name.split(".csv")[0] for name in written if name.endswith(".csv") and name.count(".") == 1} == \
        {"both@cars", "both@cub"}
    assert pd.read_csv(written["both@cars.csv"])["recall@1_mean"].tolist() == [0.6]


def test_board_names_never_collide_between_experiments(tmp_path: Path) -> None:
    """Issue 34.7: experiment ``ec`` on digits and omniglot28 beside experiment ``ec.digits`` on digits: each of
    the three boards is its own set of files, and the site one card and one page per board."""
    from harness.reporting.site import write_site
    store = TrialStore(tmp_path / "results")
    store.write_record(record("ms", 0, 0.5, dataset="digits", experiment="ec"))
    store.write_record(record("ms", 0, 0.6, dataset="omniglot28", experiment="ec"))
    store.write_record(record("triplet", 0, 0.7, dataset="digits", experiment="ec.digits"))
    written = write_leaderboards(store, tmp_path / "boards", formats=["csv", "md"])
    boards = {name.removesuffix(".env.json") for name in written if name.endswith(".env.json")}
    assert boards == {"ec@digits", "ec@omniglot28", "ec.digits"}
    assert pd.read_csv(written["ec@digits.csv"])[["method", "recall@1_mean"]].values.tolist() == [["ms", 0.5]]
    assert pd.read_csv(written["ec.digits.csv"])[["method", "recall@1_mean"]].values.tolist() == [["triplet", 0.7]]
    assert written["ec@digits.md"].read_text().startswith("## ec (digits)\n")
    assert written["ec.digits.md"].read_text().startswith("## ec.digits (digits)\n")
    write_site(store, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    links = sorted(re.findall(r'href="([^"]+/index\.html)"', index))
    assert links == ["ec.digits/index.html", "ec@digits/index.html", "ec@omniglot28/index.html"]
    assert "triplet" in (tmp_path / "site" / "ec.digits" / "index.html").read_text()
    assert "triplet" not in (tmp_path / "site" / "ec@digits" / "index.html").read_text()


def test_published_names_map_onto_the_harness() -> None:
    assert [canonical_dataset(n) for n in ("CUB-200-2011", "Cars196", "SOP", "In-Shop")] == ["cub", "cars", "sop", "inshop"]
    assert [canonical_metric(n) for n in ("R@1", "Recall@10", "recall_at_100", "NMI", "MAP@R", "R-Precision")] == \
        ["recall@1", "recall@10", "recall@100", "nmi", "map@r", "r_precision"]
    published = load_published()
    assert set(published["dataset"]) == {"cub", "cars", "sop", "inshop"}
    assert published["citation"].str.len().gt(0).all()


def test_sensitivity_plot_is_deterministic(tmp_path: Path) -> None:
    records = [record("jrd", seed, 0.6 + 0.01 * seed + 0.05 * np.log10(alpha), hparams={"alpha": alpha})
               for alpha in (0.001, 0.01, 0.1, 1.0) for seed in range(3)]
    one = sensitivity_plot(pairs(records), "jrd", "alpha", tmp_path / "one.png")
    two = sensitivity_plot(pairs(records), "jrd", "alpha", tmp_path / "two.png")
    assert one.read_bytes() == two.read_bytes() and one.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="sigma"):
        sensitivity_plot(pairs(records), "jrd", "sigma", tmp_path / "none.png")


def test_a_log_distributed_hyperparameter_gets_a_log_axis_zero_included() -> None:
    """alpha = 0, 0.01, 0.1, 1, 6.6 (an ablation with 0): linear axis unless the hyperparameter is declared
    log-uniform, then logarithmic above 0.01 and linear below it, so that 0 is drawn; all positive: a log axis."""
    values = (0.0, 0.01, 0.1, 1.0, 6.6)
    records = [record("jrd", seed, 0.6 + 0.01 * seed + 0.02 * alpha, hparams={"alpha": alpha})
               for alpha in values for seed in range(2)]
    assert sensitivity_figure(pairs(records), "jrd", "alpha").axes[0].get_xscale() == "linear"
    ax = sensitivity_figure(pairs(records), "jrd", "alpha", log=True).axes[0]
    assert ax.get_xscale() == "symlog" and ax.xaxis.get_transform().linthresh == 0.01
    assert list(ax.lines[0].get_xdata()) == list(values)  # every value drawn, 0 among them
    positive = [r for r in records if r.spec.hparams["alpha"] > 0]
    assert sensitivity_figure(pairs(positive), "jrd", "alpha", log=True).axes[0].get_xscale() == "log"


def test_sweep_points_include_the_default_value() -> None:
    """A sweep trial at the declared default has ``hparams_changed == {}``; its value comes from the
    resolved hyperparameters, so alpha = 2 (issue 25: dropped from the plot) is a point like the others."""
    records = []
    for alpha, r1 in ((0.5, 0.8887), (2.0, 0.8613), (8.0, 0.8339)):
        r = record("ms", 0, r1, hparams={"alpha": alpha, "beta": 50.0}, eval_split="val", role="sweep")
        r.hparams_changed = {} if alpha == 2.0 else {"alpha": alpha}
        records.append(r)
    points = sweep_points(pairs(records), "ms", "alpha", eval_split="val")
    assert points["x"].tolist() == [0.5, 2.0, 8.0]
    assert points["mean"].tolist() == pytest.approx([0.8887, 0.8613, 0.8339])


def test_leaderboard_command_end_to_end(store: TrialStore, tmp_path: Path, capsys) -> None:
    store.write_record(record("ms", 0, 0.4, dataset="cars"))
    bad = store.runs / "exp" / "broken" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    results = str(store.root)
    assert main(["leaderboard", "--results-dir", results]) == 0
    captured = capsys.readouterr()
    assert str(bad) in captured.err
    boards = store.root / "leaderboards"
    assert {p.name for p in boards.glob("cars.*")} >= {"cars.csv", "cars.md", "cars.tex", "cars.env.json"}
    assert main(["leaderboard", "--results-dir", results, "--dataset", "cub", "--baseline", "ms",
                 "--format", "csv,md,tex", "--out-dir", str(tmp_path / "cub_only")]) == 0
    assert sorted(p.name for p in (tmp_path / "cub_only").iterdir()) == \
        ["cub.column.tex", "cub.csv", "cub.env.json", "cub.long.csv", "cub.md", "cub.tex", "cub.wide.csv"]
    assert "†" in (tmp_path / "cub_only" / "cub.md").read_text()
    assert main(["leaderboard", "--results-dir", results, "--baseline", "nosuch"]) == 2
    assert main(["leaderboard", "--results-dir", results, "--format", "svg"]) == 2
    assert main(["leaderboard", "--results-dir", str(tmp_path / "empty")]) == 1


def test_plots_render_25_groups_sorted_with_families_and_baseline(tmp_path: Path) -> None:
    """25 methods (every family, four methods no family lists), a floor far below: both figures render
    as PNG and PDF; rows are sorted by Recall@1; the long CSV read back redraws them (same baseline, size)."""
    from harness.reporting.board_statistics import read_long_table
    from harness.plugins.method import method_families
    from harness.reporting.plots import _baseline_key, _ordered_groups, group_families, leaderboard_plots

    methods = sorted(method_families()) + ["custom_a", "custom_b", "custom_c", "custom_d"]
    assert len(methods) == 25
    store = TrialStore(tmp_path / "results")
    for i, method in enumerate(methods):
        for seed in range(3):
            r1 = 0.35 if method == "pixels" else 0.70 + 0.005 * i + 0.01 * seed
            store.write_record(record(method, seed, r1))
    written = write_leaderboards(store, tmp_path / "boards", baseline="amsoftmax", formats=["csv", "png", "pdf"],
                                 families=method_families())
    for name in ("cub.recall_at_1", "cub.recall_at_k"):
        assert written[f"{name}.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert written[f"{name}.pdf"].read_bytes()[:5] == b"%PDF-"
    long = read_long_table(written["cub.long.csv"])
    order = [key[1] for key in _ordered_groups(long, "recall@1")]
    assert order[0] == methods[-1] and order[-1] == "pixels" and len(order) == 25
    families = {key[1]: family for key, family in group_families(long).items()}
    assert families["custom_a"] == "other" and families["pixels"] == "floor" and families["jrd_c"] == "JRD variants"
    assert families["metrix_ms"] == "pair" and families["nir"] == "proxy"  # declared by a parent class
    assert _baseline_key(long, _ordered_groups(long, "recall@1"))[1] == "amsoftmax"
    redrawn = leaderboard_plots(long, "cub", tmp_path / "redrawn", formats=["png"])
    assert [p.name for p in redrawn] == ["cub.recall_at_k.png", "cub.recall_at_1.png"]
    assert [p.read_bytes()[16:24] for p in redrawn] == [written[p.name].read_bytes()[16:24] for p in redrawn]  # size


def test_a_group_beyond_the_zoomed_axis_is_an_arrow_on_its_own_side(tmp_path: Path) -> None:
    """A floor far below the rest is a left arrow at the left edge; a mean outside Tukey's fences that the
    zoomed axis still holds (the others' intervals reach it) is drawn as a dot, not as an arrow on the
    right (the bug seen on omniglot's R@8 panel)."""
    from matplotlib.figure import Figure

    from harness.reporting.plots import _dot_panel

    def panel(means: list[float]) -> tuple[tuple[float, float], list, list[float]]:
        keys = [("cub", m, "resnet50", 512, "r", "h", "{}") for m in ("a", "b", "c", "d", "e", "pixels")[:len(means)]]
        stats = pd.DataFrame({"mean": means, "ci_low": [m - 5 for m in means], "ci_high": [m + 1 for m in means]},
                             index=pd.MultiIndex.from_tuples(keys))
        ax = Figure().subplots()
        _dot_panel(ax, stats, keys, baseline=None)
        arrows = [(line.get_marker(), line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
                  if line.get_marker() in ("<", ">")]
        dots = sorted(float(line.get_xdata()[0]) for line in ax.lines
                      if line.get_marker() not in ("<", ">", "|", "None", ""))
        return ax.get_xlim(), arrows, dots

    tight = [81.5, 81.4, 81.3, 81.2, 78.0]   # 78 is outside Tukey's fences, inside the others' intervals
    (low, high), arrows, dots = panel(tight)
    assert arrows == [] and dots == sorted(tight) and low < 78.0 < high
    (low, high), arrows, dots = panel(tight + [35.0])
    assert arrows == [("<", low, 5)] and dots == sorted(tight)


def test_the_printed_table_says_how_recipes_of_one_name_differ():
    """Issue 20, item 2: the table a run prints names what differs in words, as the files do."""
    from harness.reporting.board_statistics import aggregate, long_table
    from harness.reporting.board_text import format_table
    from harness.reporting.tables import recipe_labels, records_frame

    frame = records_frame(TrialStore(Path(__file__).resolve().parents[1] / "results").records("omniglot28"))
    text = format_table(aggregate(frame), recipes=recipe_labels(long_table(frame)))
    pixels = next(line for line in text.splitlines() if line.lstrip().startswith("pixels"))
    assert "cpu:7c34188a (epochs=0)" in pixels and "(epochs" not in text.replace(pixels, "")


def test_the_critical_difference_diagram_prints_nothing(tmp_path, capsys):
    """autorank prints its choice of test and its rank table even with verbose=False; the report keeps them off
    the console (issue 33: no third-party output in normal use)."""
    from harness.reporting.benchmark_report import critical_difference

    records = [record(m, seed, r1 + 0.01 * seed) for seed in range(5)
               for m, r1 in (("ms", 0.60), ("jrd", 0.70), ("triplet", 0.65))]
    files, summary = critical_difference(records, "recall@1", tmp_path / "cd")
    assert [p.suffix for p in files] == [".png", ".pdf"] and "friedman p =" in summary.lower()
    assert capsys.readouterr().out == ""


def test_an_extension_at_its_baselines_tuned_values_is_tested_against_the_baseline_at_those_values(tmp_path):
    """A board holding the baseline twice (at its defaults and at tuned values, as the committed omniglot board
    does): jrd trained at AM-Softmax's tuned margin and scale is tested against AM-Softmax at those values, jrd
    and ms at the defaults against AM-Softmax at its defaults (with two baseline groups, no row was tested)."""
    store = TrialStore(tmp_path / "results")
    tuned = {"margin": 0.3, "scale": 8.0}
    for seed in range(3):
        store.write_record(record("amsoftmax", seed, 0.60 + 0.01 * seed))
        store.write_record(record("amsoftmax", seed, 0.70 + 0.01 * seed, hparams=tuned))
        store.write_record(record("jrd", seed, 0.61 + 0.01 * seed))
        store.write_record(record("jrd", seed, 0.71 + 0.01 * seed, hparams={"alpha": 0.2, **tuned}))
        store.write_record(record("ms", seed, 0.50 + 0.01 * seed))
    write_leaderboards(store, tmp_path / "out", baseline="amsoftmax", formats=["csv"])
    long = long_csv(tmp_path / "out")
    r1 = long[long["metric"] == "recall@1"].set_index(["method", "hparams"])["baseline"]
    at_defaults, at_tuned = r1[("amsoftmax", "{}")], r1[("amsoftmax", json.dumps(tuned))]
    assert pd.isna(at_defaults) and pd.isna(at_tuned)  # the baselines themselves
    assert r1[("jrd", "{}")].startswith("amsoftmax [") and "margin" not in r1[("jrd", "{}")]
    assert r1[("ms", "{}")] == r1[("jrd", "{}")]
    assert "margin=0.3" in r1[("jrd", json.dumps({"alpha": 0.2, **tuned}))]
