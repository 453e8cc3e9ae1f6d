"""Behavioural cases (CheckList's minimum functionality, invariance and directional tests) from a cases file.

    cases:
      - {id: neg-1, type: mft, text: "not good at all", expected: negative, tags: [negation]}
      - {id: inv-1, type: inv, texts: ["I loved it.", "I loved it, honestly."], tags: [filler]}
      - {id: dir-1, type: dir, text: "good", perturbed: "very good", class: positive, direction: up}

mft: the prediction must be `expected`; inv: every text of the group must get the same prediction; dir: the
probability of `class` must move `direction` (up: perturbed - original >= min_change, default 0; down: the
reverse). The gate fails when the candidate breaks a case the baseline passes, unless each of the case's tags has
a limit (`checks.tags.<tag>.max_fail_rate`), which then decides. The texts are scored after the pass, batched
through the same models and the same encoder the data was tokenized with (as latency re-runs kept samples): no
second model or tokenizer load. The cases file is policy, read as data (YAML safe loader, JSON): nothing in it
runs, and its text is escaped in every report.

Sharded (gate.sharding), the cases are scored once, by the shard that reads batch 0 (torchrun's rank 0, the job of
`--shard 1/N`), when its state is taken: it hands on every case and its texts' probabilities as `rows.` state
(the other shards add no rows), so `gate merge`, which loads no model and needs no cases file, decides from them
exactly as the single run does.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.checks.base import ROLES, Check, RunContext
from gate.errors import ConfigError
from gate.report.escape import plain_text
from gate.report.model import CheckResult, Finding, Table
from gate.verdict import check_summary, decision_settings, judge

TYPES = ("mft", "inv", "dir")
KEYS = {
    "mft": {"id", "type", "tags", "text", "expected"},
    "inv": {"id", "type", "tags", "texts"},
    "dir": {"id", "type", "tags", "text", "perturbed", "class", "direction", "min_change"},
}
MAX_CASES = 10_000
MAX_CASES_BYTES = 4 << 20
TEXT_CHARS = 120            # characters of a case's text in the report


@dataclass(frozen=True)
class Case:
    id: str
    type: str                               # mft | inv | dir
    texts: tuple[str, ...]                  # mft: (text,); inv: the group; dir: (text, perturbed)
    tags: tuple[str, ...] = ()
    label: str | None = None                # mft: the expected class; dir: the class whose score must move
    direction: str = "up"
    min_change: float = 0.0
    where: str = ""                         # "cases.yaml: cases[3]" / "cases.jsonl: line 4"


@dataclass(frozen=True)
class Outcome:
    """One model on one case: passed or not, and what it predicted (class, confidence per text)."""

    passed: bool
    predictions: tuple[tuple[str, float], ...]
    change: float | None = None             # dir: the class probability's change, perturbed - original

    def shown(self) -> str:
        preds = " / ".join(f"{plain_text(c)} {p:.2f}" for c, p in self.predictions)
        return preds + (f" (change {self.change:+.3f})" if self.change is not None else "")


# ---------------------------------------------------------------------------------------------- the file


def cases_path(option: str, *, config_source: str | None) -> Path:
    """A relative `checks.cases.file` is relative to the config file's directory (the cwd without one)."""
    path = Path(option)
    if not path.is_absolute() and config_source and config_source != "options" and os.path.isfile(config_source):
        path = Path(config_source).parent / path
    return path


def load_cases(path: Path, *, where: str) -> list[Case]:
    """Parse and check a cases file: ConfigError naming the file and the case for anything wrong."""
    from gate.files import LINK_OUT, link_escape

    if link_escape(path) is not None:       # never parsed, so no error quotes what the link points at
        raise ConfigError(f"{where}: {path}: {LINK_OUT}")
    if not path.is_file():
        raise ConfigError(f"{where}: {path}: no such cases file")
    if path.stat().st_size > MAX_CASES_BYTES:
        raise ConfigError(f"{where}: {path}: the cases file has {path.stat().st_size} bytes; at most "
                          f"{MAX_CASES_BYTES} are read")
    raw: list[tuple[str, Any]]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        raw = _jsonl_cases(path, where=where)
    else:
        from gate.config import read_config_file

        try:
            data = read_config_file(path)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err
        items = data.get("cases")
        extra = sorted(set(data) - {"cases"})
        if extra:
            raise ConfigError(f"{where}: {path}: unknown top-level key {extra[0]!r}; a cases file holds `cases:`, "
                              "a list of cases")
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{where}: {path}: expected `cases:` with a list of at least one case")
        raw = [(f"{path}: cases[{i}]", item) for i, item in enumerate(items)]
    if len(raw) > MAX_CASES:
        raise ConfigError(f"{where}: {path}: {len(raw)} cases; at most {MAX_CASES} are run")
    cases = [_case(item, where=f"{where}: {loc}") for loc, item in raw]
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise ConfigError(f"{case.where}: id {case.id!r} is used twice (first at {seen[case.id]})")
        seen[case.id] = case.where
    return cases


def _jsonl_cases(path: Path, *, where: str) -> list[tuple[str, Any]]:
    out = []
    with path.open("rb") as fh:
        for line, blob in enumerate(fh, start=1):
            try:
                text = blob.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"{where}: {path}: line {line}: not valid UTF-8 ({err.reason})") from err
            if not text.strip():
                continue
            try:
                out.append((f"{path}: line {line}", json.loads(text)))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{where}: {path}: line {line}: malformed JSON: {err.msg}") from err
    if not out:
        raise ConfigError(f"{where}: {path}: no cases (the file has no lines)")
    return out


def _text(value: Any, *, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key}: expected a non-empty string of text, found {value!r}"[:300])
    return value


def _case(item: Any, *, where: str) -> Case:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping (id, type, ...), found {type(item).__name__}")
    kind = item.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}: type: expected one of {', '.join(TYPES)}, found {kind!r}")
    unknown = sorted(set(item) - KEYS[kind])
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(KEYS[kind]), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else f" (a {kind} case has {', '.join(sorted(KEYS[kind]))})"
        raise ConfigError(f"{where}: {unknown[0]}: unknown key{hint}")
    case_id = item.get("id")
    if isinstance(case_id, bool) or not isinstance(case_id, (str, int)) or str(case_id).strip() == "":
        raise ConfigError(f"{where}: id: expected a string or an integer, found {case_id!r}")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"{where}: tags: expected a list of names, found {tags!r}")
    where = f"{where} (id {plain_text(case_id, limit=60)})"
    common = {"id": str(case_id), "type": kind, "tags": tuple(dict.fromkeys(tags)), "where": where}
    if kind == "mft":
        if "expected" not in item:
            raise ConfigError(f"{where}: expected: missing (the class an mft case must be given)")
        return Case(texts=(_text(item.get("text"), where=where, key="text"),), label=_label(item["expected"]),
                    **common)
    if kind == "inv":
        texts = item.get("texts")
        if not isinstance(texts, list) or len(texts) < 2:
            found = "an empty group" if texts == [] else repr(texts)[:80]
            raise ConfigError(f"{where}: texts: an invariance case needs a group of at least two texts, found {found}")
        return Case(texts=tuple(_text(t, where=where, key=f"texts[{i}]") for i, t in enumerate(texts)), **common)
    direction = item.get("direction", "up")
    if direction not in ("up", "down"):
        raise ConfigError(f"{where}: direction: expected up or down, found {direction!r}")
    min_change = item.get("min_change", 0.0)
    if isinstance(min_change, bool) or not isinstance(min_change, (int, float)) or not 0 <= min_change <= 1:
        raise ConfigError(f"{where}: min_change: expected a number from 0 to 1, found {min_change!r}")
    if "class" not in item:
        raise ConfigError(f"{where}: class: missing (the class whose score the perturbation must move)")
    return Case(texts=(_text(item.get("text"), where=where, key="text"),
                       _text(item.get("perturbed"), where=where, key="perturbed")),
                label=_label(item["class"]), direction=direction, min_change=float(min_change), **common)


def _label(value: Any) -> str:
    return str(value) if not isinstance(value, bool) else repr(value)


def check_labels(cases: list[Case], class_names: tuple[str, ...]) -> None:
    """Every expected / named class is one of the run's classes (by name, or an index written as an integer)."""
    for case in cases:
        if case.label is not None and class_index(case.label, class_names) is None:
            key = "expected" if case.type == "mft" else "class"
            raise ConfigError(f"{case.where}: {key}: unknown label {plain_text(case.label, limit=60)!r} "
                              f"(classes: {', '.join(class_names[:20])})")


def class_index(label: str, class_names: tuple[str, ...]) -> int | None:
    if label in class_names:
        return class_names.index(label)
    if label.lstrip("-").isdigit() and 0 <= int(label) < len(class_names):
        return int(label)
    return None


# --------------------------------------------------------------------------------------------- the check


class CasesCheck(Check):
    name = "cases"
    sharding = "merge"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        super().__init__(options, ctx)
        self.cases: list[Case] = []
        self.where = ctx.config.where("checks.cases.file")
        self._reads_batch_0 = False
        self._scored: tuple[list[str], dict[str, Any]] | None = None   # texts and their probabilities, from state

    def update(self, step: Any) -> None:
        if step.index == 0:
            self._reads_batch_0 = True

    def state(self) -> dict[str, Any]:
        """The shard that read batch 0 scores every case's texts here; the others add no rows."""
        import numpy as np

        k = len(self.ctx.class_names)
        texts: list[str] = []
        cases: list[Case] = []
        probs = {role: np.zeros((0, k)) for role in ROLES}
        if self._reads_batch_0:
            cases = self.cases
            texts = list(dict.fromkeys(t for c in cases for t in c.texts))
            probs = self._probabilities(texts)
        out: dict[str, Any] = {
            "texts.rows.index": np.arange(len(texts), dtype=np.int64),
            "texts.rows.text": texts,
            "cases.rows.index": np.arange(len(cases), dtype=np.int64),
            "cases.rows.case": [json.dumps(dataclasses.asdict(c), sort_keys=True) for c in cases],
        }
        for role in ROLES:
            out[f"texts.rows.{role}"] = np.asarray(probs[role], dtype=np.float64).reshape(len(texts), k)
        return out

    def load_state(self, merged: dict[str, Any]) -> None:
        """The cases and their texts' probabilities from the shard that scored them."""
        import numpy as np

        texts = merged["texts.rows.text"]
        k = len(self.ctx.class_names)
        probs = {role: np.asarray(merged[f"texts.rows.{role}"]) for role in ROLES}
        if any(p.shape != (len(texts), k) for p in probs.values()) or not all(isinstance(t, str) for t in texts):
            raise ValueError("cases state: one row of class probabilities per text expected")
        cases = []
        for raw in merged["cases.rows.case"]:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("cases state: a case is not an object")
            item["texts"], item["tags"] = tuple(item["texts"]), tuple(item["tags"])
            cases.append(Case(**item))
        if not cases:
            raise ValueError("cases state: no shard scored the cases (the shard that reads batch 0 does)")
        missing = {t for c in cases for t in c.texts} - set(texts)
        if missing:
            raise ValueError(f"cases state: {len(missing)} case texts have no probabilities")
        self.cases = cases
        # float32, as the models' probabilities were: the same figures as the single run's, to the bit
        self._scored = (list(texts), {role: p.astype(np.float32) for role, p in probs.items()})

    def setup(self) -> None:
        option = self.options.get("file")
        if not option:
            raise ConfigError(f"{self.where}: the cases check is enabled but names no cases file")
        self.cases = load_cases(cases_path(option, config_source=self.ctx.config.source), where=self.where)
        tags = {t for c in self.cases for t in c.tags}
        for tag in self.options.get("tags") or {}:
            if tag not in tags:
                close = difflib.get_close_matches(tag, sorted(tags), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{self.ctx.config.where(f'checks.cases.tags.{tag}')}: no case has this tag{hint}")
        if self.ctx.class_names:
            check_labels(self.cases, tuple(self.ctx.class_names))
        if self.ctx.extras.get("encoder") is None:
            raise ConfigError(f"{self.where}: cases are texts, but this run has no text encoder (its data is not "
                              "JSONL / CSV text tokenized by the model's or data.tokenizer's tokenizer)")

    def _probabilities(self, texts: list[str]) -> dict[str, Any]:
        """role -> (N, K) class probabilities of `texts`, batched through the run's encoder and models."""
        import torch

        from gate.flipped import confidences
        from gate.forward import forward_output, move_to, scores_of

        encoder = self.ctx.extras["encoder"]
        size = int(self.options.get("batch_size") or 64)
        parts: dict[str, list[Any]] = {role: [] for role in ROLES}
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            inputs = move_to(encoder(chunk, where=f"{self.where}: cases {start}-{start + len(chunk) - 1}"),
                             self.ctx.device)
            for role in ROLES:
                model = self.ctx.models[role]
                scores = scores_of(model, forward_output(model, inputs))
                parts[role].append(confidences(scores, model.output).cpu())
        return {role: torch.cat(p).numpy() for role, p in parts.items()}

    def _outcome(self, case: Case, probs: Any, rows: dict[str, int]) -> Outcome:
        names = tuple(self.ctx.class_names)
        got = [probs[rows[t]] for t in case.texts]
        preds = tuple((names[int(p.argmax())], float(p.max())) for p in got)
        if case.type == "mft":
            return Outcome(passed=preds[0][0] == names[class_index(case.label, names)], predictions=preds)
        if case.type == "inv":
            return Outcome(passed=len({c for c, _ in preds}) == 1, predictions=preds)
        k = class_index(case.label, names)
        change = float(got[1][k] - got[0][k])
        signed = change if case.direction == "up" else -change
        return Outcome(passed=signed >= case.min_change - 1e-9, predictions=preds, change=change)

    def compute(self) -> CheckResult:
        names = tuple(self.ctx.class_names)
        check_labels(self.cases, names)
        if self._scored is not None:
            texts, probs = self._scored
        else:
            texts = list(dict.fromkeys(t for c in self.cases for t in c.texts))
            probs = self._probabilities(texts)
        rows = {t: i for i, t in enumerate(texts)}
        results = [(c, self._outcome(c, probs["baseline"], rows), self._outcome(c, probs["candidate"], rows))
                   for c in self.cases]
        settings = dataclasses.replace(decision_settings(self.ctx.config, self.options), mode="point")
        limits = {tag: float(v["max_fail_rate"]) for tag, v in (self.options.get("tags") or {}).items()}
        findings: list[Finding] = []
        broken = [(c, b, k) for c, b, k in results if b.passed and not k.passed]
        for case, base, cand in broken:
            if case.tags and all(t in limits for t in case.tags):
                continue            # its tags' limits decide
            f = judge(metric=f"case[{plain_text(case.id, limit=60)}]", rule="max", threshold=0.0, value=1.0,
                      settings=settings, where=plain_text(case.id, limit=60))
            findings.append(dataclasses.replace(f, reason=(
                f"case {plain_text(case.id, limit=60)} ({case.type}{self._tags(case)}) is broken: the baseline passes "
                f"it, the candidate does not: {self._expectation(case)}; baseline {base.shown()}, candidate "
                f"{cand.shown()}")))
        tag_rows = []
        for tag in sorted({t for c in self.cases for t in c.tags}):
            mine = [(c, b, k) for c, b, k in results if tag in c.tags]
            fails = sum(not k.passed for _, _, k in mine)
            base_fails = sum(not b.passed for _, b, _ in mine)
            tag_broken = sum(b.passed and not k.passed for _, b, k in mine)
            if tag in limits:
                f = judge(metric=f"fail_rate[{plain_text(tag, limit=60)}]", rule="max", threshold=limits[tag],
                          value=fails / len(mine), settings=settings, where=plain_text(tag, limit=60))
                ids = [plain_text(c.id, limit=40) for c, b, k in mine if b.passed and not k.passed]
                if ids:
                    f = dataclasses.replace(f, reason=f.reason + f" (broken: {', '.join(ids[:10])}"
                                            f"{', ...' if len(ids) > 10 else ''})")
                findings.append(f)
            tag_rows.append((plain_text(tag, limit=60), len(mine), base_fails, fails, tag_broken,
                             "" if tag not in limits else limits[tag]))
        fixed = sum(not b.passed and k.passed for _, b, k in results)
        both = sum(not b.passed and not k.passed for _, b, k in results)
        status, summary = check_summary(self.name, findings, passed=(
            f"{len(results)} cases: none the baseline passes is broken by the candidate"
            + (f" ({len(broken)} broken within their tags' limits)" if broken else "")
            + f"; {fixed} fixed, {both} failed by both"))
        tables = [Table(
            title="Broken cases (the baseline passes, the candidate does not)",
            headers=("id", "type", "tags", "expectation", "baseline", "candidate", "text"),
            rows=tuple((plain_text(c.id, limit=60), c.type, ", ".join(c.tags), self._expectation(c), b.shown(),
                        k.shown(), plain_text(" | ".join(c.texts), limit=TEXT_CHARS)) for c, b, k in broken),
        )] if broken else []
        if tag_rows:
            tables.append(Table(title="Cases by tag", headers=("tag", "cases", "baseline fails", "candidate fails",
                                                               "broken", "max fail rate"), rows=tuple(tag_rows)))
        return CheckResult(
            name=self.name, status=status, summary=summary, findings=tuple(findings), tables=tuple(tables),
            details={
                "file": str(self.options.get("file")),
                "cases": len(results),
                "broken": len(broken),
                "fixed": fixed,
                "failed_by_both": both,
                "results": [
                    {"id": c.id, "type": c.type, "tags": list(c.tags), "baseline_pass": b.passed,
                     "candidate_pass": k.passed,
                     "baseline": [{"prediction": p, "confidence": q} for p, q in b.predictions],
                     "candidate": [{"prediction": p, "confidence": q} for p, q in k.predictions],
                     "baseline_change": b.change, "candidate_change": k.change}
                    for c, b, k in results
                ],
            },
        )

    @staticmethod
    def _tags(case: Case) -> str:
        return f", tags {', '.join(plain_text(t, limit=40) for t in case.tags)}" if case.tags else ""

    @staticmethod
    def _expectation(case: Case) -> str:
        if case.type == "mft":
            return f"expected {plain_text(case.label, limit=60)}"
        if case.type == "inv":
            return f"the same prediction for all {len(case.texts)} texts"
        return (f"{plain_text(case.label, limit=60)} probability {case.direction}"
                + (f" by at least {case.min_change:g}" if case.min_change else ""))
