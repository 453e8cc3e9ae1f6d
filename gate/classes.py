"""Which candidate column is which baseline class: when both models name their classes, they are matched by name.

The baseline's column order is the run's class order (the report's, and the one data labels given as names map
to); the candidate's columns are reordered to it before anything is compared. No torch here.

    names = role_names(config, models)                      # per role: (names, where they came from)
    alignment = align_classes(names["baseline"], names["candidate"], class_map=config.class_map, where=...)
    alignment.columns                                       # (2, 0, 1): candidate column for each baseline class
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gate.errors import ConfigError, ModelError

_GENERIC = re.compile(r"LABEL_(\d+)")
_SHOWN = 8


@dataclass(frozen=True)
class RoleNames:
    """One model's class names in its own column order, and where they came from."""

    names: tuple[str, ...] | None     # None: nobody names this model's classes
    source: str | None                # "id2label" or "model.<role>.class_names"
    generic: bool = False             # LABEL_0, LABEL_1, ...: placeholders, not names


@dataclass(frozen=True)
class ClassAlignment:
    """The run's classes (baseline order) and where each one is among the candidate's columns."""

    names: tuple[str, ...] | None               # the run's class names; None: "0".."K-1" once K is known
    columns: tuple[int, ...] | None             # candidate column of each baseline class; None: same positions
    baseline: RoleNames
    candidate: RoleNames
    renamed: tuple[tuple[str, str], ...] = ()   # class_map pairs (candidate name, baseline name) that applied
    by_name: bool = False                       # both models name their classes and were matched by name
    warnings: tuple[str, ...] = ()              # e.g. generic names against real ones: compared by position

    def describe(self) -> str:
        """One sentence for the report: how the candidate's columns were matched to the baseline's."""
        if not self.by_name:
            if self.warnings:
                return self.warnings[0]
            return "classes compared by position" + _who_names(self.baseline, self.candidate)
        renamed = f"; renamed by class_map: {', '.join(f'{c} -> {b}' for c, b in self.renamed)}" if self.renamed else ""
        by_config = self.baseline.names is None or self.baseline.generic     # class_names named the baseline's
        if self.columns is None:
            if by_config:
                return ("the candidate names its classes as class_names names the baseline's, in the same order"
                        f"{renamed}")
            return f"both models name their classes the same, in the same order{renamed}"
        assert self.names is not None and self.candidate.names is not None
        moved = [f"{self.candidate.names[c]!r} column {c} -> {i}" for i, c in enumerate(self.columns) if c != i]
        to = "class_names' order (the baseline names none itself)" if by_config else "the baseline's"
        return f"the candidate's columns were reordered to {to} by name ({_few(moved)}){renamed}"


#: Characters no class name may hold: C0/C1 controls (a newline would start a new line in a CI log, where
#: `::error::` at a line's start is a workflow command, and ESC a terminal sequence), line and paragraph separators,
#: and the bidi controls that reorder what a reader sees. Names are printed in every report and log.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def unprintable_name(names: Any) -> tuple[int, str] | None:
    """(position, name) of the first name holding a control, separator or bidi character, or None."""
    for i, name in enumerate(names or ()):
        if _UNPRINTABLE.search(str(name)):
            return i, str(name)
    return None


def _refuse_unprintable(names: Any, *, where: str, error: type[ConfigError] | type[ModelError]) -> None:
    found = unprintable_name(names)
    if found is not None:
        i, name = found
        char = _UNPRINTABLE.search(name).group()      # type: ignore[union-attr]
        raise error(f"{where}: class {i} ({name!r}) holds the character {char!r} (U+{ord(char):04X}): class names are "
                    "printed in reports and CI logs and must be plain text")


def is_generic(names: tuple[str, ...] | None) -> bool:
    """LABEL_0, LABEL_1, ... in index order: what transformers writes when nobody named the classes."""
    return bool(names) and all(
        (m := _GENERIC.fullmatch(name)) is not None and int(m.group(1)) == i for i, name in enumerate(names)
    )


def model_names(model: Any) -> RoleNames:
    """The names a loaded model carries (a Hugging Face config's id2label); generic ones are marked as such.
    ModelError when a name is not plain text (`unprintable_name`)."""
    where = f"{getattr(model, 'path', None) or 'model'}: id2label"
    if model.class_names:
        _refuse_unprintable(model.class_names, where=where, error=ModelError)
        return RoleNames(tuple(model.class_names), "id2label")
    config = getattr(getattr(model, "module", None), "config", None)
    id2label = getattr(config, "id2label", None) if model.format == "huggingface" else None
    if id2label:
        try:
            names = tuple(str(id2label[i]) for i in sorted(int(k) for k in id2label))
        except (TypeError, ValueError, KeyError):
            return RoleNames(None, None)
        _refuse_unprintable(names, where=where, error=ModelError)
        if is_generic(names):
            return RoleNames(names, "id2label", generic=True)
    return RoleNames(None, None)


def role_names(config: Any, models: Mapping[str, Any]) -> dict[str, RoleNames]:
    """Per role: model.<role>.class_names, else the model's own names (the top-level class_names names no model)."""
    out = {}
    for role, model in models.items():
        configured = (config.model.get(role) or {}).get("class_names")
        if configured:
            names = tuple(configured)
            _refuse_unprintable(names, where=config.where(f"model.{role}.class_names"), error=ConfigError)
            out[role] = RoleNames(names, f"model.{role}.class_names", generic=is_generic(names))
        else:
            out[role] = model_names(model)
    return out


def align_classes(
    baseline: RoleNames,
    candidate: RoleNames,
    *,
    class_map: Mapping[str, str] | None = None,
    top_level: tuple[str, ...] | None = None,
    where: Any = None,
) -> ClassAlignment:
    """Match the candidate's classes to the baseline's. ConfigError when the names cannot be matched.

    `where(key)` turns a key path into 'gate.yaml: key' for messages. `top_level` is config.class_names: when the
    baseline names its classes itself, it must name the same classes; when it does not, `top_level` names the
    baseline's columns, and a candidate that names its classes is matched to them by name.

    The run's classes are the baseline's, named by the baseline itself or by the config; never by the candidate
    alone: a candidate's id2label is part of the change under test, and letting it name the baseline's columns
    would let it decide what the baseline's outputs (and the data's labels given as names) mean.
    """
    at = where or (lambda key: key)
    class_map = dict(class_map or {})
    _refuse_unprintable(top_level, where=at("class_names"), error=ConfigError)
    b_real = baseline.names is not None and not baseline.generic
    c_real = candidate.names is not None and not candidate.generic
    if top_level and b_real and set(top_level) != set(baseline.names or ()):
        raise ConfigError(
            f"{at('class_names')}: {_list(top_level)} are not the classes the baseline names ({baseline.source}: "
            f"{_list(baseline.names)}); name a model's classes with model.baseline.class_names / "
            "model.candidate.class_names instead"
        )
    own = baseline                      # the baseline's own names, as the report shows them
    if top_level and not b_real:        # the config names the baseline's columns
        baseline, b_real = RoleNames(tuple(top_level), "class_names"), True
    if class_map:
        _check_class_map(class_map, baseline, candidate, at)
    if not (b_real and c_real):
        names = baseline.names if b_real else None
        warnings = ()
        if b_real != c_real and (baseline.generic or candidate.generic):
            real, generic = ("baseline", "candidate") if b_real else ("candidate", "baseline")
            real_names = baseline if b_real else candidate
            generic_names = candidate if b_real else baseline
            named_by = ("class_names names the baseline's" if real_names.source == "class_names"
                        else f"the {real} by name")
            warnings = (
                f"the {generic} names its classes generically ({_list(generic_names.names)}) and {named_by} "
                f"({_list(real_names.names)}): classes compared by position; name the {generic}'s classes "
                f"(its id2label, or model.{generic}.class_names) to compare them by name",
            )
        return ClassAlignment(names, None, own, candidate, warnings=warnings)
    assert baseline.names is not None and candidate.names is not None
    for role, names in (("baseline", baseline), ("candidate", candidate)):
        doubled = sorted({n for n in names.names or () if (names.names or ()).count(n) > 1})
        if doubled:
            raise ConfigError(f"{at(names.source or 'class_names')}: the {role} names two classes {_list(doubled)}")
    mapped = tuple(class_map.get(name, name) for name in candidate.names)
    doubled = sorted({n for n in mapped if mapped.count(n) > 1})
    if doubled:
        raise ConfigError(f"{at('class_map')}: two candidate classes map to the same baseline class {_list(doubled)}")
    only_b = [n for n in baseline.names if n not in mapped]
    only_c = [c for c, m in zip(candidate.names, mapped) if m not in baseline.names]
    if only_b or only_c:
        raise ConfigError(
            f"the models name different classes: only the baseline has {_list(only_b) if only_b else 'none'}, only "
            f"the candidate has {_list(only_c) if only_c else 'none'} (baseline {baseline.source}: {_list(baseline.names)}; "
            f"candidate {candidate.source}: {_list(candidate.names)}); if a class was renamed, map it with "
            f"class_map: {{candidate name: baseline name}} in gate.yaml"
        )
    columns = tuple(mapped.index(name) for name in baseline.names)
    renamed = tuple((c, m) for c, m in zip(candidate.names, mapped) if c != m)
    identity = columns == tuple(range(len(columns)))
    return ClassAlignment(tuple(baseline.names), None if identity else columns, own, candidate,
                          renamed=renamed, by_name=True)


def _check_class_map(class_map: Mapping[str, str], baseline: RoleNames, candidate: RoleNames, at: Any) -> None:
    for role, names in (("candidate", candidate), ("baseline", baseline)):
        if names.names is None or names.generic:
            raise ConfigError(
                f"{at('class_map')}: maps candidate class names to baseline class names, but the {role} does not "
                f"name its classes; name them (id2label, or model.{role}.class_names)"
            )
    assert candidate.names is not None and baseline.names is not None
    for key, value in class_map.items():
        if key not in candidate.names:
            raise ConfigError(f"{at(f'class_map.{key}')}: {key!r} is not one of the candidate's classes "
                              f"({_list(candidate.names)})")
        if value not in baseline.names:
            raise ConfigError(f"{at(f'class_map.{key}')}: {value!r} is not one of the baseline's classes "
                              f"({_list(baseline.names)})")


def _who_names(baseline: RoleNames, candidate: RoleNames) -> str:
    real = [role for role, n in (("baseline", baseline), ("candidate", candidate)) if n.names and not n.generic]
    if real == ["candidate"]:
        return (": only the candidate names its classes; its names do not name the run's classes, the baseline's "
                "columns 0..K-1 (name those with model.baseline.class_names or class_names to compare by name)")
    if real:
        return f": only the {real[0]} names its classes"
    if baseline.generic and candidate.generic:
        return ": both models name their classes generically (LABEL_0, LABEL_1, ...)"
    return ": neither model names its classes"


def _list(names: Any) -> str:
    names = list(names or ())
    shown = ", ".join(names[:_SHOWN])
    return "[" + shown + (f", ... {len(names) - _SHOWN} more" if len(names) > _SHOWN else "") + "]"


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:4])
    return shown + (f", ... {len(items) - 4} more" if len(items) > 4 else "")


def refuse_unprintable_names(names: Any, *, where: str) -> None:
    """ConfigError when a configured name (regression targets: config.class_names) is not plain text."""
    _refuse_unprintable(names, where=where, error=ConfigError)
