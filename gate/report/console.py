"""The console report: a compact table per check, failures first, and a one-line verdict."""
from __future__ import annotations

from tabulate import tabulate

from gate.report.escape import plain_text
from gate.report.model import (
    STATUS_ORDER,
    FlipExample,
    FlipExamples,
    Finding,
    ModelInfo,
    Report,
    comparison_items,
    metric_rows,
    width_phrase,
)

ICON = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def _num(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "" if x is None else str(x)


def finding_label(f: Finding) -> str:
    """The metric, with where it happened when the name does not already say it (drift layers, latency sizes)."""
    return f.metric if not f.where or f.where in f.metric else f"{f.metric} @ {f.where}"


def model_facts(model: ModelInfo) -> str:
    """'float16 (as shipped), logits': how a model ran, for the console and Markdown headers."""
    parts = []
    if model.dtype:
        shipped = model.checkpoint_dtype
        parts.append(model.dtype + (" (as shipped)" if shipped in (None, model.dtype) and not model.cast
                                    else f" (shipped as {shipped})" if shipped and shipped != model.dtype
                                    else " (cast on load)"))
    if model.output:
        parts.append(f"output read as {model.output}")
    return ", ".join(parts) or "-"


#: Flipped examples the console shows per kind (the JSON report carries up to its cap).
CONSOLE_EXAMPLES = 3
CONSOLE_TEXT_CHARS = 100


def flip_line(e: FlipExample, *, text_chars: int = CONSOLE_TEXT_CHARS) -> str:
    """'#12 label negative: baseline negative 0.91 -> candidate positive 0.62 "text..."' (text inert: plain_text)."""
    text = f' "{plain_text(e.text, limit=text_chars)}"' if e.text is not None else ""
    return (f"#{e.index} label {plain_text(e.label)}: baseline {plain_text(e.baseline)} {e.baseline_confidence:.2f} "
            f"-> candidate {plain_text(e.candidate)} {e.candidate_confidence:.2f}{text}")


def flip_lines(examples: FlipExamples | None, *, shown: int = CONSOLE_EXAMPLES) -> list[str]:
    if examples is None or not (examples.negative or examples.positive):
        return []
    lines = []
    for kind, kept, total, what in (("negative", examples.negative, examples.negative_total, "baseline right, candidate wrong"),
                                    ("positive", examples.positive, examples.positive_total, "baseline wrong, candidate right")):
        if kept[:shown]:
            lines.append(f"{kind} flips ({what}): {total}; the most confident {len(kept[:shown])}:")
            lines += ["  " + flip_line(e) for e in kept[:shown]]
    return lines


def headline_lines(report: Report) -> list[str]:
    """The metrics block in a line or a few: accuracy and flips (classification), else each figure of the task
    check's metrics() (baseline, candidate, delta) and its comparison figures."""
    m = report.metrics
    if report.task == "classification":
        return [
            f"accuracy: baseline {m['baseline']['accuracy']:.4f}  candidate {m['candidate']['accuracy']:.4f}  "
            f"negative flips {m['comparison']['negative_flips']}  agreement {m['comparison']['agreement']:.4f}"
        ]
    lines = [f"{name}: baseline {_num(b)}  candidate {_num(c)}  delta {d:+.4g}" for name, b, c, d in metric_rows(m)]
    compared = comparison_items(m)
    if compared:
        lines.append("comparison: " + "  ".join(f"{name} {_num(v)}" for name, v in compared))
    return lines


def render_console(report: Report, *, verbose: bool = False) -> str:
    # The data cannot decide a threshold: say so before anything else, or a warning reads like a pass.
    lines: list[str] = [f"POWER: {p.note}" for p in report.power]
    if lines:
        lines.append("")
    base, cand = report.models
    task = report.task
    lines.append(f"gate {report.gate_version}: candidate {cand.path} [{cand.format}] vs baseline {base.path} [{base.format}]"
                 + ("" if task == "classification" else f", task {task}"))
    lines.append(f"data: {report.data.path} [{report.data.format}], {report.data.num_samples} samples, "
                 f"{width_phrase(task, len(report.class_names))}")
    if any(m.dtype or m.output for m in report.models):
        lines.append("models: " + "; ".join(f"{m.role} {model_facts(m)}" for m in (base, cand)))
    for note in report.notes:
        lines.append(f"note: {note}")
    lines += headline_lines(report)
    lines += flip_lines(report.examples)
    lines.append("")
    rows = [
        (ICON[c.status], c.name, c.summary)
        for c in sorted(report.checks, key=lambda c: STATUS_ORDER[c.status])
    ]
    lines.append(tabulate(rows, headers=("status", "check", "why"), tablefmt="simple", maxcolwidths=[None, None, 100]))
    for check in sorted(report.checks, key=lambda c: STATUS_ORDER[c.status]):
        bad = [f for f in check.findings if f.status in ("fail", "warn")]
        if not bad and not verbose and not check.notes:
            continue
        lines.append("")
        lines.append(f"[{check.name}]")
        if bad or verbose:
            shown = check.findings if verbose else bad
            lines.append(tabulate(
                [(ICON[f.status] + ("?" if f.inconclusive else ""), finding_label(f), f.rule, _num(f.threshold), _num(f.value),
                  _num(f.baseline), _num(f.candidate), _num(f.margin),
                  "" if f.interval is None else f"[{f.interval[0]:.4g}, {f.interval[1]:.4g}]",
                  "" if f.p_value is None else f"{f.p_value:.3g}")
                 for f in sorted(shown, key=lambda f: STATUS_ORDER[f.status])],
                headers=("status", "metric", "rule", "threshold", "value", "baseline", "candidate", "margin", "interval",
                         "p beyond"),
                tablefmt="simple",
            ))
        for note in check.notes:
            lines.append(f"note: {note}")
        if verbose:
            for table in check.tables:
                lines.append(table.title)
                lines.append(tabulate(table.rows, headers=table.headers, tablefmt="simple"))
    lines.append("")
    lines.append(f"verdict: {report.summary}  (exit {report.exit_code})")
    return "\n".join(lines) + "\n"
