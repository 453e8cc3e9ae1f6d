"""GitHub-flavoured Markdown for a job summary or a PR comment: verdict first, failures first, tables with deltas."""
from __future__ import annotations

from typing import Any

import numpy as np

from gate.report.console import finding_label, model_facts
from gate.report.escape import Markup, md_code, md_text, mermaid_text
from gate.report.model import STATUS_ORDER, Chart, FlipExamples, Report, Table, comparison_items, metric_rows

#: Flipped examples the Markdown shows per kind, and characters of each text (the JSON report carries more).
MARKDOWN_EXAMPLES = 5
MARKDOWN_TEXT_CHARS = 200

EMOJI = {"pass": ":white_check_mark:", "warn": ":warning:", "fail": ":x:", "skip": ":fast_forward:"}
#: GitHub refuses a comment or a job summary over 65,536 characters; stay clear of it with room for the Action's own
#: lines around the report.
MAX_CHARS = 60_000
#: Rows a reviewer reads in a table; the rest is in the JSON and HTML reports.
MAX_ROWS = 25



# What the rules of each task are decided by, for the footer line.
_STATISTICS = {
    "classification": "Tango score tests, exact binomial tests, paired bootstrap for F1",
    "multi_label": "Tango score tests and exact binomial tests per label, paired bootstrap over samples for the "
                   "averages",
    "regression": "paired bootstrap of the error metrics (BCa and bootstrap-t both), exact binomial test for the worse-sample rate",
}
_FAMILY = {"classification": "classes", "multi_label": "labels", "regression": "targets"}

def _cell(x: Any) -> str:
    if isinstance(x, float):
        text = f"{x:.4g}"
    else:
        text = "" if x is None else x
    return md_text(text)   # class names, id2label, paths: inert in the table (pipes, HTML, links, @mentions)


def md_table(headers: tuple[str, ...] | list[str], rows: Any) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def mermaid_chart(chart: Chart) -> list[str]:
    labels = ", ".join('"' + mermaid_text(label) + '"' for label in chart.labels)
    values = ", ".join(f"{v:.6g}" for v in chart.values)
    top = max([v for v in chart.values if v == v] + [1e-9])
    return [
        "```mermaid",
        "xychart-beta",
        f'    title "{mermaid_text(chart.title)}"',
        f"    x-axis [{labels}]",
        f'    y-axis "{mermaid_text(chart.y_label or "value")}" 0 --> {top * 1.1:.6g}',
        f"    bar [{values}]",
        "```",
    ]


#: Points along each axis a Markdown curve is read at, and multi-class classes drawn (largest ROC-AUC change first).
CURVE_GRID = 21
CURVE_CLASSES = 3


def curve_at(xs: Any, ys: Any, grid: np.ndarray) -> np.ndarray:
    """The polyline through the vertices (xs, ys) in their order, as the HTML report draws it, read at `grid`. The
    vertices run along x one way (ROC: fpr rising; PR: recall falling); between two neighbouring x the line goes from
    the y it leaves the left one with to the y it reaches the right one with; at an x with a vertical run, its highest
    y (the best operating point there)."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return np.full(grid.shape, np.nan)
    if x[0] > x[-1]:
        x, y = x[::-1], y[::-1]                       # the same path walked the other way
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    ends = np.r_[starts[1:] - 1, x.size - 1]
    ux, arrive, leave, top = x[starts], y[starts], y[ends], np.maximum.reduceat(y, starts)
    j = np.searchsorted(ux, grid, side="left")
    at = (j < ux.size) & (ux[np.minimum(j, ux.size - 1)] == grid)
    i, jj = np.clip(j - 1, 0, ux.size - 1), np.clip(j, 0, ux.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(ux[jj] > ux[i], (grid - ux[i]) / (ux[jj] - ux[i]), 0.0)
    between = leave[i] + frac * (arrive[jj] - leave[i])
    out = np.where(j == 0, arrive[0], np.where(j >= ux.size, leave[-1], between))
    return np.where(at, top[jj], out)


def curve_charts(curves: dict[str, Any]) -> list[str]:
    """Mermaid line charts of the scores check's ROC and precision-recall curves (details.curves): a binary
    model's, or the `CURVE_CLASSES` classes whose ROC-AUC changed most; each read at `CURVE_GRID` points."""
    entries = [c for c in curves.get("classes") or () if isinstance(c, dict)]
    if not entries:
        return []

    def auc_change(entry: dict[str, Any]) -> float:
        aucs = [((entry.get(r) or {}).get("roc") or {}).get("auc") for r in ("baseline", "candidate")]
        return abs(aucs[1] - aucs[0]) if all(isinstance(a, (int, float)) for a in aucs) else 0.0

    shown = sorted(entries, key=auc_change, reverse=True)[:CURVE_CLASSES]
    grid = np.linspace(0.0, 1.0, CURVE_GRID)
    approx = " (approximate)" if curves.get("approximate") else ""
    binary = curves.get("num_classes") == 2
    lines = [f"<sub>ROC and precision-recall curves{approx}, line 1 baseline, line 2 candidate, read at "
             f"{CURVE_GRID} points along the drawn vertices ({md_text(curves.get('selection'))}; the HTML report "
             "draws them)</sub>", ""]
    for entry in shown:
        label = "" if binary else f"class {entry.get('class')}: "
        for kind, (xk, yk), area, (x_name, y_name) in (
                ("roc", ("fpr", "tpr"), "auc", ("false positive rate", "true positive rate")),
                ("pr", ("recall", "precision"), "average_precision", ("recall", "precision"))):
            series, areas = [], []
            for role in ("baseline", "candidate"):
                curve = (entry.get(role) or {}).get(kind) or {}
                series.append(curve_at(curve.get(xk) or (), curve.get(yk) or (), grid))
                value = curve.get(area)
                areas.append(f"{role} {value:.4f}" if isinstance(value, (int, float)) else f"{role} -")
            title = f"{label}{'ROC' if kind == 'roc' else 'precision-recall'}{approx}: {'AUC' if kind == 'roc' else 'AP'} " \
                    + ", ".join(areas)
            drawn = [(role, line) for role, line in zip(("baseline", "candidate"), series) if np.isfinite(line).all()]
            if not drawn:              # nothing to draw: no empty chart (Mermaid may refuse one)
                continue
            if len(drawn) == 1:        # the lines are told apart by their order: say which one there is
                title += f" ({drawn[0][0]} only)"
            lines += ["```mermaid", "xychart-beta", f'    title "{mermaid_text(title)}"',
                      f'    x-axis "{x_name}" 0 --> 1', f'    y-axis "{y_name}" 0 --> 1']
            lines += ["    line [" + ", ".join(f"{v:.4g}" for v in line) + "]" for _, line in drawn]
            lines += ["```", ""]
    return lines


def _delta(value: Any) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        return float("inf")


def _table(table: Table, *, check: str = "", max_rows: int | None = MAX_ROWS) -> list[str]:
    """A table, per-class rows worst first (by the recall delta, then F1's), at most `max_rows` rows with a note."""
    rows = list(table.rows)
    headers = list(table.headers)
    worst_first = check == "per_class" and "recall delta" in headers and len(rows) > 1
    if worst_first:
        keys = [headers.index(h) for h in ("recall delta", "f1 delta") if h in headers]
        rows.sort(key=lambda row: tuple(_delta(row[k]) for k in keys))
    shown = rows if max_rows is None else rows[:max_rows]
    out = [f"**{md_text(table.title)}**" + (" (worst first)" if worst_first else ""),
           "", *md_table(table.headers, shown)]
    if len(shown) < len(rows):
        out.append(f"<sub>{len(rows) - len(shown)} more rows in the JSON and HTML reports</sub>")
    return [*out, ""]


def fit_github(text: str, *, limit: int = MAX_CHARS) -> str:
    """`text` cut at a line boundary to fit `limit` characters, open <details> and code fences closed, with a note."""
    if len(text) <= limit:
        return text
    note = (f"\n\n> [!NOTE]\n> The report was cut here to fit GitHub's comment size ({len(text):,} characters in all); "
            "the JSON and HTML reports have everything.\n")
    kept: list[str] = []
    size = 0
    for line in text.splitlines():
        if size + len(line) + 1 + len(note) + 200 > limit:
            break
        kept.append(line)
        size += len(line) + 1
    fences = sum(1 for line in kept if line.lstrip().startswith("```"))
    if fences % 2:
        kept.append("```")
    opened = sum(line.count("<details") for line in kept) - sum(line.count("</details>") for line in kept)
    kept += ["</details>"] * max(opened, 0)
    return "\n".join(kept) + note


def _text_cell(text: str | None) -> str:
    if text is None:
        return ""
    return text if len(text) <= MARKDOWN_TEXT_CHARS else text[: MARKDOWN_TEXT_CHARS - 3] + "..."


def flipped_examples(examples: FlipExamples | None) -> list[str]:
    """A collapsed <details> block with the most confident flips of each kind; every cell escaped (md_text)."""
    if examples is None or not (examples.negative or examples.positive):
        return []
    has_text = any(e.text is not None for e in (*examples.negative, *examples.positive))
    lines = [f"<details><summary><b>Flipped examples</b>: {examples.negative_total} negative, "
             f"{examples.positive_total} positive (the most confident first)</summary>", ""]
    for kind, kept, what in (("Negative flips", examples.negative, "baseline right, candidate wrong"),
                             ("Positive flips", examples.positive, "baseline wrong, candidate right")):
        if not kept:
            continue
        lines.append(f"**{kind}** ({what})")
        lines.append("")
        headers = ("sample", "label", "baseline", "candidate") + (("text",) if has_text else ())
        lines += md_table(headers, [
            (e.index, e.label, f"{e.baseline} ({e.baseline_confidence:.2f})",
             f"{e.candidate} ({e.candidate_confidence:.2f})") + ((_text_cell(e.text),) if has_text else ())
            for e in kept[:MARKDOWN_EXAMPLES]
        ])
        lines.append("")
    lines += ["</details>", ""]
    return lines


def _headline(report: Report) -> list[str]:
    """The metrics table: accuracy, macro F1, flips (classification), else every figure of the task check's
    metrics() and its comparison figures; the task named for anything but classification."""
    m = report.metrics
    if report.task == "classification":
        return [*md_table(
            ("", "baseline", "candidate", "delta"),
            [
                ("accuracy", m["baseline"]["accuracy"], m["candidate"]["accuracy"],
                 f"{m['candidate']['accuracy'] - m['baseline']['accuracy']:+.4f}"),
                ("macro F1", m["baseline"]["macro_f1"], m["candidate"]["macro_f1"],
                 f"{m['candidate']['macro_f1'] - m['baseline']['macro_f1']:+.4f}"),
                ("negative flips", "", m["comparison"]["negative_flips"], f"{m['comparison']['negative_flip_rate']:.2%}"),
            ],
        ), ""]
    lines = [f"task: **{md_text(report.task)}**", ""]
    rows = [(name, b, c, f"{d:+.4g}") for name, b, c, d in metric_rows(m)]
    rows += [(name, "", v, "") for name, v in comparison_items(m)]
    if rows:
        lines += [*md_table(("", "baseline", "candidate", "delta"), rows), ""]
    return lines


def render_markdown(report: Report) -> str:
    lines: list[str] = []
    for p in report.power:   # first: a warning that reads like a pass is how an under-powered gate misleads
        lines += ["> [!WARNING]", f"> **Too few samples to decide {p.check}: {p.metric} threshold {p.threshold:g}.** {p.note}", ""]
    title = {"pass": "passed", "warn": "passed with warnings", "fail": "FAILED"}[report.verdict]
    lines.append(f"## {EMOJI[report.verdict]} gate {title}")
    lines.append("")
    lines.append(f"**{md_text(report.summary)}**")
    lines.append("")
    for note in report.notes:
        lines.append(f"> {md_text(note)}")
        lines.append("")
    base, cand = report.models
    lines += _headline(report)
    lines += md_table(
        ("check", "status", "why"),
        [(c.name, Markup(f"{EMOJI[c.status]} {c.status}"), c.summary) for c in sorted(report.checks, key=lambda c: STATUS_ORDER[c.status])],
    )
    lines.append("")
    lines += flipped_examples(report.examples)
    for check in sorted(report.checks, key=lambda c: STATUS_ORDER[c.status]):
        bad = [f for f in check.findings if f.status in ("fail", "warn")]
        open_attr = " open" if check.status in ("fail", "warn") else ""
        lines.append(f"<details{open_attr}><summary><b>{md_text(check.name)}</b>: {EMOJI[check.status]} {check.status}</summary>")
        lines.append("")
        if bad:
            shown_bad = sorted(bad, key=lambda f: STATUS_ORDER[f.status])[:MAX_ROWS]
            lines += md_table(
                ("status", "metric", "rule", "decision", "threshold", "measured", "baseline", "candidate", "margin",
                 "interval", "p beyond"),
                [
                    (f.status + (" (inconclusive)" if f.inconclusive else ""), finding_label(f), f.rule, f.decision,
                     f.threshold, f.value, f.baseline, f.candidate, f.margin,
                     "" if f.interval is None else f"[{f.interval[0]:.4g}, {f.interval[1]:.4g}]",
                     "" if f.p_value is None else f"{f.p_value:.3g}")
                    for f in shown_bad
                ],
            )
            if len(bad) > len(shown_bad):
                lines.append(f"<sub>{len(bad) - len(shown_bad)} more findings in the JSON and HTML reports</sub>")
            lines.append("")
        for note in check.notes:
            lines.append(f"> {md_text(note)}")
            lines.append("")
        for table in check.tables:
            lines += _table(table, check=check.name)
        for chart in check.charts:
            lines += mermaid_chart(chart)
            lines.append("")
        if isinstance(check.details.get("curves"), dict):
            lines += curve_charts(check.details["curves"])
        lines.append("</details>")
        lines.append("")
    decision = report.config.get("decision") or {}
    if decision:
        lines.append(
            f"<sub>decisions: {decision.get('mode')} at {float(decision.get('confidence', 0.95)):.0%} confidence "
            f"({_STATISTICS.get(getattr(report, 'task', 'classification'), _STATISTICS['classification'])}; "
            f"p beyond = one-sided p of \"beyond the threshold\", {decision.get('multiple_comparisons')}-adjusted "
            f"across {_FAMILY.get(getattr(report, 'task', 'classification'), 'classes')}); "
            f"inconclusive results {'fail' if decision.get('inconclusive') == 'fail' else 'warn'}</sub>"
        )
        lines.append("")
    lines.append(
        f"<sub>candidate {md_code(cand.path)} ({md_text(cand.format)}, sha256 {md_text(str(cand.sha256)[:12])}) vs "
        f"baseline {md_code(base.path)} ({md_text(base.format)}, sha256 {md_text(str(base.sha256)[:12])}); "
        f"data {md_code(report.data.path)}: {report.data.num_samples} samples; "
        f"gate {report.gate_version}, torch {report.environment.get('torch')}</sub>"
    )
    if any(m.dtype or m.output for m in report.models):
        lines.append("")
        lines.append("<sub>" + "; ".join(f"{m.role}: {md_text(model_facts(m))}" for m in (base, cand)) + "</sub>")
    return fit_github("\n".join(lines) + "\n")
