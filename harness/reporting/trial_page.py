"""A trial's page of the static site: what it ran, its status and metrics, its per-epoch curves (inline SVG),
its resolved configuration and the environment it ran in, as tables."""
from __future__ import annotations

import json
from html import escape

from harness.core.metrics import metric_label, metric_sort_key, metric_spec
from harness.core.record import TrialRecord
from harness.reporting import html


def points(value: object, metric: str) -> str:
    """A metric value as the leaderboards print it: percent (points) for a percent metric, "—" for none."""
    if not isinstance(value, (int, float)) or value != value:
        return "—"
    return f"{100 * value:.2f}" if metric_spec(metric).percent else f"{value:.4f}"


def trial_page(record: TrialRecord, crumbs: str, home: str) -> str:
    """The page of ``record``, under the breadcrumb HTML ``crumbs``; ``home`` is the site's index."""
    spec = record.spec
    sections = {k: v for k, v in record.to_dict().items() if k in ("spec", "placement", "actual_placement")}
    metrics = {metric_label(m): points(v, m) for m, v in sorted(record.metrics.items(),
                                                                key=lambda kv: metric_sort_key(kv[0]))}
    split = "validation classes" if spec.eval_split == "val" else f"{spec.eval_split} classes"
    wall = f"{record.wall_time_s:.0f} s" if isinstance(record.wall_time_s, (int, float)) else "time not recorded"
    body = (f'<p class="muted">{crumbs} / trial</p>'
            f"<h1>{escape(record.trial_id)}</h1>"
            f'<p class="muted">{escape(spec.method)} on {escape(spec.dataset)}, seed {spec.seed}, '
            f"status {escape(record.status)}, {wall}</p>"
            + (f"<pre>{escape(record.error)}</pre>" if record.error else "")
            + f"<h2>Metrics ({escape(split)}, %)</h2>" + html.definitions(metrics)
            + "<h2>Per-epoch curves</h2>" + html.curves_svg(record.history)
            + "<h2>Resolved configuration</h2>"
            + '<p class="muted">spec: what the trial computes, hashed into its id; placement: where it was planned '
              "to run, and actual_placement: where it ran (neither hashed)</p>"
            + f"<pre>{escape(json.dumps(sections, indent=2, sort_keys=True, default=str))}</pre>"
            + "<h2>Environment</h2>" + html.definitions(record.environment))
    return html.page(record.trial_id, body, home)
