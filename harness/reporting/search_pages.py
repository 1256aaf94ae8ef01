"""The static site's pages of hyperparameter searches and sweeps, from their files and records alone.

A search is a folder holding ``trials.csv`` (and, once a trial completed, ``best.json`` and the figures of
:mod:`harness.reporting.search_plots`): ``searches/<name>/`` for ``search``, ``benchmarks/<bench>/methods/
<method>/`` for a benchmark's (its trials are the search ``<bench>.<method>``). Its page shows the protocol
(method, dataset, objective, space, the training the trials shared; a benchmark's manifest), the best trial and
the hyperparameters chosen (searched ones marked), the figures, and the trials table numbered as Optuna,
``trials.csv`` and the console number them, each linked to its trial's page. A sweep is
``sweeps/<experiment>/`` (its sensitivity figures) with its records (role ``sweep``) in ``runs/<experiment>/``:
its page shows the figures, the protocol, and the mean metric of each swept value with the best marked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from harness.core.metrics import base_metric, format_metric, metric_label
from harness.core.record import TrialRecord
from harness.core.store import TrialStore
from harness.reporting import html

#: the files of a search's or a sweep's folder that its page links to (copied beside it)
LINKED = ("*.png", "*.pdf", "*.csv", "*.json", "*.md")


@dataclass(frozen=True)
class SearchFolder:
    """A search's outputs: its name (its trials' experiment), the folder of ``trials.csv``, ``best.json`` and
    the figures, and the benchmark it belongs to (None for a ``search``)."""

    name: str
    folder: Path
    benchmark: str | None = None


def find_searches(store: TrialStore) -> list[SearchFolder]:
    """Every search of ``store`` with a ``trials.csv``: the ``search`` command's and each benchmark's per method."""
    found = [SearchFolder(p.parent.name, p.parent) for p in sorted(store.root.glob("searches/*/trials.csv"))]
    for p in sorted(store.root.glob("benchmarks/*/methods/*/trials.csv")):
        bench = p.parent.parent.parent.name
        found.append(SearchFolder(f"{bench}.{p.parent.name}", p.parent, benchmark=bench))
    return found


def search_summary(search: SearchFolder) -> str:
    """One line for the index: the trials run and the best validation value (``12 trials; best val R@1 93.23 %``)."""
    trials = pd.read_csv(search.folder / "trials.csv")
    best_file = search.folder / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else {}
    value = (f"; best {escape(str(best.get('metric')))} {escape(format_metric(best.get('metric', ''), best.get('value')))} %"
             if best else "; no trial completed")
    part = f" of benchmark {escape(search.benchmark)}" if search.benchmark else ""
    return f"search{part}: {len(trials)} trials{value}"


def find_sweeps(store: TrialStore, known: Mapping[Path, TrialRecord]) -> list[str]:
    """The experiments with a sweep: a ``sweeps/<experiment>/`` folder or records of role ``sweep`` among
    ``known`` (every readable record of ``store``, read once by the caller)."""
    folders = {p.name for p in store.root.glob("sweeps/*") if p.is_dir()}
    return sorted(folders | {e.name for e in store.runs.glob("*") if e.is_dir() and _sweep_records(store, e.name, known)})


def _sweep_records(store: TrialStore, experiment: str, known: Mapping[Path, TrialRecord]) -> list[TrialRecord]:
    return [r for _, r in store.known_records(experiment, known) if r.spec.role == "sweep"]


def _value(value: Any) -> str:
    """A hyperparameter's value as the live table and the console print it (four significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def _order(values: list[Any]) -> tuple:
    """A sort key of hyperparameter values: numbers by value, before anything else by its text."""
    return tuple((0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))
                 for v in values)


def _seconds(text: Any) -> str:
    """``0 days 00:01:44.9`` (a ``trials.csv`` duration) → ``105 s``."""
    try:
        return f"{pd.to_timedelta(text).total_seconds():.0f} s"
    except (ValueError, TypeError):
        return "—"


def _copy_outputs(folder: Path, out: Path) -> list[Path]:
    """The figures and tables of ``folder`` copied into ``out`` (the page's own folder); their copies."""
    return [html.copy_file(p, out / p.name) for pattern in LINKED for p in sorted(folder.glob(pattern))]


#: the order of a search's figures on its page (others after them, by name)
FIGURE_ORDER = ("history", "importances", "contour", "scatter")


def _figures(copies: list[Path], site: Path) -> str:
    pngs = sorted((p for p in copies if p.suffix == ".png"),
                  key=lambda p: (FIGURE_ORDER.index(p.stem) if p.stem in FIGURE_ORDER else len(FIGURE_ORDER), p.name))
    return '<div class="figs">' + "".join(
        f'<img src="{escape(p.relative_to(site).as_posix())}" alt="{escape(p.stem)}">' for p in pngs) + "</div>"


def _protocol(first: TrialRecord | None, best: dict[str, Any], planned: int) -> dict[str, Any]:
    """What every trial of the search shared: method, data, objective, space and training."""
    protocol: dict[str, Any] = {}
    if best:
        protocol.update({"method": best.get("method"), "dataset": best.get("dataset"),
                         "objective": f"{best.get('metric')} (maximised, validation classes)",
                         "space": best.get("space", {})})
    protocol["trials"] = planned
    if first is not None:
        spec = first.spec
        protocol.update({"method": spec.method, "dataset": spec.dataset, "backbone": spec.backbone,
                         "embedding dim": spec.embedding_dim, "recipe": spec.recipe.get("name"),
                         "epochs": spec.recipe.get("epochs"), "seed": spec.seed,
                         "validation classes": "carved from the training classes"
                                               + (f", {spec.folds}-fold" if spec.folds else "")})
    return protocol


#: ``trial_link(record, subfolder, breadcrumb)`` writes a trial's own page into ``subfolder`` beside the page
#: that links to it, under ``breadcrumb`` (HTML, relative to the trial's page), and returns its relative path
TrialLink = Callable[[TrialRecord, str, str], str]


def search_page(store: TrialStore, search: SearchFolder, site: Path, trial_link: TrialLink) -> str:
    """The page of ``search`` (``site/searches/<name>.html``; its figures and its trials' pages in
    ``site/searches/<name>/``)."""
    out = site / "searches" / search.name
    copies = _copy_outputs(search.folder, out)
    trials = pd.read_csv(search.folder / "trials.csv")
    best_file = search.folder / "best.json"
    best = json.loads(best_file.read_text()) if best_file.is_file() else {}
    metric = best.get("metric") or next((c for c in trials.columns if base_metric(c)[0] == "val"), "")
    records = {r.trial_id: r for r in store.search_records(search.name)} if store.search_dir(search.name).is_dir() else {}
    crumb = f'<a href="../../index.html">results</a> / search <a href="../{escape(search.name)}.html">{escape(search.name)}</a>'
    links = {tid: trial_link(r, search.name, crumb) for tid, r in records.items()}
    params = [c for c in trials.columns if c not in {"number", "state", metric, "trial_id", "duration", "error",
                                                     "resumed", "fold_values"}]
    table = pd.DataFrame({
        "#": trials["number"].astype(int),
        "State": trials["state"],
        metric_label(base_metric(metric)[1]) + " (val, %)" if metric else "Objective":
            [format_metric(metric, v) if pd.notna(v) else "—" for v in trials.get(metric, [None] * len(trials))],
        **{p: [_value(v) if pd.notna(v) else "—" for v in trials[p]] for p in params},
        "Resumed": [f"{int(v)}×" if pd.notna(v) and v else "" for v in trials.get("resumed", [None] * len(trials))],
        "Time": [_seconds(v) for v in trials.get("duration", [None] * len(trials))],
        "Trial": trials.get("trial_id", [""] * len(trials)),
        "href": [links.get(t, "") for t in trials.get("trial_id", [""] * len(trials))],
        "Note": [str(v) if pd.notna(v) else "" for v in trials.get("error", [None] * len(trials))],
    })
    counts = trials["state"].value_counts()
    body = [f'<p class="muted"><a href="../index.html">results</a> / search</p>',
            f"<h1>Search {escape(search.name)}</h1>",
            f'<p class="muted">{len(trials)} trials: '
            + ", ".join(f"{n} {escape(str(s).lower())}" for s, n in counts.items())
            + (f'; part of the benchmark <a href="../{escape(search.benchmark)}/index.html">'
               f"{escape(search.benchmark)}</a>" if search.benchmark else "")
            + ". Trials are numbered as Optuna, <code>trials.csv</code> and the console number them.</p>"]
    first = next(iter(records.values()), None)
    body += ["<h2>Protocol</h2>", html.definitions(_protocol(first, best, len(trials)))]
    if best:
        searched = best.get("params", {})
        chosen = pd.DataFrame([{"Hyperparameter": k, "Value": _value(v),
                                "Searched over": best.get("space", {}).get(k, "fixed")}
                               for k, v in sorted(best.get("hparams", {}).items())])
        best_link = links.get(best.get("trial_id"), "")
        trial = (f'<a href="{escape(best_link)}">trial {best.get("trial_number")}</a>' if best_link
                 else f"trial {best.get('trial_number')}")
        body += ["<h2>Best trial and the values chosen</h2>",
                 f"<p>{trial}: {escape(str(best.get('metric')))} "
                 f"{escape(format_metric(best.get('metric', ''), best.get('value')))} % with "
                 f"{escape(' '.join(f'{k}={_value(v)}' for k, v in searched.items()))}, from "
                 f"{best.get('n_complete')} completed of {best.get('n_trials')} trials.</p>",
                 html.table(chosen, table_id="chosen")]
    else:
        body.append('<p class="muted">No trial completed: no best configuration.</p>')
    body += ["<h2>Figures</h2>", _figures(copies, site / "searches")
             if any(p.suffix == ".png" for p in copies) else '<p class="muted">No figures (no trial completed).</p>',
             "<h2>Trials</h2>", html.table(table, links={list(table.columns).index("Trial"): "href"}, table_id="trials"),
             "<h2>Files</h2>", html.file_links(copies, site / "searches")]
    return html.page(f"search {search.name}", "".join(body), "../index.html")


def sweep_page(store: TrialStore, experiment: str, site: Path, trial_link: TrialLink,
               known: Mapping[Path, TrialRecord]) -> str:
    """The page of the sweeps of ``experiment`` (``site/sweeps/<experiment>.html``, from its records among
    ``known``): the figures, the protocol, and per method the mean validation (or test) R@1 of each swept value over its seeds, the best marked."""
    out = site / "sweeps" / experiment
    folder = store.sweep_dir(experiment)
    copies = _copy_outputs(folder, out) if folder.is_dir() else []
    records = _sweep_records(store, experiment, known)
    crumb = f'<a href="../../index.html">results</a> / sweep <a href="../{escape(experiment)}.html">{escape(experiment)}</a>'
    body = [f'<p class="muted"><a href="../index.html">results</a> / sweep</p>',
            f"<h1>Sweeps of {escape(experiment)}</h1>",
            '<p class="muted">One trial per (value, seed); a sweep on the validation classes chooses nothing on '
            "test, and a test-split sweep (marked) is a sensitivity figure to report. No sweep trial enters a "
            "leaderboard.</p>", "<h2>Figures</h2>", _figures(copies, site / "sweeps")]
    for method in sorted({r.spec.method for r in records}):
        mine = [r for r in records if r.spec.method == method]
        keys = sorted({k for r in mine for k in r.spec.hparams})
        swept = [k for k in keys if len({_value(r.spec.hparams.get(k)) for r in mine}) > 1]
        first = mine[0].spec
        body += [f"<h2>{escape(method)}: {escape(', '.join(swept) or 'no hyperparameter varies')}</h2>",
                 html.definitions({"dataset": first.dataset, "split": ", ".join(sorted({r.spec.eval_split for r in mine})),
                                   "recipe": first.recipe.get("name"), "epochs": first.recipe.get("epochs"),
                                   "seeds": ", ".join(str(s) for s in sorted({r.spec.seed for r in mine})),
                                   "fixed": {k: _value(first.hparams.get(k)) for k in keys if k not in swept}})]
        groups: dict[str, list[TrialRecord]] = {}
        for r in mine:
            groups.setdefault(json.dumps([r.spec.hparams.get(k) for k in swept], default=str), []).append(r)
        rows = []
        for group in sorted(groups.values(), key=lambda g: _order([g[0].spec.hparams.get(k) for k in swept])):
            scores = pd.Series([r.metrics.get("recall@1") for r in group if r.ok], dtype=float)
            rows.append({**{k: _value(group[0].spec.hparams.get(k)) for k in swept}, "Split": group[0].spec.eval_split,
                         "Seeds": len(scores), "Failed": len(group) - len(scores),
                         "R@1 (%)": (f"{100 * scores.mean():.2f}" + (f" ± {100 * scores.std():.2f}"
                                                                       if len(scores) > 1 else ""))
                         if len(scores) else "—", "mean": scores.mean() if len(scores) else float("-inf")})
        frame = pd.DataFrame(rows)
        best = int(frame["mean"].idxmax())
        frame.insert(len(swept), "Best", ["best" if i == best else "" for i in range(len(frame))])
        body.append(html.table(frame.drop(columns=["mean"]), table_id=f"sweep-{method}"))
        body.append('<p class="muted">Trials: ' + ", ".join(
            f'<a href="{escape(trial_link(r, experiment, crumb))}">{escape(r.trial_id)}</a>' for r in mine) + "</p>")
    body += ["<h2>Files</h2>", html.file_links(copies, site / "sweeps")]
    return html.page(f"sweeps of {experiment}", "".join(body), "../index.html")
