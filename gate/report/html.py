"""A self-contained HTML report: verdict first, failures first, then charts drawn as inline SVG.

No script, no external font, image or stylesheet (a Content-Security-Policy forbids them as well), so it reads the
same offline, in a CI artifact viewer or from an e-mail attachment. Every string that came from a file (class names,
layer names, paths, reasons) goes through `_e` (html.escape with quotes) before it reaches the page.

Sections are functions of the report model that return "" when their data is absent: a run without latency has no
latency section. A new section (a reliability diagram, broken cases) is one more function in SECTIONS. Big reports
stay small: charts and tables are capped (MAX_*) and say how much they left out.
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

from gate.report.console import finding_label
from gate.report.model import (
    STATUS_ORDER,
    Chart,
    CheckResult,
    Finding,
    Report,
    Table,
    comparison_items,
    metric_rows,
    width_phrase,
)

MAX_FAILURES_PER_CHECK = 10  # failing findings listed per check at the top
MAX_TABLE_ROWS = 50          # rows of a check's table; the JSON report has all of them
MAX_CLASS_BARS = 40          # classes in the per-class delta chart
MAX_HEATMAP_CLASSES = 20     # classes in the confusion-change heatmap
MAX_LAYERS = 60              # layers in the drift chart
MAX_LABEL = 26               # characters of a name drawn inside a chart (the full name is in its tooltip)

COLOURS = {"fail": "#c62828", "warn": "#b26a00", "pass": "#2e7d32", "skip": "#6b6b6b"}
TITLES = {"pass": "passed", "warn": "passed with warnings", "fail": "FAILED", "skip": "skipped"}
BASELINE_COLOUR, CANDIDATE_COLOUR = "#5c6bc0", "#ef6c00"

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;margin:0;background:#fff}
main{max-width:1180px;margin:0 auto;padding:0 24px 48px}
header.verdict{padding:18px 24px;color:#fff}
header.verdict h1{margin:0;font-size:26px}
header.verdict p{margin:4px 0 0}
.fail{background:#c62828}.warn{background:#b26a00}.pass{background:#2e7d32}.skip{background:#6b6b6b}
nav{margin:12px 0;font-size:13px}nav a{margin-right:14px;color:#0969da}
h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;min-width:38px;text-align:center;color:#fff;border-radius:3px;padding:0 5px;font-size:12px;font-weight:600}
ol.failures{padding-left:22px}ol.failures li{margin-bottom:10px}
.reason{font-weight:600}
.note{color:#57606a;font-size:13px;margin:4px 0}
details{margin:6px 0;border:1px solid #d0d7de;border-radius:4px;padding:4px 10px}
summary{cursor:pointer;font-weight:600}
svg{display:block;margin:6px 0 10px;max-width:100%;height:auto}
svg text{font-family:inherit}
footer{color:#57606a;font-size:12px;margin-top:32px;border-top:1px solid #d0d7de;padding-top:8px}
code{font-size:12px;background:#f6f8fa;padding:0 3px;overflow-wrap:anywhere}
header code{background:rgba(255,255,255,.18);color:inherit}
footer td{overflow-wrap:anywhere}
"""


def _e(value: Any) -> str:
    """Text or attribute value, escaped (quotes too): the only way a string reaches the page."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def _short(text: str, limit: int = MAX_LABEL) -> str:
    """Cut before escaping, so an entity is never cut in half."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{COLOURS.get(status, "#6b6b6b")}">{_e(status.upper())}</span>'


def _ordered(checks: Sequence[CheckResult]) -> list[CheckResult]:
    return sorted(checks, key=lambda c: STATUS_ORDER[c.status])


def _check(report: Report, name: str) -> CheckResult | None:
    return next((c for c in report.checks if c.name == name), None)


def _table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], *, limit: int = MAX_TABLE_ROWS) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows[:limit]:
        cells = "".join(
            f'<td class="num">{_e(_fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{_e(_fmt(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if len(rows) > limit:
        more = f'<p class="note">{len(rows) - limit} more rows are in the JSON report.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>{body}</svg>'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12, fill: str = "#1f2328",
          weight: str = "normal") -> str:
    bold = f' font-weight="{weight}"' if weight != "normal" else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{bold}>'
            f"{_e(text)}</text>")


# ------------------------------------------------------------------------------------------------- sections


def _header(report: Report) -> str:
    base, cand = report.models
    return (
        f'<header class="verdict {_e(report.verdict)}"><h1>gate {_e(TITLES[report.verdict])}</h1>'
        f"<p><strong>{_e(report.summary)}</strong> (exit {_e(report.exit_code)})</p>"
        f"<p>candidate <code>{_e(cand.path)}</code> [{_e(cand.format)}] vs baseline <code>{_e(base.path)}</code> "
        f"[{_e(base.format)}] on <code>{_e(report.data.path)}</code>: {_e(report.data.num_samples)} samples, "
        f"{_e(width_phrase(report.task, len(report.class_names)))}"
        + ("" if report.task == "classification" else f"; task {_e(report.task)}") + "</p></header>"
    )


def _failures(report: Report) -> str:
    """Every failing finding of every check, then every warning: what to fix first comes first."""
    items = []
    for wanted in ("fail", "warn"):
        for check in _ordered(report.checks):
            bad = [f for f in check.findings if f.status == wanted]
            if not bad and check.status == wanted:     # a check that failed as a whole, without a finding
                items.append(f"<li>{_badge(check.status)} <b>{_e(check.name)}</b>: "
                             f'<span class="reason">{_e(check.summary)}</span></li>')
            for f in bad[:MAX_FAILURES_PER_CHECK]:
                items.append(
                    f"<li>{_badge(f.status)} <b>{_e(check.name)}</b> &middot; {_e(finding_label(f))}"
                    f"{' (inconclusive)' if f.inconclusive else ''}<br>"
                    f'<span class="reason">{_e(f.reason)}</span>{_finding_figures(f)}</li>'
                )
            if len(bad) > MAX_FAILURES_PER_CHECK:
                word = "failures" if wanted == "fail" else "warnings"
                items.append(f'<li class="note">{len(bad) - MAX_FAILURES_PER_CHECK} more {_e(check.name)} {word}: '
                             "see the check below and the JSON report</li>")
    if not items:
        return _section("failures", "Failures", '<p class="note">No check failed or warned.</p>')
    return _section("failures", "Failures and warnings", f'<ol class="failures">{"".join(items)}</ol>')


def _finding_figures(f: Finding) -> str:
    parts = [
        ("rule", f.rule), ("decision", f.decision), ("threshold", _fmt(f.threshold)), ("measured", _fmt(f.value)),
        ("baseline", _fmt(f.baseline)), ("candidate", _fmt(f.candidate)), ("margin", _fmt(f.margin)),
        ("needed to pass", _fmt(f.required)),
        ("interval", "" if f.interval is None else f"[{_fmt(f.interval[0])}, {_fmt(f.interval[1])}]"),
        ("p", "" if f.p_value is None else _fmt(f.p_value, 3)),
    ]
    shown = [(k, v) for k, v in parts if v not in ("", None)]
    return '<div class="note">' + "; ".join(f"{_e(k)} {_e(v)}" for k, v in shown) + "</div>"


def _checks(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{_badge(c.status)}</td><td>{_e(c.name)}</td><td>{_e(c.summary)}</td></tr>"
        for c in _ordered(report.checks)
    )
    return _section("checks", "Checks",
                    f"<table><thead><tr><th>status</th><th>check</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>")


def _headline(report: Report) -> str:
    m = report.metrics
    if report.task != "classification":
        rows = [(name, b, c, f"{d:+.4g}") for name, b, c, d in metric_rows(m)]
        rows += [(name, "", v, "") for name, v in comparison_items(m)]
        if not rows:
            return ""
        return _section("metrics", "Headline metrics", _table(("", "baseline", "candidate", "delta"), rows))
    try:
        b, c, comp = m["baseline"], m["candidate"], m["comparison"]
        rows = [
            ("accuracy", b["accuracy"], c["accuracy"], f"{c['accuracy'] - b['accuracy']:+.4f}"),
            ("macro F1", b["macro_f1"], c["macro_f1"], f"{c['macro_f1'] - b['macro_f1']:+.4f}"),
            ("negative flips", "", comp["negative_flips"], f"{comp['negative_flip_rate']:.2%} of samples"),
            ("agreement", "", comp["agreement"], ""),
        ]
    except (KeyError, TypeError):
        return ""
    return _section("metrics", "Headline metrics", _table(("", "baseline", "candidate", "delta"), rows))


def _per_class_flags(report: Report) -> dict[str, tuple[str, tuple[str, ...]]]:
    """class name -> (worst status, metrics flagged) of the per_class check's failing or warning findings."""
    check = _check(report, "per_class")
    flags: dict[str, tuple[str, tuple[str, ...]]] = {}
    for f in check.findings if check else ():
        if f.where is None or f.status not in ("fail", "warn"):
            continue
        metric = f.metric.split("[", 1)[0]
        status, metrics = flags.get(f.where, (f.status, ()))
        if STATUS_ORDER[f.status] < STATUS_ORDER[status]:
            status = f.status
        flags[f.where] = (status, metrics if metric in metrics else (*metrics, metric))
    return flags


def _delta(b: dict[str, Any], c: dict[str, Any], key: str) -> float:
    try:
        value = float(c[key]) - float(b[key])
    except (KeyError, TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _per_class(report: Report) -> str:
    if report.task != "classification":
        return ""               # a task check shows its own per-label / per-target tables
    try:
        base = report.metrics["baseline"]["per_class"]
        cand = report.metrics["candidate"]["per_class"]
    except (KeyError, TypeError):
        return ""
    if not base or len(base) != len(cand):
        return ""
    flags = _per_class_flags(report)
    # (name, baseline, candidate, recall delta, precision delta, the worse of the two)
    rows = []
    for b, c in zip(base, cand):
        dr, dp = _delta(b, c, "recall"), _delta(b, c, "precision")
        finite = [d for d in (dr, dp) if not math.isnan(d)]
        if finite:
            rows.append((str(b.get("class")), b, c, dr, dp, min(finite)))
    if not rows:
        return ""
    note = ""
    if len(rows) > MAX_CLASS_BARS:
        # Flagged classes first (worst change first), then the largest changes either way.
        flagged = sorted((r for r in rows if r[0] in flags), key=lambda r: r[5])
        rest = sorted((r for r in rows if r[0] not in flags),
                      key=lambda r: -max(abs(d) for d in (r[3], r[4]) if not math.isnan(d)))
        keep = {r[0] for r in (flagged + rest)[:MAX_CLASS_BARS]}
        note = (f'<p class="note">{len(keep)} of {len(rows)} classes: the flagged ones ({len(flagged)}) first, then '
                "the largest changes; every class is in the JSON report.</p>")
        rows = [r for r in rows if r[0] in keep]
    rows.sort(key=lambda r: (r[5], r[0]))
    span = max([abs(d) for r in rows for d in (r[3], r[4]) if not math.isnan(d)] + [1e-9])
    label_w, bar_w, value_w, row_h, top = 210, 500, 330, 24, 44
    mid = label_w + bar_w / 2
    height = top + row_h * len(rows) + 12
    parts = [
        _text(label_w, 16, f"change, candidate \u2212 baseline (axis \u00b1{_fmt(span, 3)})", size=12),
        f'<rect x="{label_w}" y="25" width="12" height="8" fill="#455a64"/>',
        _text(label_w + 16, 33, "recall", size=11),
        f'<rect x="{label_w + 70}" y="25" width="12" height="8" fill="#b0bec5"/>',
        _text(label_w + 86, 33, "precision", size=11),
        f'<line x1="{mid}" y1="{top - 4}" x2="{mid}" y2="{height - 8}" stroke="#8c959f"/>',
    ]
    for i, (name, b, c, dr, dp, _) in enumerate(rows):
        y = top + i * row_h
        status, metrics = flags.get(name, (None, ()))
        colour = COLOURS[status] if status else "#1f2328"
        bars = []
        for k, (d, fill) in enumerate(((dr, "#455a64"), (dp, "#b0bec5"))):
            if math.isnan(d):
                continue
            length = abs(d) / span * (bar_w / 2 - 4)
            x = mid - length if d < 0 else mid
            bars.append(f'<rect x="{x:.1f}" y="{y + 3 + k * 9}" width="{max(length, 1):.1f}" height="8" '
                        f'fill="{fill}"/>')
        tip = (f"{name}: recall {_fmt(b.get('recall'))} \u2192 {_fmt(c.get('recall'))}; precision "
               f"{_fmt(b.get('precision'))} \u2192 {_fmt(c.get('precision'))}; F1 {_fmt(b.get('f1'))} \u2192 "
               f"{_fmt(c.get('f1'))}; support {b.get('support')}"
               + (f"; {status}: {', '.join(metrics)}" if status else ""))
        text = f"recall {_signed(dr)}  precision {_signed(dp)}"
        if status:
            text += f"  {status.upper()}: {', '.join(metrics)}"
        parts.append(
            f"<g><title>{_e(tip)}</title>"
            + _text(label_w - 8, y + 15, _short(name), anchor="end", fill=colour, weight="bold" if status else "normal")
            + "".join(bars)
            + _text(label_w + bar_w + 8, y + 15, text, size=11, fill=colour, weight="bold" if status else "normal")
            + "</g>"
        )
    svg = _svg(label_w + bar_w + value_w, height, "Per-class recall and precision change", "".join(parts))
    return _section("per-class", "Per-class change", svg + note)


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def _heatmap_classes(diff: list[list[int]], names: Sequence[str]) -> list[int]:
    k = len(diff)
    if k <= MAX_HEATMAP_CLASSES:
        return list(range(k))
    weight = [sum(abs(diff[i][j]) + abs(diff[j][i]) for j in range(k) if j != i) + abs(diff[i][i]) for i in range(k)]
    top = sorted(range(k), key=lambda i: (-weight[i], i))[:MAX_HEATMAP_CLASSES]
    return sorted(top)


def _confusion(report: Report) -> str:
    if report.task != "classification":
        return ""
    try:
        cb = report.metrics["baseline"]["confusion_matrix"]
        cc = report.metrics["candidate"]["confusion_matrix"]
    except (KeyError, TypeError):
        return ""
    k = len(cb)
    if k == 0 or len(cc) != k:
        return ""
    names = list(report.class_names) if len(report.class_names) == k else [str(i) for i in range(k)]
    diff = [[int(cc[i][j]) - int(cb[i][j]) for j in range(k)] for i in range(k)]
    shown = _heatmap_classes(diff, names)
    cell = 30 if len(shown) <= 12 else 22
    longest = max(len(_short(names[j], 18)) for j in shown)
    label_w, top = 170, 34 + int(longest * 6.2 * 0.87)     # room for column labels at 60 degrees
    size = cell * len(shown)
    worst = max([abs(diff[i][j]) for i in shown for j in shown] + [1])
    parts = [
        _text(label_w + size / 2, 14, "predicted class", anchor="middle", size=12),
        f'<text transform="translate(16 {top + size / 2:.1f}) rotate(-90)" font-size="12" text-anchor="middle" '
        'fill="#1f2328">true class</text>',
        f'<rect x="{label_w}" y="{top}" width="{size}" height="{size}" fill="#f6f8fa" stroke="#d0d7de"/>',
    ]
    for col, j in enumerate(shown):
        x = label_w + col * cell + cell / 2
        parts.append(
            f'<text transform="translate({x + 4:.1f} {top - 6}) rotate(-60)" font-size="11" fill="#1f2328">'
            f"{_e(_short(names[j], 18))}</text>"
        )
    for row, i in enumerate(shown):
        y = top + row * cell
        parts.append(_text(label_w - 6, y + cell / 2 + 4, _short(names[i], 20), anchor="end", size=11))
        for col, j in enumerate(shown):
            d = diff[i][j]
            if d == 0 and i != j:
                continue
            # On the diagonal more is better; off it more is worse: red marks what got worse, blue what improved.
            worse = d < 0 if i == j else d > 0
            colour = "#c62828" if worse else "#1565c0"
            opacity = 0.15 + 0.85 * abs(d) / worst if d else 0.0
            tip = (f"true {names[i]}, predicted {names[j]}: baseline {cb[i][j]}, candidate {cc[i][j]} ({d:+d})")
            x = label_w + col * cell
            stroke = ' stroke="#1f2328" stroke-width="0.6"' if i == j else ""
            parts.append(
                f'<g><title>{_e(tip)}</title><rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" '
                f'fill-opacity="{opacity:.2f}"{stroke}/>'
                + (_text(x + cell / 2, y + cell / 2 + 4, f"{d:+d}", anchor="middle", size=10,
                         fill="#fff" if opacity > 0.55 else "#1f2328") if d and cell >= 22 else "")
                + "</g>"
            )
    legend_y = top + size + 20
    parts.append(_text(label_w, legend_y, "red: more errors or fewer correct; blue: fewer errors or more correct;",
                       size=11, fill="#57606a"))
    parts.append(_text(label_w, legend_y + 15, "diagonal cells (correct) are outlined; hover a cell for its counts",
                       size=11, fill="#57606a"))
    svg = _svg(max(label_w + size + 40, 560), legend_y + 24, "Confusion matrix change, candidate minus baseline",
               "".join(parts))
    note = ""
    if len(shown) < k:
        note = (f'<p class="note">The {len(shown)} classes with the largest changes of {k}; the full matrices are in '
                "the JSON report.</p>")
    return _section("confusion", "Confusion matrix change (candidate \u2212 baseline)", svg + note)


def _curve_points(xs: Sequence[Any], ys: Sequence[Any], x0: float, y0: float, size: float) -> str:
    """'x,y x,y ...' of a curve in [0, 1]^2 drawn in a size x size box whose top left is (x0, y0)."""
    return " ".join(f"{x0 + float(x) * size:.1f},{y0 + (1.0 - float(y)) * size:.1f}"
                    for x, y in zip(xs, ys) if _finite(x) and _finite(y))


def _curve_plot(kind: str, entry: dict[str, Any], *, size: int, title: str) -> str:
    """One ROC (kind "roc") or precision-recall ("pr") plot of one class, both models on one pair of axes."""
    left, top, bottom, right = 46, 34, 34, 12
    width, height = left + size + right, top + size + bottom
    x_key, y_key, x_label, y_label, area = (
        ("fpr", "tpr", "false positive rate", "true positive rate", "auc") if kind == "roc"
        else ("recall", "precision", "recall", "precision", "average_precision"))
    parts = [_text(left, 14, title, size=12, weight="bold"),
             f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="#fff" stroke="#8c959f"/>']
    ticks = (0.0, 0.25, 0.5, 0.75, 1.0)       # shared attributes on a <g>: a 10-class page draws 20 of these
    grid = "".join(f"M{left + t * size:.1f} {top}V{top + size}M{left} {top + (1 - t) * size:.1f}H{left + size}"
                   for t in ticks[1:-1])
    parts.append(f'<path d="{grid}" stroke="#eaeef2"/>')
    parts.append('<g font-size="10" fill="#57606a" text-anchor="middle">' + "".join(
        f'<text x="{left + t * size:.1f}" y="{top + size + 13}">{t:g}</text>' for t in ticks) + "</g>")
    parts.append('<g font-size="10" fill="#57606a" text-anchor="end">' + "".join(
        f'<text x="{left - 4}" y="{top + (1 - t) * size + 3:.1f}">{t:g}</text>' for t in ticks) + "</g>")
    parts.append(_text(left + size / 2, top + size + 28, x_label, anchor="middle", size=11))
    parts.append(f'<text transform="translate(12 {top + size / 2:.1f}) rotate(-90)" font-size="11" '
                 f'text-anchor="middle" fill="#1f2328">{_e(y_label)}</text>')
    if kind == "roc":           # chance: the diagonal
        parts.append(f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" stroke="#8c959f" '
                     'stroke-dasharray="4 3"/>')
    else:                       # chance: precision = the share of positives
        pos, neg = entry.get("positives"), entry.get("negatives")
        if _finite(pos) and _finite(neg) and pos + neg > 0:
            y = top + (1 - pos / (pos + neg)) * size
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + size}" y2="{y:.1f}" stroke="#8c959f" '
                         'stroke-dasharray="4 3"/>')
    for r, (role, colour) in enumerate((("baseline", BASELINE_COLOUR), ("candidate", CANDIDATE_COLOUR))):
        curve = (entry.get(role) or {}).get(kind) or {}
        points = _curve_points(curve.get(x_key) or (), curve.get(y_key) or (), left, top, size)
        value = curve.get(area)
        name = "AUC" if kind == "roc" else "AP"
        tip = (f"{role}, class {entry.get('class')}: {name} {_fmt(value)}; {len(curve.get(x_key) or ())} of "
               f"{curve.get('vertices')} vertices drawn")
        dash = ' stroke-dasharray="6 3"' if role == "baseline" else ""    # told apart without colour too
        if points:
            parts.append(f'<polyline class="{role}" points="{points}" fill="none" stroke="{colour}" '
                         f'stroke-width="2" stroke-linejoin="round"{dash}><title>{_e(tip)}</title></polyline>')
        # the legend where the curves rarely are: bottom right of a ROC, bottom left of a PR curve
        lx, ly = (left + size - 150 if kind == "roc" else left + 6), top + size - 26 + r * 15
        if r == 0:              # readable over the grid lines and the chance line
            parts.append(f'<rect x="{lx - 3}" y="{ly - 13}" width="146" height="32" fill="#fff" fill-opacity="0.8"/>')
        parts.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/>')
        parts.append(_text(lx + 24, ly, f"{role} {name} {_fmt(value, 3)}", size=11, fill=colour))
    return _svg(width, height, f"{title}: baseline and candidate", "".join(parts))


def _score_curves(report: Report) -> str:
    """ROC and precision-recall curves of both models (the scores check's details.curves, gate.curves)."""
    check = _check(report, "scores")
    curves = (check.details.get("curves") if check else None) or {}
    classes = [c for c in curves.get("classes") or () if isinstance(c, dict)]
    if not classes:
        return ""
    binary = curves.get("num_classes") == 2
    size = 300 if binary else 190
    approx = " (approximate)" if curves.get("approximate") else ""
    blocks = []
    for entry in classes:
        label = "" if binary else f"class {_short(str(entry.get('class')))}: "
        pair = (_curve_plot("roc", entry, size=size, title=f"{label}ROC{approx}")
                + _curve_plot("pr", entry, size=size, title=f"{label}precision-recall{approx}"))
        blocks.append(f'<div style="display:flex;gap:6px;margin-right:18px">{pair}</div>')
    note = (f'<p class="note">From {_e(curves.get("source"))}; {_e(curves.get("selection"))}; each curve at most '
            f"{_e(curves.get('max_points'))} of its vertices, spread along it (every drawn point is exact); the "
            "dashed grey line is chance; AUC and AP are over every vertex.</p>")
    if curves.get("approximate"):
        note += ('<p class="note">APPROXIMATE: streamed mode, each probability bin is one threshold; the curves are '
                 "those of the binned scores.</p>")
    if len(classes) < (curves.get("classes_total") or 0):
        note += (f'<p class="note">{len(classes)} of {_e(curves.get("classes_total"))} classes drawn; ROC-AUC and '
                 "PR-AUC of every class are in the scores check's metrics.</p>")
    body = note + f'<div style="display:flex;flex-wrap:wrap">{"".join(blocks)}</div>'
    return _section("curves", f"ROC and precision-recall curves ({check.status})", body)


def _slice_statuses(check: CheckResult) -> dict[str, tuple[str, tuple[str, ...]]]:
    """slice value -> (worst status, the rules that failed or warned) of the slices check's findings."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for f in check.findings:
        if f.where is None:
            continue
        status, metrics = out.get(f.where, (f.status, ()))
        if STATUS_ORDER[f.status] < STATUS_ORDER[status]:
            status = f.status
        label = f"{f.metric.removesuffix(f'[{f.where}]')} {f.rule}"
        out[f.where] = (status, (*metrics, label) if f.status in ("fail", "warn") else metrics)
    return out


def _slices(report: Report) -> str:
    """One table per slice dimension (`checks.slices.by` entry), largest accuracy drop first."""
    check = _check(report, "slices")
    rows = [s for s in ((check.details.get("slices") if check else None) or []) if isinstance(s, dict)]
    if not rows:
        return ""
    statuses = _slice_statuses(check)
    dims = [str(d) for d in check.details.get("dimensions") or []]
    dims += [d for d in dict.fromkeys(str(s.get("dimension")) for s in rows) if d not in dims]
    head = "".join(f"<th>{h}</th>" for h in ("slice", "samples", "accuracy baseline", "accuracy candidate",
                                             "drop", "interval of drop", "negative flips", "positive flips",
                                             "status", "failed or warned"))
    parts = []
    for dim in dims:
        mine = [s for s in rows if str(s.get("dimension")) == dim]
        if not mine:
            continue
        body = []
        for s in mine[:MAX_TABLE_ROWS]:
            value = str(s.get("slice"))
            status, metrics = statuses.get(value, (None, ()))
            ci = s.get("accuracy_drop_interval")
            interval = (f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2
                        and all(_finite(v) for v in ci) else "")
            state = (_badge(status) if status else
                     _e("pass (no rule)" if s.get("gated") else f"not gated (n < {check.details.get('min_size')})"))
            drop = s.get("accuracy_drop")
            cells = [f"<td>{_e(value)}</td>"] + [
                f'<td class="num">{_e(_fmt(v))}</td>' for v in (
                    s.get("samples"), s.get("baseline_accuracy"), s.get("candidate_accuracy"),
                    f"{drop:+.4f}" if _finite(drop) else drop)
            ] + [f'<td class="num" style="white-space:nowrap">{_e(interval)}</td>',
                 f'<td class="num">{_e(s.get("negative_flips"))}</td>',
                 f'<td class="num">{_e(s.get("positive_flips"))}</td>',
                 f"<td>{state}</td>", f"<td>{_e(', '.join(metrics))}</td>"]
            body.append(f"<tr>{''.join(cells)}</tr>")
        more = (f'<p class="note">{len(mine) - MAX_TABLE_ROWS} more slices are in the JSON report.</p>'
                if len(mine) > MAX_TABLE_ROWS else "")
        parts.append(f'<h3>{_e(dim)}: {len(mine)} slices</h3><table data-dimension="{_e(dim)}"><thead><tr>{head}'
                     f"</tr></thead><tbody>{''.join(body)}</tbody></table>{more}")
    note = ('<p class="note">Per slice, largest accuracy drop (baseline \u2212 candidate) first; '
            f"{_e(check.details.get('decision'))} decisions, {_e(check.details.get('multiple_comparisons'))} across "
            f"{_e(check.details.get('comparisons'))} comparisons.</p>")
    return _section("slices", f"Slices ({check.status})", note + "".join(parts))


_PERCENTILES = ("p50", "p90", "p95", "p99")


def _latency_axis(values: list[float], width: float) -> tuple[Callable[[float], float], list[tuple[float, str]], str]:
    """(x of a value in ms, ticks, scale name): log when the values span more than a factor of 20 (a noisy
    runner's tail would squash the medians into one pixel on a linear axis), else linear from 0."""
    lo, hi = min(values), max(values)
    if lo > 0 and hi / lo > 20:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        b = max(b, a + 1)

        def log_x(v: float) -> float:
            return (math.log10(max(v, 10.0 ** a)) - a) / (b - a) * width

        return log_x, [(log_x(10.0 ** t), f"{10.0 ** t:g} ms") for t in range(a, b + 1)], "log"
    top = hi * 1.08 or 1.0

    def lin_x(v: float) -> float:
        return v / top * width

    return lin_x, [(width * t / 4, f"{_fmt(top * t / 4, 3)} ms") for t in range(5)], "linear"


def _latency_run(run: dict[str, Any]) -> str:
    label_w, plot_w, value_w, row_h = 190, 500, 360, 22
    values = [v for role in ("baseline_ms", "candidate_ms") for v in run[role].values() if _finite(v)]
    if not values:
        return ""
    xof, ticks, scale = _latency_axis(values, plot_w)
    parts = []
    for r, (role, colour) in enumerate((("baseline", BASELINE_COLOUR), ("candidate", CANDIDATE_COLOUR))):
        ms = run[f"{role}_ms"]
        y = 8 + r * row_h * 1.6
        mid = y + row_h / 2
        pts = {s: label_w + xof(float(ms[s])) for s in (*_PERCENTILES, "mean") if _finite(ms.get(s))}
        parts.append(_text(label_w - 8, mid + 4, role, anchor="end", fill=colour, weight="bold"))
        if "p50" in pts and "p99" in pts:
            parts.append(f'<line x1="{pts["p50"]:.1f}" y1="{mid}" x2="{pts["p99"]:.1f}" y2="{mid}" '
                         f'stroke="{colour}" stroke-width="2"/>')
        if "p50" in pts and "p90" in pts:
            parts.append(f'<rect x="{pts["p50"]:.1f}" y="{y + 3}" width="{max(pts["p90"] - pts["p50"], 1.5):.1f}" '
                         f'height="{row_h - 6}" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>')
        for stat, tall in (("p50", 1.0), ("p95", 0.6), ("p99", 0.6)):
            if stat in pts:
                h = (row_h - 2) * tall
                parts.append(f'<line x1="{pts[stat]:.1f}" y1="{mid - h / 2:.1f}" x2="{pts[stat]:.1f}" '
                             f'y2="{mid + h / 2:.1f}" stroke="{colour}" stroke-width="{3 if stat == "p50" else 1.5}"/>')
        if "mean" in pts:
            parts.append(f'<path d="M{pts["mean"]:.1f} {mid - 5:.1f}l5 5l-5 5l-5 -5z" fill="#fff" stroke="{colour}"/>')
        summary = "  ".join(f"{s} {_fmt(float(ms[s]), 3)}" for s in (*_PERCENTILES, "mean") if _finite(ms.get(s)))
        parts.append(_text(label_w + plot_w + 8, mid + 4, summary + " ms", size=11))
    axis_y = 8 + 2 * row_h * 1.6
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#8c959f"/>')
    for x, label in ticks:
        parts.append(f'<line x1="{label_w + x:.1f}" y1="{axis_y}" x2="{label_w + x:.1f}" y2="{axis_y + 4}" '
                     'stroke="#8c959f"/>')
        parts.append(_text(label_w + x, axis_y + 16, label, anchor="middle", size=10, fill="#57606a"))
    title = f"{run.get('device', '')} batch size {run.get('batch_size', '')}"
    ratio = (run.get("ratios") or {}).get("p50") or {}
    caption = title + (f": p50 ratio {_fmt(ratio.get('ratio'), 4)}" if _finite(ratio.get("ratio")) else "")
    decisions = ", ".join(f"{d.get('statistic')} {d.get('decision')}" for d in run.get("decisions") or [])
    return (f"<h3>{_e(caption)}</h3>"
            + f'<p class="note">{_e(scale)} axis' + (f"; decisions: {_e(decisions)}" if decisions else "") + "</p>"
            + _svg(label_w + plot_w + value_w, int(axis_y + 24), f"Latency, {title}", "".join(parts)))


def _latency(report: Report) -> str:
    check = _check(report, "latency")
    runs = (check.details.get("runs") if check else None) or []
    runs = [r for r in runs if isinstance(r, dict) and isinstance(r.get("baseline_ms"), dict)
            and isinstance(r.get("candidate_ms"), dict)]
    blocks = [b for b in (_latency_run(run) for run in runs) if b]
    if check is None or not blocks:
        return ""
    legend = ('<p class="note">Per call, in milliseconds: the box spans p50 to p90, the line runs to p99, ticks mark '
              "p50 (thick), p95 and p99, the diamond marks the mean.</p>")
    return _section("latency", f"Latency ({check.status})", legend + "".join(blocks))


def _layer_drift(fig: dict[str, Any]) -> tuple[float | None, str]:
    cos = fig.get("cosine")
    if isinstance(cos, dict) and _finite(cos.get("mean")):
        return 1.0 - float(cos["mean"]), "1 \u2212 cosine"
    if _finite(fig.get("cka")):
        return 1.0 - float(fig["cka"]), "1 \u2212 CKA"
    return None, ""


def _drift(report: Report) -> str:
    check = _check(report, "drift")
    layers = (check.details.get("layers") if check else None) or []
    layers = [f for f in layers if isinstance(f, dict) and "layer" in f]
    if not layers:
        return ""
    first = check.details.get("first_drifting_layer")
    note = ""
    if len(layers) > MAX_LAYERS:
        scored = sorted(range(len(layers)), key=lambda i: -(_layer_drift(layers[i])[0] or 0.0))
        keep = set(scored[:MAX_LAYERS - 1]) | {i for i, f in enumerate(layers) if f["layer"] == first}
        note = (f'<p class="note">{len(keep)} of {len(layers)} layers: the most drifting ones and the first to drift, '
                "in forward order; every layer is in the JSON report.</p>")
        layers = [f for i, f in enumerate(layers) if i in keep]
    low, high = -6.0, 0.0           # log10 of 1 - cosine: 1e-6 (identical) to 1 (orthogonal)
    label_w, plot_w, value_w, row_h, top = 220, 520, 260, 20, 30

    def xpos(v: float) -> float:
        v = min(max(v, 10 ** low), 10 ** high)
        return label_w + (math.log10(v) - low) / (high - low) * plot_w

    height = top + row_h * len(layers) + 30
    parts = [_text(label_w, 16, "drift per layer in forward order (log scale; the tick is the layer's limit)", size=12)]
    for i, fig in enumerate(layers):
        y = top + i * row_h
        value, kind = _layer_drift(fig)
        status = str(fig.get("status") or "pass")
        colour = COLOURS.get(status, "#6b6b6b") if status != "pass" else "#90a4ae"
        is_first = fig["layer"] == first
        tip = f"{fig['layer']}: {kind} {_fmt(value)}; status {status}"
        if fig.get("breaches"):
            tip += "; breaches " + ", ".join(str(b) for b in fig["breaches"])
        row = [_text(label_w - 8, y + 14, _short(str(fig["layer"]), 32), anchor="end",
                     weight="bold" if is_first else "normal")]
        if value is not None:
            row.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(xpos(value) - label_w, 1):.1f}" '
                       f'height="{row_h - 8}" fill="{colour}"/>')
        limit = (fig.get("thresholds") or {}).get("min_cosine" if kind.endswith("cosine") else "min_cka")
        if _finite(limit):
            x = xpos(1.0 - float(limit))
            row.append(f'<line x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + row_h - 1}" stroke="#1f2328" '
                       'stroke-width="2"/>')
        text = f"{kind} {_fmt(value, 3)}" if value is not None else "not comparable"
        if fig.get("breaches"):
            text += "; breaches " + ", ".join(str(b) for b in fig["breaches"])
        if is_first:
            text += "  \u25c0 drift starts here"
        row.append(_text(label_w + plot_w + 8, y + 14, text, fill=colour if status != "pass" else "#1f2328",
                         weight="bold" if is_first else "normal"))
        parts.append(f"<g><title>{_e(tip)}</title>{''.join(row)}</g>")
    axis_y = top + row_h * len(layers) + 4
    for t in range(int(low), int(high) + 1):
        x = label_w + (t - low) / (high - low) * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{axis_y}" stroke="#d0d7de"/>')
        parts.append(_text(x, axis_y + 14, f"1e{t}", anchor="middle", size=10, fill="#57606a"))
    head = (f'<p><b>First drifting layer: {_e(first)}</b></p>' if first
            else '<p class="note">No layer breached its limits.</p>')
    svg = _svg(label_w + plot_w + value_w, height, "Activation drift per layer", "".join(parts))
    return _section("drift", f"Drift by layer ({check.status})", head + svg + note)


DEDICATED = frozenset({"latency", "drift"})   # their charts have a section of their own above


def _bar_chart(chart: Chart) -> str:
    """Any check's Chart as horizontal bars (a check that adds a chart gets it drawn without a new section)."""
    pairs = [(str(label), v) for label, v in zip(chart.labels, chart.values)][:MAX_CLASS_BARS]
    finite = [abs(v) for _, v in pairs if _finite(v)]
    if not pairs:
        return ""
    span = max(finite + [1e-12])
    label_w, bar_w, value_w, row_h, top = 190, 480, 120, 20, 24
    parts = [_text(label_w, 15, chart.title + (f" ({chart.y_label})" if chart.y_label else ""), size=12)]
    for i, (label, v) in enumerate(pairs):
        y = top + i * row_h
        length = abs(v) / span * bar_w if _finite(v) else 0.0
        parts.append(
            f"<g><title>{_e(label)}: {_e(_fmt(v))}</title>"
            + _text(label_w - 8, y + 14, _short(label), anchor="end")
            + f'<rect x="{label_w}" y="{y + 3}" width="{max(length, 1):.1f}" height="{row_h - 6}" fill="#78909c"/>'
            + _text(label_w + bar_w + 8, y + 14, _fmt(v))
            + "</g>"
        )
    return _svg(label_w + bar_w + value_w, top + row_h * len(pairs) + 8, chart.title, "".join(parts))


def _check_block(check: CheckResult) -> str:
    body = [f"<p>{_e(check.summary)}</p>"]
    body += [f'<p class="note">note: {_e(n)}</p>' for n in check.notes]
    if check.findings:
        body.append(_table(
            ("status", "metric", "rule", "threshold", "measured", "baseline", "candidate", "margin", "interval", "p"),
            [(f.status + ("?" if f.inconclusive else ""), finding_label(f), f.rule, f.threshold, f.value, f.baseline,
              f.candidate, f.margin, "" if f.interval is None else f"[{_fmt(f.interval[0])}, {_fmt(f.interval[1])}]",
              "" if f.p_value is None else _fmt(f.p_value, 3))
             for f in sorted(check.findings, key=lambda f: STATUS_ORDER[f.status])],
        ))
    for table in check.tables:
        body.append(_table_block(table))
    if check.name not in DEDICATED:
        body += [_bar_chart(chart) for chart in check.charts]
    opened = " open" if check.status in ("fail", "warn") else ""
    return (f'<details{opened} id="check-{_e(check.name)}"><summary>{_badge(check.status)} {_e(check.name)}'
            f"</summary>{''.join(body)}</details>")


def _table_block(table: Table) -> str:
    return f"<h4>{_e(table.title)}</h4>" + _table(table.headers, table.rows)


def _details(report: Report) -> str:
    return _section("details", "Every check", "".join(_check_block(c) for c in _ordered(report.checks)))


def _footer(report: Report) -> str:
    rows = [(m.role, m.path, m.format, m.sha256, m.size_bytes, m.parameters) for m in report.models]
    decision = report.config.get("decision") or {}
    env = ", ".join(f"{k} {v}" for k, v in report.environment.items())
    how = ""
    if decision:
        how = (f"<p>decisions: {_e(decision.get('mode'))} at {_e(_fmt(decision.get('confidence')))} confidence; "
               f"inconclusive results {_e(decision.get('inconclusive'))}; "
               f"{_e(decision.get('multiple_comparisons'))} across classes</p>")
    return (
        "<footer>"
        + _table(("model", "path", "format", "sha256", "bytes", "parameters"), rows)
        + f"<p>data <code>{_e(report.data.path)}</code> [{_e(report.data.format)}], sha256 {_e(report.data.sha256)}, "
        f"{_e(report.data.num_samples)} samples in {_e(report.data.num_batches)} batches of {_e(report.data.batch_size)}</p>"
        + how
        + f"<p>gate {_e(report.gate_version)} (report schema {_e(report.schema_version)}), {_e(env)}; "
        f"created {_e(report.created_at)} in {_e(_fmt(report.duration_s))} s</p></footer>"
    )


def _flipped(report: Report) -> str:
    """The samples the two models disagree on, most confident wrong prediction first: what a reviewer reads."""
    examples = report.examples
    if examples is None or not (examples.negative or examples.positive):
        return ""
    headers = ("sample", "where", "text", "label", "baseline", "candidate")
    parts = []
    for kind, shown, total, what in (
        ("negative", examples.negative, examples.negative_total, "the baseline right, the candidate wrong"),
        ("positive", examples.positive, examples.positive_total, "the candidate right, the baseline wrong"),
    ):
        if not shown:
            continue
        rows = [(e.index, e.where or "", e.text or "", e.label, f"{e.baseline} ({e.baseline_confidence:.2f})",
                 f"{e.candidate} ({e.candidate_confidence:.2f})") for e in shown]
        parts.append(f"<h3>{_e(kind)} flips: {_e(what)} ({_e(len(shown))} of {_e(total)} shown)</h3>"
                     + _table(headers, rows))
    return _section("flipped", "Flipped examples", "".join(parts))


#: Each returns its HTML, or "" when the report has no data for it. Order is reading order: verdict, failures first.
SECTIONS: tuple[Callable[[Report], str], ...] = (
    _failures, _checks, _headline, _flipped, _per_class, _confusion, _slices, _score_curves, _latency, _drift,
    _details,
)


def _nav(parts: list[str]) -> str:
    names = {"failures": "Failures", "checks": "Checks", "metrics": "Metrics", "flipped": "Flipped examples",
             "per-class": "Per class",
             "confusion": "Confusion", "slices": "Slices", "curves": "ROC / PR", "latency": "Latency", "drift": "Drift",
             "details": "Every check"}
    links = [f'<a href="#{a}">{t}</a>' for a, t in names.items() if any(p.startswith(f'<section id="{a}"') for p in parts)]
    return f"<nav>{''.join(links)}</nav>"


def render_html(report: Report) -> str:
    """The whole page as one string: inline CSS and SVG, no script, nothing fetched."""
    sections = [s for s in (section(report) for section in SECTIONS) if s]
    title = f"gate {TITLES[report.verdict]}: {report.summary}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>"
        + _header(report)
        + "<main>"
        + _nav(sections)
        + "\n".join(sections)
        + _footer(report)
        + "</main></body></html>\n"
    )
