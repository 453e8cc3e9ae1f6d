"""A pytest plugin, so a model repository can keep its gates in its test suite:

    def test_candidate_does_not_regress(gate_check):
        gate_check("runs/candidate.safetensors", "prod/model.safetensors", "data/eval.npz", config="gate.yaml")

A failing gate fails the test with the console report as the message; a gate that cannot run fails it with the
one-line error. `gate_check` (the fixture, or `from gate.pytest_plugin import gate_check`) takes the arguments of
`gate.check` and returns its Report. With `--gate-report-dir DIR` each call also writes DIR/<test id>.html and .json.

Registered through the `pytest11` entry point when gate is installed; `-p gate.pytest_plugin` loads it otherwise.
It imports torch only when a gate runs.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gate.api import Report

_REPORT_DIR = pytest.StashKey[str]()


def gate_check(candidate: Any, baseline: Any, data: Any = None, *, config: Any = None, strict: bool = False,
               report_name: str | None = None, **overrides: Any) -> Report:
    """gate.check, failing the calling test when the gate fails (or warns, with strict=True) or cannot run."""
    from gate.api import check
    from gate.errors import GateError

    try:
        report = check(candidate, baseline, data, config=config, **overrides)
    except GateError as err:
        pytest.fail(f"gate could not run (exit 2): {' '.join(str(err).split())}", pytrace=False)
    if report_name is not None:
        report.write(**{kind: f"{report_name}.{ext}" for kind, ext in (("html", "html"), ("json", "json"))})
    if report.exit_code != 0 or (strict and report.verdict == "warn"):
        pytest.fail(report.to_console(), pytrace=False)
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gate", "model-regression gate")
    group.addoption("--gate-report-dir", metavar="DIR", default=None,
                    help="Write an HTML and a JSON report for each gate_check call into DIR.")


def pytest_configure(config: pytest.Config) -> None:
    directory = config.getoption("--gate-report-dir", default=None)
    if directory:
        config.stash[_REPORT_DIR] = os.fspath(directory)


class _TestGate:
    """gate_check bound to one test: with --gate-report-dir, its reports are named after the test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.directory = request.config.stash.get(_REPORT_DIR, None)
        self.stem = re.sub(r"[^\w.-]+", "_", request.node.nodeid).strip("_")
        self.calls = 0

    def __call__(self, candidate: Any, baseline: Any, data: Any = None, **kwargs: Any) -> Report:
        if self.directory is not None and "report_name" not in kwargs:
            os.makedirs(self.directory, exist_ok=True)
            kwargs["report_name"] = os.path.join(self.directory, self.stem + (f"-{self.calls}" if self.calls else ""))
        self.calls += 1
        return gate_check(candidate, baseline, data, **kwargs)


@pytest.fixture(name="gate_check")
def gate_check_fixture(request: pytest.FixtureRequest) -> Callable[..., Report]:
    """`gate_check(candidate, baseline, data, *, config=None, strict=False, **options)` for this test."""
    return _TestGate(request)
