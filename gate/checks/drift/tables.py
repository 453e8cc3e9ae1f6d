"""Tables: the summary line, the per-layer tables and the chart of a drift result."""
from __future__ import annotations

import math
from typing import Any

from gate.checks.base import ROLES
from gate.checks.drift.rules import _fmt, _r
from gate.report.model import Chart, Finding, Table

_CHART_LAYERS = 10


_CLASS_NOTES = {"by_name": "columns matched by class name", "by_position": "class columns by position"}


def drift_summary(
    figures: list[dict[str, Any]], first: dict[str, Any] | None, per_layer: list[list[Finding]], *,
    classes: str | None = None,
) -> str:
    """`classes`: how the run matched the classes (ClassAlignment.describe()), said of the output layer."""
    n = len(figures)
    by_name = [f["layer"] for f in figures if f.get("class_columns") == "by_name"]
    if first is None:
        worst = min(
            (f for f in figures if f["cosine"] is not None), key=lambda f: f["cosine"]["mean"], default=None
        )
        tail = f"; lowest mean cosine {_fmt(worst['cosine']['mean'])} at {worst['layer']}" if worst else ""
        named = f"; {', '.join(by_name)}: {_CLASS_NOTES['by_name']}" if by_name else ""
        return f"{n} layers compared, all within the drift thresholds{tail}{named}"
    idx = figures.index(first)
    bad = next(f for f in per_layer[idx] if f.status != "pass")
    others = sum(1 for f in figures if f["status"] != "pass") - 1
    more = (f"; {others} later layer{'s also breach' if others != 1 else ' also breaches'}") if others else ""
    how = first.get("class_columns")
    why = f" ({_CLASS_NOTES[how]}{': ' + classes if how == 'by_position' and classes else ''})" if how else ""
    return f"drift starts at {first['layer']} (layer {idx + 1} of {n}){why}: {bad.reason.split(': ', 1)[1]}{more}"

def drift_table(figures: list[dict[str, Any]], first: dict[str, Any] | None, *, percentile: float) -> Table:
    p = percentile
    rows = []
    for i, f in enumerate(figures, 1):
        wb, wc = f["baseline"]["width"], f["candidate"]["width"]
        cos, rel, sq = f["cosine"] or {}, f["rel_l2"] or {}, f["sqnr_db"] or {}
        rows.append((
            i, f["layer"], str(wb) if wb == wc else f"{wb}->{wc}",
            _r(cos.get("mean")), _r(cos.get("tail")), _r(rel.get("mean")), _r(rel.get("tail")),
            _r(sq.get("pooled")), _r(f["psi"]), _r(f["cka"]),
            f["baseline"]["nan"] + f["baseline"]["inf"] + f["candidate"]["nan"] + f["candidate"]["inf"],
            f["status"], "; ".join(note for note in ("drift starts here" if f is first else "",
                                                     _CLASS_NOTES.get(f.get("class_columns") or "", "")) if note),
        ))
    headers = (
        "#", "layer", "width", "cosine mean", f"cosine p{_fmt(p)}", "rel L2 mean", f"rel L2 p{_fmt(100 - p)}",
        "SQNR dB", "PSI", "CKA", "NaN/Inf", "status", "note",
    )
    return Table(title="Activation drift per layer (forward order)", headers=headers, rows=tuple(rows))

def stats_table(figures: list[dict[str, Any]]) -> Table:
    rows = []
    for f in figures:
        row: list[Any] = [f["layer"]]
        for role in ROLES:
            s = f[role]
            row.extend([_r(s["mean"]), _r(s["std"]), _r(s["min"]), _r(s["max"]), _r(s["dead_fraction"])])
        rows.append(tuple(row))
    headers = ("layer",) + tuple(
        f"{role} {k}" for role in ROLES for k in ("mean", "std", "min", "max", "dead")
    )
    return Table(title="Activation statistics (baseline, candidate)", headers=headers, rows=tuple(rows))

def drift_charts(figures: list[dict[str, Any]]) -> tuple[Chart, ...]:
    scored = []
    for f in figures:
        if f["cosine"] is not None:
            drift = 1.0 - f["cosine"]["mean"]
        elif f["cka"] is not None:
            drift = 1.0 - f["cka"]
        else:
            continue
        scored.append((drift if math.isfinite(drift) else 2.0, f["layer"]))
    top = sorted(scored, key=lambda s: -s[0])[:_CHART_LAYERS]
    if not top:
        return ()
    return (Chart(
        title="Top drifting layers: 1 - mean cosine, or 1 - CKA where widths differ",
        labels=tuple(name for _, name in top),
        values=tuple(float(v) for v, _ in top),
        y_label="drift",
    ),)
