"""The GitHub Action's entrypoint: action inputs (INPUT_* env vars) -> `gate check` -> summary, outputs, annotations.

    python -m gate.action.entrypoint              # as the Action: reads INPUT_*, writes $GITHUB_STEP_SUMMARY etc.
    python -m gate.action.entrypoint check ...    # with arguments: plain `gate` CLI (`docker run IMAGE check ...`)

The gate runs as a subprocess of this interpreter, so its exit code passes through unchanged: 0 pass, 1 the gate
failed (a threshold was breached), 2 the gate could not run (bad input). A failed gate fails the job; a broken setup
fails it too but reads differently in the summary, the annotations and the `verdict` output ("error").
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TextIO

from gate.action.comment import CommentError, comment_on_pull_request
from gate.errors import ConfigError, GateError

Kind = Literal["positional", "value", "flag", "multi"]
Verdict = Literal["pass", "warn", "fail", "error"]


@dataclass(frozen=True)
class InputOption:
    """How one action input becomes part of the `gate check` command line."""

    input: str            # the name in action.yml
    option: str | None    # the CLI option; None for the positional CANDIDATE
    kind: Kind


# Every action.yml input is either here (one to one with a `gate check` option) or in ACTION_ONLY_INPUTS.
GATE_INPUTS: tuple[InputOption, ...] = (
    InputOption("candidate", None, "positional"),
    InputOption("baseline", "--baseline", "value"),
    InputOption("data", "--data", "value"),
    InputOption("config", "--config", "value"),
    InputOption("model-factory", "--model-factory", "value"),
    InputOption("device", "--device", "value"),
    InputOption("json", "--json", "value"),
    InputOption("markdown", "--markdown", "value"),
    InputOption("junit", "--junit", "value"),
    InputOption("onnx", "--onnx", "value"),
    InputOption("trust-checkpoint", "--trust-checkpoint", "flag"),
    InputOption("enable", "--enable", "multi"),
    InputOption("disable", "--disable", "multi"),
    InputOption("batch-size", "--batch-size", "value"),
    InputOption("limit", "--limit", "value"),
    InputOption("seed", "--seed", "value"),
    InputOption("threads", "--threads", "value"),
    InputOption("decision", "--decision", "value"),
    InputOption("verbose", "--verbose", "flag"),
    InputOption("debug", "--debug", "flag"),
)
ACTION_ONLY_INPUTS: tuple[str, ...] = ("extra-args", "comment", "comment-key", "github-token")
REQUIRED_INPUTS: tuple[str, ...] = ("candidate", "baseline")   # as `gate check` requires them

# Written even when the user names no report file: the summary, outputs and comment are read from them.
DEFAULT_JSON = "gate-report/report.json"
DEFAULT_MARKDOWN = "gate-report/report.md"
# GitHub's limit on one step's summary is 1 MiB.
MAX_SUMMARY_BYTES = 1_000_000

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


@dataclass(frozen=True)
class GateOutcome:
    """What one gate run means for the job: the exit code to return and what to publish."""

    exit_code: int
    verdict: Verdict
    report: dict[str, Any] | None = None      # the JSON report, when the gate wrote one
    markdown: str | None = None               # the gate's Markdown report
    error: str | None = None                  # the `error: ...` line, when the gate could not run
    notes: tuple[str, ...] = ()               # problems reading the reports, shown as warnings

    def checks_with(self, status: str) -> list[dict[str, Any]]:
        checks = (self.report or {}).get("checks") or []
        return [c for c in checks if isinstance(c, dict) and c.get("status") == status]


# ---------------------------------------------------------------------------------------------------------------
# Inputs -> argv


def input_env_names(name: str) -> tuple[str, str]:
    """The env vars GitHub may use for an input: INPUT_<NAME> as GitHub spells it (spaces -> '_', upper-cased,
    dashes kept: a shell cannot read `INPUT_MODEL-FACTORY` but Python can), and the all-underscore form that
    action.yml's `runs.env` also sets, so a `docker://` step can pass inputs with `env:` too.

    >>> input_env_names("model-factory")
    ('INPUT_MODEL-FACTORY', 'INPUT_MODEL_FACTORY')
    """
    github = "INPUT_" + name.replace(" ", "_").upper()
    return github, github.replace("-", "_")


def all_input_names() -> tuple[str, ...]:
    return tuple(spec.input for spec in GATE_INPUTS) + ACTION_ONLY_INPUTS


def read_inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """Every known input's value from the environment, stripped; '' when unset (as GitHub passes an empty input)."""
    values: dict[str, str] = {}
    for name in all_input_names():
        github, underscored = input_env_names(name)
        values[name] = (environ.get(github) or environ.get(underscored) or "").strip()
    return values


def parse_bool(name: str, value: str) -> bool:
    """An action input as a boolean: true/false (YAML's spellings accepted), '' is false."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"action input '{name}': expected true or false, found {value!r}")


def split_list(value: str) -> list[str]:
    """`enable: accuracy, flips` or one per line -> ['accuracy', 'flips']."""
    return [item for item in value.replace(",", " ").split() if item]


def with_report_defaults(values: Mapping[str, str]) -> dict[str, str]:
    """The inputs with `json` and `markdown` filled in: the Action always needs both reports."""
    filled = dict(values)
    filled["json"] = filled.get("json") or DEFAULT_JSON
    filled["markdown"] = filled.get("markdown") or DEFAULT_MARKDOWN
    return filled


def build_gate_argv(values: Mapping[str, str]) -> list[str]:
    """The `gate check` arguments (after `gate`) for these action inputs.

    >>> build_gate_argv({"candidate": "c.pt", "baseline": "b.pt", "data": "d.npz", "enable": "drift, onnx"})
    ['check', 'c.pt', '--baseline', 'b.pt', '--data', 'd.npz', '--enable', 'drift', '--enable', 'onnx']
    """
    missing = [name for name in REQUIRED_INPUTS if not values.get(name, "").strip()]
    if missing:
        raise ConfigError(
            "action input(s) " + ", ".join(f"'{m}'" for m in missing) + " required but empty; "
            "set them under `with:` in the workflow step"
        )
    argv = ["check"]
    for spec in GATE_INPUTS:
        value = values.get(spec.input, "").strip()
        if spec.kind == "positional":
            argv.append(value)
        elif spec.kind == "flag":
            if parse_bool(spec.input, value):
                argv.append(str(spec.option))
        elif spec.kind == "multi":
            for item in split_list(value):
                argv += [str(spec.option), item]
        elif value:
            argv += [str(spec.option), value]
    try:
        argv += shlex.split(values.get("extra-args", ""))
    except ValueError as err:
        raise ConfigError(f"action input 'extra-args': cannot split {values.get('extra-args')!r}: {err}") from err
    return argv


# ---------------------------------------------------------------------------------------------------------------
# Running the gate and reading what it wrote


def gate_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The gate's environment: ours without the inputs, so the token never reaches code a PR's model factory runs."""
    return {k: v for k, v in environ.items() if not k.startswith("INPUT_") and k != "GITHUB_TOKEN"}


def error_line(stderr: str) -> str:
    """The gate's one-line `error: ...` message, or the last line it printed when there is none."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line
    return lines[-1] if lines else "the gate printed nothing on stderr"


def read_report(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON report and None, or None and why it could not be read."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"the gate wrote no JSON report at {path}"
    except (OSError, ValueError) as err:
        return None, f"the JSON report {path} cannot be read: {err}"
    if not isinstance(report, dict) or report.get("verdict") not in ("pass", "warn", "fail"):
        return None, f"the JSON report {path} has no verdict (pass, warn or fail)"
    return report, None


def interpret(returncode: int, stderr: str, *, json_path: Path, markdown_path: Path) -> GateOutcome:
    """Map the gate's exit code and reports to an outcome. A gate that 'failed' without writing a report crashed:
    that is exit 2 (could not run), not a model regression."""
    if returncode not in (0, 1):
        return GateOutcome(exit_code=2, verdict="error", error=error_line(stderr))
    report, problem = read_report(json_path)
    if report is None:
        if returncode == 1:
            return GateOutcome(exit_code=2, verdict="error", error=error_line(stderr), notes=(str(problem),))
        return GateOutcome(exit_code=0, verdict="pass", notes=(str(problem),))
    try:
        markdown: str | None = markdown_path.read_text(encoding="utf-8")
    except OSError:
        markdown = None
    return GateOutcome(exit_code=returncode, verdict=report["verdict"], report=report, markdown=markdown)


def prepare_report_paths(*paths: Path) -> None:
    """Create the reports' folders and remove old reports, so a stale report from an earlier run is never shown."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot write the report {path}: {err.strerror or err}; the container user (uid {_uid()}) "
                "needs write access to the workspace"
            ) from err


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"


def run_gate(argv: Sequence[str], *, cwd: Path, environ: Mapping[str, str], stdout: TextIO) -> tuple[int, str]:
    """Run `python -m gate ARGV`; its output goes to the log as it comes, and the end of its stderr is kept for the
    error line.

    GitHub workflow commands in the gate's own output are switched off (`::stop-commands::`), so a class name or
    path from a pull request cannot smuggle one in.
    """
    token = secrets.token_hex(16)
    print(f"::stop-commands::{token}", file=stdout, flush=True)
    command = [sys.executable, "-m", "gate", *argv]
    env = gate_environment(environ)
    if _has_fileno(stdout):
        tail: deque[str] = deque(maxlen=200)
        with subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                tail.append(line)
        returncode, stderr = proc.returncode, "".join(tail)
    else:  # a captured stream (tests): collect both, then replay
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        returncode, stderr = done.returncode, done.stderr
    print(f"::{token}::", file=stdout, flush=True)
    return returncode, stderr


def _has_fileno(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Publishing: step summary, outputs, annotations


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub requires (% first, then CR and LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=...): also ':' and ','."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: str) -> str:
    """`::error title=gate%3A accuracy::accuracy dropped by 0.3` and the like.

    >>> workflow_command("warning", "50% done\\nnext", title="gate: a, b")
    '::warning title=gate%3A a%2C b::50%25 done%0Anext'
    """
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def check_message(check: Mapping[str, Any], *, max_lines: int = 10) -> str:
    """Why a check failed (or warned): the reasons of its findings with that status, one per line (they name their
    metric), or the check's summary when no finding carries a reason."""
    status = check.get("status")
    reasons = [str(f["reason"]) for f in check.get("findings") or []
               if isinstance(f, dict) and f.get("status") == status and f.get("reason")]
    if not reasons:
        return str(check.get("summary") or f"check {check.get('name')} is {status}")
    if len(reasons) > max_lines:
        reasons = reasons[:max_lines] + [f"(+{len(reasons) - max_lines} more in the job summary)"]
    return "\n".join(reasons)


def annotations(outcome: GateOutcome) -> list[str]:
    """One `::error` per failed check, one `::warning` per warning check; one `::error` if the gate could not run."""
    if outcome.verdict == "error":
        return [workflow_command("error", outcome.error or "the gate could not run", title="gate could not run")]
    out = [
        workflow_command("error", check_message(c), title=f"gate: {c.get('name')}") for c in outcome.checks_with("fail")
    ]
    out += [
        workflow_command("warning", check_message(c), title=f"gate: {c.get('name')}")
        for c in outcome.checks_with("warn")
    ]
    out += [workflow_command("warning", note, title="gate report") for note in outcome.notes]
    return out


def markdown_from_report(report: Mapping[str, Any]) -> str:
    """A short Markdown report from the JSON one, for when the gate wrote no Markdown."""
    icons = {"pass": ":white_check_mark:", "warn": ":warning:", "fail": ":x:", "skip": ":fast_forward:"}
    verdict = str(report.get("verdict"))
    lines = [f"## {icons.get(verdict, '')} gate: {verdict}", "", str(report.get("summary", "")), ""]
    lines += ["| check | status | summary |", "|---|---|---|"]
    for check in report.get("checks") or []:
        summary = str(check.get("summary", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check.get('name')} | {icons.get(str(check.get('status')), '')} {check.get('status')} "
                     f"| {summary} |")
    return "\n".join(lines) + "\n"


def summary_markdown(outcome: GateOutcome) -> str:
    """What the job summary (and the PR comment) shows for this outcome."""
    if outcome.verdict == "error":
        return (
            "## :no_entry: gate could not run\n\n"
            "The gate exited with code 2: the setup is broken (an input, the config, a checkpoint or the data), "
            "so nothing was decided about the model.\n\n"
            f"```text\n{outcome.error or 'no error message'}\n```\n"
        )
    if outcome.markdown:
        return outcome.markdown if outcome.markdown.endswith("\n") else outcome.markdown + "\n"
    if outcome.report is not None:
        return markdown_from_report(outcome.report)
    return f"## gate: {outcome.verdict}\n\nThe gate exited with code {outcome.exit_code} but wrote no report.\n"


def fit_summary(markdown: str) -> str:
    """The summary cut to GitHub's per-step limit, with a note, so an oversized report never fails the upload."""
    data = markdown.encode("utf-8")
    if len(data) <= MAX_SUMMARY_BYTES:
        return markdown
    cut = data[: MAX_SUMMARY_BYTES - 200].decode("utf-8", errors="ignore")
    return cut + "\n\n_The report was cut to fit the job summary; the full report is in the JSON report._\n"


def format_output(name: str, value: str) -> str:
    """One $GITHUB_OUTPUT entry: `name=value`, or the delimiter form when the value spans lines."""
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def append_file(path: str | None, text: str, *, stdout: TextIO) -> bool:
    """Append to a GitHub file command ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY). False when not running in Actions
    or when the file cannot be written (a warning then says why; the job's exit code stays the gate's)."""
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        print(workflow_command("warning", f"cannot write {path}: {err.strerror or err}", title="gate"), file=stdout)
        return False
    return True


def display_path(path: Path, workspace: Path) -> str:
    """A report path as later steps see it: relative to the workspace (the container's /github/workspace is the
    runner's checkout, under another absolute path)."""
    try:
        return str(path.resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(path)


def action_outputs(outcome: GateOutcome, *, json_path: Path, markdown_path: Path, workspace: Path) -> dict[str, str]:
    return {
        "verdict": outcome.verdict,
        "exit-code": str(outcome.exit_code),
        "failed-checks": ",".join(str(c.get("name")) for c in outcome.checks_with("fail")),
        "report-json": display_path(json_path, workspace) if outcome.report is not None else "",
        "report-markdown": display_path(markdown_path, workspace) if outcome.markdown is not None else "",
    }


def run_footer(environ: Mapping[str, str]) -> str:
    server, repo, run = (environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server and repo and run):
        return ""
    return f"<sub>[gate run {run}]({server}/{repo}/actions/runs/{run}) · updated on every push</sub>"


def default_comment_key(environ: Mapping[str, str]) -> str:
    """Workflow and job name: two gate jobs on the same PR keep separate comments (set comment-key in a matrix)."""
    parts = [environ.get("GITHUB_WORKFLOW", ""), environ.get("GITHUB_JOB", "")]
    return "/".join(p for p in parts if p) or "default"


def publish(
    outcome: GateOutcome,
    *,
    values: Mapping[str, str],
    environ: Mapping[str, str],
    workspace: Path,
    json_path: Path,
    markdown_path: Path,
    stdout: TextIO,
) -> None:
    """Step summary, outputs, annotations and (if asked) the PR comment. Nothing here changes the exit code."""
    markdown = summary_markdown(outcome)
    append_file(environ.get("GITHUB_STEP_SUMMARY"), fit_summary(markdown), stdout=stdout)
    outputs = action_outputs(outcome, json_path=json_path, markdown_path=markdown_path, workspace=workspace)
    lines = "".join(format_output(k, v) for k, v in outputs.items())
    if not append_file(environ.get("GITHUB_OUTPUT"), lines, stdout=stdout):
        print("gate outputs: " + ", ".join(f"{k}={v}" for k, v in outputs.items()), file=stdout)
    for line in annotations(outcome):
        print(line, file=stdout)
    try:
        wants_comment = parse_bool("comment", values.get("comment", ""))
    except ConfigError as err:
        print(workflow_command("warning", str(err), title="gate PR comment"), file=stdout)
        wants_comment = False
    if wants_comment:
        token = values.get("github-token") or environ.get("GITHUB_TOKEN", "")
        key = values.get("comment-key") or default_comment_key(environ)
        try:
            result = comment_on_pull_request(
                environ, token=token, key=key, markdown=markdown, footer=run_footer(environ)
            )
        except CommentError as err:
            print(workflow_command("warning", str(err), title="gate PR comment"), file=stdout)
        else:
            print(f"gate: {result.action} the pull-request comment {result.html_url}".rstrip(), file=stdout)
    stdout.flush()


# ---------------------------------------------------------------------------------------------------------------
# Main


def run_action(environ: Mapping[str, str], *, stdout: TextIO | None = None) -> int:
    """The whole Action: returns the exit code for the job (the gate's: 0, 1 or 2)."""
    out = stdout if stdout is not None else sys.stdout
    workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    values = with_report_defaults(read_inputs(environ))
    json_path = workspace / values["json"]
    markdown_path = workspace / values["markdown"]
    try:
        argv = build_gate_argv(values)
        prepare_report_paths(json_path, markdown_path)
    except GateError as err:
        outcome = GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
    else:
        print("gate " + shlex.join(argv), file=out, flush=True)
        returncode, stderr = run_gate(argv, cwd=workspace, environ=environ, stdout=out)
        outcome = interpret(returncode, stderr, json_path=json_path, markdown_path=markdown_path)
    publish(
        outcome,
        values=values,
        environ=environ,
        workspace=workspace,
        json_path=json_path,
        markdown_path=markdown_path,
        stdout=out,
    )
    return outcome.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """With arguments, be the `gate` CLI (the container used by hand or in other CI); without, be the Action."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "gate", *args])
    return run_action(os.environ)


if __name__ == "__main__":
    sys.exit(main())
