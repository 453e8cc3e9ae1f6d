"""The GitHub Action's entrypoint: action inputs (INPUT_* env vars) -> `gate check` -> summary, outputs, annotations.

    python -m gate.action.entrypoint              # as the Action: reads INPUT_*, writes $GITHUB_STEP_SUMMARY etc.
    python -m gate.action.entrypoint check ...    # with arguments: plain `gate` CLI (`docker run IMAGE check ...`)

Three modes. `mode: check` (the default) runs the gate as a subprocess of this interpreter, so its exit code passes
through: 0 pass, 1 the gate failed (a threshold was breached), 2 the gate could not run (bad input); with `shard: I/N`
it scores one shard of a CI matrix and writes its state file (`state`), exit 0, no verdict. `mode: merge` runs
`gate merge` on the matrix's state files (`states`), loading no model, and decides like `mode: check`. `mode:
comment` loads no PR file and runs no gate: it reads the JSON report a check step wrote (in this job, or in the
workflow run that triggered this one) and posts it as the sticky pull-request comment; it is the only mode that
needs the token.

Trust (see gate/action/trust.py and gate/action/isolation.py): the config and the factories come from the
`policy-path` checkout (the base branch); the pull request supplies only files, which must stay in the workspace; the
gate process gets no token, no ACTIONS_* variable and no file-command path, and cannot read this process's memory.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TextIO

from gate.action import isolation, trust
from gate.action.comment import CommentError, comment_on_pull_request
from gate.errors import ConfigError, GateError
from gate.report.escape import md_code, md_fence, md_text

Kind = Literal["positional", "value", "flag", "multi", "trust"]
Verdict = Literal["pass", "warn", "fail", "error", "shard"]     # shard: a `shard` job wrote its state, decided nothing
Mode = Literal["check", "comment", "merge"]


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
    InputOption("html", "--html", "value"),
    InputOption("onnx", "--onnx", "value"),
    InputOption("trust-checkpoint", "--trust-checkpoint", "trust"),
    InputOption("enable", "--enable", "multi"),
    InputOption("disable", "--disable", "multi"),
    InputOption("batch-size", "--batch-size", "value"),
    InputOption("limit", "--limit", "value"),
    InputOption("seed", "--seed", "value"),
    InputOption("threads", "--threads", "value"),
    InputOption("decision", "--decision", "value"),
    InputOption("task", "--task", "value"),
    InputOption("verbose", "--verbose", "flag"),
    InputOption("debug", "--debug", "flag"),
    InputOption("shard", "--shard", "value"),
    InputOption("state", "--state", "value"),
    InputOption("baseline-cache", "--baseline-cache", "value"),
)
ACTION_ONLY_INPUTS: tuple[str, ...] = (
    "mode", "policy-path", "allow-pr-policy", "extra-args", "comment", "comment-key", "github-token", "states",
)
REQUIRED_INPUTS: tuple[str, ...] = ("candidate", "baseline")   # as `gate check` requires them
BOOLEAN_INPUTS: tuple[str, ...] = ("verbose", "debug", "comment", "allow-pr-policy")
MODES: tuple[str, ...] = ("check", "comment", "merge")
ARTIFACT_INPUTS: tuple[str, ...] = ("candidate", "baseline", "data", "onnx")   # files from the pull request
REPORT_INPUTS: tuple[str, ...] = ("json", "markdown", "junit", "html")
TRUST_ROLES: tuple[str, ...] = ("baseline", "candidate")
# Short options of `gate check` that have an input (-b --baseline, -c --config, -d --data, -v --verbose).
_SHORT_WITH_INPUT = frozenset("bcdv")

# Written even when the user names no report file: the summary, outputs and comment are read from them.
DEFAULT_JSON = "gate-report/report.json"
DEFAULT_MARKDOWN = "gate-report/report.md"
DEFAULT_STATE = "gate-report/shard-{index}-of-{count}.gstate"     # a `shard` job's state file, unless `state` says
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
    reports: Mapping[str, Path] = field(default_factory=dict)   # input name -> report path in the workspace
    echoed: bool = False                      # the gate already printed the error line on stderr
    state: Path | None = None                 # a shard job's state file, installed in the workspace
    shard: str = ""                           # a shard job's I/N, and what its state holds ("600 samples ...")

    def checks_with(self, status: str) -> list[dict[str, Any]]:
        checks = (self.report or {}).get("checks") or []
        return [c for c in checks if isinstance(c, dict) and c.get("status") == status]


@dataclass(frozen=True)
class Settings:
    """The Action-only inputs, validated before anything runs."""

    mode: Mode = "check"
    comment: bool = False
    allow_pr_policy: bool = False
    trust: tuple[str, ...] = ()     # roles given to --trust-checkpoint: baseline, candidate or all


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


def parse_trust(value: str) -> tuple[str, ...]:
    """`trust-checkpoint`: none (default), baseline, candidate, all; false/true are none/all (the old boolean).

    >>> parse_trust("baseline"), parse_trust("true"), parse_trust(""), parse_trust("candidate, baseline")
    (('baseline',), ('all',), (), ('all',))
    """
    words = split_list(value.lower())
    if not words or words in (["none"], ["false"], ["no"], ["off"], ["0"]):
        return ()
    if words in (["all"], ["true"], ["yes"], ["on"], ["1"]):
        return ("all",)
    if all(w in TRUST_ROLES for w in words):
        roles = tuple(r for r in TRUST_ROLES if r in words)
        return ("all",) if roles == TRUST_ROLES else roles
    raise ConfigError(f"action input 'trust-checkpoint': expected none, baseline, candidate or all, found {value!r}")


def parse_settings(values: Mapping[str, str]) -> Settings:
    """Every boolean and choice input checked at once, so `comment: maybe` is exit 2 like `verbose: maybe`."""
    for name in BOOLEAN_INPUTS:
        parse_bool(name, values.get(name, ""))
    mode = values.get("mode", "").strip().lower() or "check"
    if mode not in MODES:
        raise ConfigError(f"action input 'mode': expected check, merge or comment, found {values.get('mode')!r}")
    return Settings(
        mode=mode,  # type: ignore[arg-type]
        comment=parse_bool("comment", values.get("comment", "")),
        allow_pr_policy=parse_bool("allow-pr-policy", values.get("allow-pr-policy", "")),
        trust=parse_trust(values.get("trust-checkpoint", "")),
    )


def split_list(value: str) -> list[str]:
    """`enable: accuracy, flips` or one per line -> ['accuracy', 'flips']."""
    return [item for item in value.replace(",", " ").split() if item]


def with_report_defaults(values: Mapping[str, str]) -> dict[str, str]:
    """The inputs with `json` and `markdown` filled in: the Action always needs both reports."""
    filled = dict(values)
    filled["json"] = filled.get("json") or DEFAULT_JSON
    filled["markdown"] = filled.get("markdown") or DEFAULT_MARKDOWN
    return filled


def split_extra_args(value: str) -> list[str]:
    """`extra-args` split like a shell; an option that has its own input must be given there, where the Action
    checks where it comes from (a `--config` here would skip the policy-path rules)."""
    try:
        args = shlex.split(value)
    except ValueError as err:
        raise ConfigError(f"action input 'extra-args': cannot split {value!r}: {err}") from err
    with_input = {spec.option: spec.input for spec in GATE_INPUTS if spec.option}
    for arg in args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name in with_input:
            raise ConfigError(f"action input 'extra-args': {name} has its own input; set '{with_input[name]}' "
                              "instead")
        if arg.startswith("-") and not arg.startswith("--") and _SHORT_WITH_INPUT & set(arg[1:]):
            raise ConfigError(f"action input 'extra-args': {arg} sets an option that has its own input "
                              "(-b baseline, -c config, -d data, -v verbose); set the input instead")
    return args


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
        elif spec.kind == "trust":
            for role in parse_trust(value):
                argv += [str(spec.option), role]
        elif spec.kind == "multi":
            for item in split_list(value):
                argv += [str(spec.option), item]
        elif value:
            argv += [str(spec.option), value]
    argv += split_extra_args(values.get("extra-args", ""))
    return argv


# ---------------------------------------------------------------------------------------------------------------
# Planning a check: where each input comes from


@dataclass(frozen=True)
class CheckPlan:
    """The gate's inputs after the trust rules: paths rewritten, the folder it runs in, where reports go."""

    values: dict[str, str]          # inputs for build_gate_argv (report inputs still to be pointed at the sandbox)
    cwd: Path | None                # None: an empty private folder (nothing of the PR's importable)
    reports: dict[str, Path]        # input name -> target in the workspace
    notes: tuple[str, ...] = ()
    state: Path | None = None       # a `shard` job: where its state file goes in the workspace (no reports then)
    cache: Path | None = None       # `baseline-cache`: the folder the gate reads and writes entries in
    states: tuple[Path, ...] = ()   # `mode: merge`: the shards' state files


def refuse_pull_request_state(name: str, *, untrusted: str | None, allow_pr_policy: bool) -> None:
    """A baseline-cache entry or a shard's state decides what the gate compares against: on a run for a fork's
    pull request a file at that path may be the pull request's own (committed where the cache or the artifacts
    are restored), forged to pass, so the run refuses it unless allow-pr-policy says the PR's files are policy."""
    if untrusted and not allow_pr_policy:
        what = ("its entries replace the baseline's scores" if name == "baseline-cache"
                else "their counts decide the verdict")
        raise ConfigError(f"action input '{name}': this run is for {untrusted}, whose checkout could hold files "
                          f"at that path, and {what}; use it on trusted runs (push, pull requests from this "
                          "repository) or shard with torchrun in one job")


def state_files(value: str, *, workspace: Path) -> tuple[Path, ...]:
    """`states`: files or glob patterns (`states/*.gstate`) in the workspace, separated by commas, spaces or lines."""
    ws = workspace.resolve()
    found: list[Path] = []
    for item in split_list(value):
        if any(c in item for c in "*?["):
            if os.path.isabs(item) or ".." in Path(item).parts:
                raise ConfigError(f"action input 'states': {item}: a pattern is relative to the workspace")
            matches = sorted(p for p in ws.glob(item) if p.is_file())
            if not matches:
                raise ConfigError(f"action input 'states': {item} matches no file in the workspace (were the "
                                  "shard jobs' artifacts downloaded there?)")
            found += [trust.artifact_path("states", str(m.relative_to(ws)), workspace=ws) for m in matches]
        else:
            found.append(trust.artifact_path("states", item, workspace=ws))
    if not found:
        raise ConfigError("action input 'states' is required for mode: merge: the state files of every shard job")
    return tuple(dict.fromkeys(found))


def plan_check(values: Mapping[str, str], *, workspace: Path, environ: Mapping[str, str],
               settings: Settings) -> CheckPlan:
    """Apply the trust rules to the inputs (ConfigError, exit 2, for any that breaks them)."""
    origin = trust.run_origin(environ)
    untrusted = origin.untrusted
    allow = settings.allow_pr_policy
    policy = trust.policy_root(values.get("policy-path", ""), workspace=workspace, origin=origin,
                               allow_pr_policy=allow)
    ws = workspace.resolve()
    if policy.from_pull_request and allow:
        cwd: Path | None = ws
    elif policy.from_pull_request:
        cwd = None
    else:
        cwd = policy.root
    out = dict(values)

    def as_argument(path: Path) -> str:
        # Relative to the folder the gate runs in when it is the workspace (reports show the paths as given).
        if cwd == ws and trust.is_within(path, ws):
            return str(path.relative_to(ws))
        return str(path)

    data = values.get("data", "")
    data_is_code = bool(trust.CALLABLE_SPEC.match(data)) and not (ws / data).exists()
    for name in ARTIFACT_INPUTS:
        value = values.get(name, "")
        if value and not (name == "data" and data_is_code):
            out[name] = as_argument(trust.artifact_path(name, value, workspace=ws))
    for name, spec in (("model-factory", values.get("model-factory", "")), ("data", data if data_is_code else "")):
        if spec:
            trust.check_policy_module(name, spec, policy, allow_pr_policy=allow, untrusted=untrusted)
    if values.get("config"):
        path = trust.config_path(values["config"], policy, allow_pr_policy=allow, untrusted=untrusted)
        out["config"] = str(path) if cwd != policy.root else values["config"]
    if untrusted and not allow:
        foreign = trust.foreign_import_paths(environ.get("PYTHONPATH", ""), workspace=ws, policy=policy)
        if foreign:
            raise ConfigError(f"PYTHONPATH {os.pathsep.join(foreign)} makes the pull request's files importable, "
                              f"and this run is for {untrusted}")
    notes: tuple[str, ...] = ()
    if untrusted and ("all" in settings.trust or "candidate" in settings.trust):
        notes = (f"trust-checkpoint lets the candidate's file run code, and this run is for {untrusted}: "
                 "the gate's promise does not hold",)
    cache = None
    if values.get("baseline-cache"):
        refuse_pull_request_state("baseline-cache", untrusted=untrusted, allow_pr_policy=allow)
        cache = trust.cache_folder(values["baseline-cache"], workspace=ws)
        out["baseline-cache"] = as_argument(cache)
    state = None
    shard = values.get("shard", "")
    if shard:
        from gate.sharding import parse_shard

        try:
            part = parse_shard(shard)
        except ConfigError as err:
            raise ConfigError(f"action input 'shard': {err}") from err
        given = [name for name in ("junit", "html") if values.get(name)]
        if given:
            raise ConfigError(f"action input '{given[0]}': a shard job writes its state, not reports; set the "
                              "reports on the mode: merge job")
        state = trust.report_path("state", values.get("state") or DEFAULT_STATE.format(
            index=part.index + 1, count=part.count), workspace=ws)
        split_extra_args(values.get("extra-args", ""))
        return CheckPlan(values=out, cwd=cwd, reports={}, notes=notes, state=state, cache=cache)
    if values.get("state"):
        raise ConfigError("action input 'state' goes with 'shard' (I/N): only a shard job writes a state file")
    filled = with_report_defaults(values)
    reports = {name: trust.report_path(name, filled[name], workspace=ws) for name in REPORT_INPUTS if filled.get(name)}
    targets = [str(p) for p in reports.values()]
    if len(set(targets)) != len(targets):
        raise ConfigError("action inputs 'json', 'markdown', 'junit' and 'html' must name different files")
    split_extra_args(values.get("extra-args", ""))
    return CheckPlan(values=out, cwd=cwd, reports=reports, notes=notes, cache=cache)


def plan_merge(values: Mapping[str, str], *, workspace: Path, environ: Mapping[str, str],
               settings: Settings) -> CheckPlan:
    """`mode: merge`: the state files (in the workspace, through no link out of it) and where the reports go."""
    origin = trust.run_origin(environ)
    refuse_pull_request_state("states", untrusted=origin.untrusted, allow_pr_policy=settings.allow_pr_policy)
    ws = workspace.resolve()
    states = state_files(values.get("states", ""), workspace=ws)
    out = dict(values)
    if values.get("config"):        # the policy every state must agree with (`gate merge --config`)
        policy = trust.policy_root(values.get("policy-path", ""), workspace=ws, origin=origin,
                                   allow_pr_policy=settings.allow_pr_policy)
        out["config"] = str(trust.config_path(values["config"], policy, allow_pr_policy=settings.allow_pr_policy,
                                              untrusted=origin.untrusted))
    filled = with_report_defaults(values)
    reports = {name: trust.report_path(name, filled[name], workspace=ws) for name in REPORT_INPUTS if filled.get(name)}
    if len({str(p) for p in reports.values()}) != len(reports):
        raise ConfigError("action inputs 'json', 'markdown', 'junit' and 'html' must name different files")
    return CheckPlan(values=out, cwd=None, reports=reports, states=states)


def build_merge_argv(plan: CheckPlan, sandboxed: Mapping[str, Path]) -> list[str]:
    """`gate merge STATE... [--config FILE] --json ... --markdown ...` (after `gate`)."""
    argv = ["merge", *map(str, plan.states)]
    if plan.values.get("config"):
        argv += ["--config", plan.values["config"]]
    for name in REPORT_INPUTS:
        if name in sandboxed:
            argv += [f"--{name}", str(sandboxed[name])]
    for name in ("verbose", "debug"):
        if parse_bool(name, plan.values.get(name, "")):
            argv.append(f"--{name}")
    return argv


def prepare_report_paths(reports: Mapping[str, Path], *, workspace: Path, owner: tuple[int, int] | None) -> None:
    """Remove old reports (plain files only: the paths were checked to hold no symlink) and create their folders,
    so a stale report from an earlier run is never shown."""
    ws = workspace.resolve()
    for path in reports.values():
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
            isolation.make_dirs(path.parent, root=ws, owner=owner)
        except OSError as err:
            raise ConfigError(
                f"cannot write the report {path}: {err.strerror or err}; the container user (uid {_uid()}) "
                "needs write access to the workspace"
            ) from err


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"


# ---------------------------------------------------------------------------------------------------------------
# Running the gate and reading what it wrote


def gate_environment(environ: Mapping[str, str], **kwargs: Any) -> dict[str, str]:
    """The gate's environment: ours without inputs, tokens, ACTIONS_* and file-command paths."""
    return isolation.gate_environment(environ, **kwargs)


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
        raw = isolation.read_private(path)
    except ConfigError as err:
        return None, str(err)
    if raw is None:
        return None, f"the gate wrote no JSON report at {path}"
    try:
        report = json.loads(raw)
    except (ValueError, RecursionError) as err:
        return None, f"the JSON report {path} cannot be read: {err}"
    if not isinstance(report, dict) or report.get("verdict") not in ("pass", "warn", "fail"):
        return None, f"the JSON report {path} has no verdict (pass, warn or fail)"
    return report, None


def interpret(returncode: int, stderr: str, *, json_path: Path, markdown_path: Path) -> GateOutcome:
    """Map the gate's exit code and reports to an outcome. Only a readable report whose verdict agrees with the
    exit code is a result: a gate that exits 0 or 1 without one (a factory's `raise SystemExit(0)`, a crash) could
    not run, which is exit 2, never a pass and never a regression."""
    printed = {line.strip() for line in stderr.splitlines()}
    if returncode < 0 and not stderr.strip():
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return GateOutcome(exit_code=2, verdict="error",
                           error=f"error: the gate process was killed by {name} before it decided anything")
    if returncode not in (0, 1):
        line = error_line(stderr)
        return GateOutcome(exit_code=2, verdict="error", error=line, echoed=line.startswith("error:") and line in printed)
    report, problem = read_report(json_path)
    if report is None:
        if returncode == 1 and stderr.strip():   # a crash after the gate printed why
            line = error_line(stderr)
            return GateOutcome(exit_code=2, verdict="error", error=line, notes=(str(problem),),
                               echoed=line.startswith("error:") and line in printed)
        return GateOutcome(exit_code=2, verdict="error", notes=(str(problem),),
                           error=f"error: the gate exited with code {returncode} but wrote no report ({problem}); "
                                 "nothing was decided")
    expected = 1 if report["verdict"] == "fail" else 0
    if returncode != expected:
        return GateOutcome(exit_code=2, verdict="error",
                           error=f"error: the gate exited with code {returncode} but its report says "
                                 f"{report['verdict']!r}; nothing was decided")
    try:
        raw = isolation.read_private(markdown_path)
        markdown = raw.decode("utf-8", errors="replace") if raw is not None else None
    except ConfigError:
        markdown = None
    return GateOutcome(exit_code=returncode, verdict=report["verdict"], report=report, markdown=markdown)


def run_gate(argv: Sequence[str], *, cwd: Path, environ: Mapping[str, str], stdout: TextIO,
             sandbox: isolation.Sandbox | None = None, home: Path | None = None,
             tmpdir: Path | None = None) -> tuple[int, str]:
    """Run `python -P -m gate ARGV` (-P: the folder it runs in is not put first on sys.path) in the sandbox; its
    output goes to the log as it comes, and the end of its stderr is kept for the error line.

    GitHub workflow commands are switched off (`::stop-commands::`) for the whole run, so a class name or path
    from a pull request cannot smuggle one in; the resume token is random and never given to the gate.
    """
    box = sandbox or isolation.Sandbox()
    command = [sys.executable, *safe_path_flags(), "gate", *argv]
    env = gate_environment(environ, home=home if box.separate else None, tmpdir=tmpdir)
    captured = not _has_fileno(stdout)
    out_target: Any = subprocess.PIPE if captured else stdout
    tail: deque[str] = deque(maxlen=200)
    proc = isolation.spawn(command, cwd=cwd, env=env, sandbox=box, stdout=out_target, stderr=subprocess.PIPE)
    restore = forward_signals(proc)
    try:
        if captured:   # a captured stream (tests): collect both, then replay
            out_text, err_text = proc.communicate()
            stdout.write(out_text)
            sys.stderr.write(err_text)
            tail.extend(err_text.splitlines(keepends=True))
        else:
            assert proc.stderr is not None
            for line in proc.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                tail.append(line)
            proc.wait()
    finally:
        restore()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        isolation.end_leftovers(proc, box)
    return proc.returncode, "".join(tail)


def forward_signals(proc: subprocess.Popen[str]) -> Any:
    """SIGTERM (a cancelled job: `docker stop`) and SIGINT go on to the gate, which runs in a session of its own:
    it ends with its one `error:` line, and this process then reports exit 2. Returns the function that restores
    the previous handlers."""
    def forward(signum: int, frame: Any) -> None:
        try:
            os.killpg(proc.pid, signum)
        except OSError:
            pass

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, forward)
        except ValueError:   # not the main thread: leave the embedding program's handlers alone
            break

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def safe_path_flags(version: tuple[int, ...] = tuple(sys.version_info)) -> list[str]:
    """`-P -m` (3.11+: the working folder is not put first on sys.path); before 3.11 the same by hand."""
    if version >= (3, 11):
        return ["-P", "-m"]
    return ["-c", "import runpy, sys; sys.path.pop(0); sys.argv[0] = 'gate'; "
                  "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"]


def _has_fileno(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def run_check(values: Mapping[str, str], *, settings: Settings, environ: Mapping[str, str], workspace: Path,
              stdout: TextIO) -> GateOutcome:
    """Plan, run the gate in its sandbox, read its reports from its private folder, install them in the workspace.

    `mode: merge` goes the same way with `gate merge` on the state files; a `shard` job installs its state file
    instead of reports."""
    owner = isolation.workspace_owner(workspace)
    merging = settings.mode == "merge"
    try:
        if merging:
            plan = plan_merge(values, workspace=workspace, environ=environ, settings=settings)
        else:
            plan = plan_check(values, workspace=workspace, environ=environ, settings=settings)
            build_gate_argv(plan.values)           # inputs complete and well-formed before anything is removed
        prepare_report_paths(plan.reports, workspace=workspace, owner=owner)
        if plan.state is not None:
            prepare_report_paths({"state": plan.state}, workspace=workspace, owner=owner)
        sandbox = isolation.sandbox_for(environ)
        isolation.check_sandbox_can_run(sandbox, sys.executable, workspace)
        if plan.cache is not None:
            isolation.lend_folder(plan.cache, root=workspace.resolve(), sandbox=sandbox, owner=owner)
    except GateError as err:
        return GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
    private = isolation.private_dir(sandbox)
    try:
        reports_dir = private / "reports"
        names = {"json": "report.json", "markdown": "report.md", "junit": "junit.xml", "html": "report.html"}
        sandboxed = {name: reports_dir / names[name] for name in plan.reports}
        private_state = reports_dir / "state.gstate"
        if merging:
            argv = build_merge_argv(plan, sandboxed)
        elif plan.state is not None:
            argv = build_gate_argv({**plan.values, **{name: "" for name in REPORT_INPUTS},
                                    "state": str(private_state)})
        else:
            argv = build_gate_argv({**plan.values, **{k: str(v) for k, v in sandboxed.items()}})
        token = secrets.token_hex(16)
        print(f"::stop-commands::{token}", file=stdout, flush=True)
        print("gate " + shlex.join(argv), file=stdout, flush=True)
        try:
            returncode, stderr = run_gate(argv, cwd=plan.cwd or private / "cwd", environ=environ, stdout=stdout,
                                          sandbox=sandbox, home=private / "home", tmpdir=private / "home")
        except OSError as err:   # e.g. a container that may not switch to the sandbox uid
            who = f"uid {sandbox.uid}" if sandbox.separate else "this user"
            returncode, stderr = 2, (f"error: cannot start the gate as {who}: {err.strerror or err}"
                                     + ("; set GATE_SANDBOX_UID=0 to run it as root, unisolated" if sandbox.separate
                                        else "") + "\n")
        finally:   # whatever happened, our own annotations and outputs must be commands again
            print(f"::{token}::", file=stdout, flush=True)
            if plan.cache is not None:
                isolation.take_back_folder(plan.cache, sandbox=sandbox, owner=owner)
        if plan.state is not None:
            outcome = interpret_shard(returncode, stderr, state_path=private_state, shard=plan.values["shard"])
        else:
            outcome = interpret(returncode, stderr, json_path=sandboxed["json"], markdown_path=sandboxed["markdown"])
        if returncode == 2 and stderr.startswith("error: cannot start the gate"):
            outcome = replace(outcome, echoed=False)
        if outcome.report is not None:
            outcome = install_reports(outcome, plan, sandboxed, workspace=workspace, owner=owner)
        if outcome.verdict == "shard" and plan.state is not None:
            outcome = install_state(outcome, plan.state, private_state, workspace=workspace, owner=owner)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return replace(outcome, notes=outcome.notes + plan.notes)


def interpret_shard(returncode: int, stderr: str, *, state_path: Path, shard: str) -> GateOutcome:
    """A shard job: exit 0 with a state file that reads back as a gate state is done; anything else could not run."""
    from gate.sharding import MAX_STATE_BYTES, state_from_bytes

    if returncode != 0:
        failed = interpret(returncode if returncode != 1 else 2, stderr, json_path=state_path,
                           markdown_path=state_path)
        return replace(failed, exit_code=2, verdict="error")
    try:
        raw = isolation.read_private(state_path, limit=MAX_STATE_BYTES)
        if raw is None:
            raise ConfigError(f"the gate exited with code 0 but wrote no state file for shard {shard}")
        meta = state_from_bytes(raw, where=f"shard {shard}'s state").meta
    except GateError as err:
        return GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
    return GateOutcome(exit_code=0, verdict="shard", shard=f"{shard}: {meta['num_samples']} samples in "
                                                           f"{meta['num_batches']} batches")


def install_state(outcome: GateOutcome, target: Path, private_state: Path, *, workspace: Path,
                  owner: tuple[int, int] | None) -> GateOutcome:
    """Copy the shard's state file from the gate's private folder into the workspace (checked again, as reports)."""
    from gate.sharding import MAX_STATE_BYTES

    try:
        data = isolation.read_private(private_state, limit=MAX_STATE_BYTES)
        checked = trust.report_path("state", str(target.relative_to(workspace.resolve())), workspace=workspace)
        isolation.make_dirs(checked.parent, root=workspace.resolve(), owner=owner)
        isolation.install({checked: data or b""}, owner=owner)
    except GateError as err:
        return GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
    return replace(outcome, state=checked)


def install_reports(outcome: GateOutcome, plan: CheckPlan, sandboxed: Mapping[str, Path], *, workspace: Path,
                    owner: tuple[int, int] | None) -> GateOutcome:
    """Copy the gate's reports from its private folder into the workspace (the paths checked again: in a
    non-root container the gate ran as our uid and could have swapped a folder for a symlink)."""
    try:
        files: dict[Path, bytes] = {}
        for name, target in plan.reports.items():
            data = isolation.read_private(sandboxed[name])
            if data is None:
                continue
            checked = trust.report_path(name, str(target.relative_to(workspace.resolve())), workspace=workspace)
            isolation.make_dirs(checked.parent, root=workspace.resolve(), owner=owner)
            files[checked] = data
        isolation.install(files, owner=owner)
    except GateError as err:
        return GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
    return replace(outcome, reports=dict(plan.reports))


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
        out = [workflow_command("error", outcome.error or "the gate could not run", title="gate could not run")]
        return out + [workflow_command("warning", note, title="gate report") for note in outcome.notes
                      if note not in (outcome.error or "")]
    out = [
        workflow_command("error", check_message(c), title=f"gate: {c.get('name')}") for c in outcome.checks_with("fail")
    ]
    out += [
        workflow_command("warning", check_message(c), title=f"gate: {c.get('name')}")
        for c in outcome.checks_with("warn")
    ]
    out += [workflow_command("warning", note, title="gate report") for note in outcome.notes]
    return out


ICONS = {"pass": ":white_check_mark:", "warn": ":warning:", "fail": ":x:", "skip": ":fast_forward:"}


def markdown_from_report(report: Mapping[str, Any]) -> str:
    """A Markdown report from the JSON one, every string from it escaped: for when the gate wrote no Markdown, and
    for the PR comment in `mode: comment`, whose report may come from a pull request's own workflow run."""
    verdict = str(report.get("verdict"))
    lines = [f"## {ICONS.get(verdict, '')} gate: {md_text(verdict)}", "", md_text(report.get("summary", "")), ""]
    lines += ["| check | status | summary |", "|---|---|---|"]
    checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
    for check in checks:
        status = str(check.get("status"))
        lines.append(f"| {md_text(check.get('name'))} | {ICONS.get(status, '')} {md_text(status)} "
                     f"| {md_text(check.get('summary', ''))} |")
    for check in checks:
        if check.get("status") in ("fail", "warn"):
            reasons = check_message(check, max_lines=20).splitlines()
            lines += ["", f"**{md_text(check.get('name'))}**", ""] + [f"- {md_text(r)}" for r in reasons]
    return "\n".join(lines) + "\n"


def power_entry(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The report's first power entry with a note (the first entry if none has one); {} when there is none."""
    entries = [e for e in (report or {}).get("power") or [] if isinstance(e, dict)]
    return next((e for e in entries if e.get("note")), entries[0] if entries else {})


def power_markdown(outcome: GateOutcome) -> str:
    """The power note, first in the summary: how large a drop this data could have detected at all."""
    note = power_entry(outcome.report).get("note")
    if not note:
        return ""
    shown = md_text(note)
    head = (outcome.markdown or "")[:4000]
    if shown in head or str(note) in head:   # the gate's Markdown already leads with it
        return ""
    return f"> :information_source: **power:** {shown}\n\n"


def summary_markdown(outcome: GateOutcome) -> str:
    """What the job summary (and the PR comment) shows for this outcome."""
    if outcome.verdict == "shard":
        where = md_code(outcome.state.name) if outcome.state is not None else "its state file"
        return (f"## :jigsaw: gate: shard {md_text(outcome.shard)}\n\nThis job scored its shard and wrote "
                f"{where}; nothing is decided until a `mode: merge` job merges the state files of every shard.\n")
    if outcome.verdict == "error":
        return (
            "## :no_entry: gate could not run\n\n"
            "The gate exited with code 2: the setup is broken (an input, the config, a checkpoint or the data), "
            "so nothing was decided about the model.\n\n"
            + md_fence(outcome.error or "no error message")
        )
    power = power_markdown(outcome)
    if outcome.markdown:
        return power + (outcome.markdown if outcome.markdown.endswith("\n") else outcome.markdown + "\n")
    if outcome.report is not None:
        return power + markdown_from_report(outcome.report)
    return f"## gate: {md_text(outcome.verdict)}\n\nThe gate exited with code {outcome.exit_code} but wrote no report.\n"


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


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def action_outputs(outcome: GateOutcome, *, json_path: Path, markdown_path: Path, workspace: Path) -> dict[str, str]:
    power = power_entry(outcome.report)
    return {
        "verdict": outcome.verdict,
        "exit-code": str(outcome.exit_code),
        "failed-checks": ",".join(str(c.get("name")) for c in outcome.checks_with("fail")),
        "report-json": display_path(json_path, workspace) if outcome.report is not None else "",
        "report-markdown": display_path(markdown_path, workspace) if outcome.markdown is not None else "",
        "power-note": " ".join(str(power.get("note") or "").split()),
        "min-detectable-drop": _number(power.get("min_detectable")),
        "samples-needed": _number(power.get("samples_needed")),
        "state": display_path(outcome.state, workspace) if outcome.state is not None else "",   # a shard job's
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


def post_comment(markdown: str, *, values: Mapping[str, str], environ: Mapping[str, str], stdout: TextIO,
                 footer: str) -> None:
    token = values.get("github-token") or environ.get("GITHUB_TOKEN", "")
    key = values.get("comment-key") or default_comment_key(environ)
    try:
        result = comment_on_pull_request(environ, token=token, key=key, markdown=markdown, footer=footer)
    except CommentError as err:
        print(workflow_command("warning", str(err), title="gate PR comment"), file=stdout)
    else:
        print(f"gate: {result.action} the pull-request comment {result.html_url}".rstrip(), file=stdout)


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
        print("gate outputs: " + escape_data(", ".join(f"{k}={v}" for k, v in outputs.items())), file=stdout)
    for line in annotations(outcome):
        print(line, file=stdout)
    if outcome.error and not outcome.echoed:   # one `error:` line on stderr, whoever found the problem
        line = " ".join(outcome.error.split())
        print(line if line.startswith("error:") else f"error: {line}", file=sys.stderr, flush=True)
    if parse_bool("comment", values.get("comment", "")) and not isolation.token_safe(environ):
        print(workflow_command("warning", "comment: true, but the gate ran as root without a sandbox uid "
                               "(GATE_SANDBOX_UID=0), so the token was dropped before it started: post the comment "
                               "with a later `mode: comment` step", title="gate PR comment"), file=stdout)
    elif parse_bool("comment", values.get("comment", "")):
        post_comment(markdown, values=values, environ=environ, stdout=stdout, footer=run_footer(environ))
    stdout.flush()


# ---------------------------------------------------------------------------------------------------------------
# mode: comment


def comment_footer(environ: Mapping[str, str]) -> str:
    """Which run the report came from: on workflow_run, the triggering run (its URL and conclusion, from GitHub's
    own payload, so a report forged inside that run still shows whether the run failed)."""
    event = trust.read_event(environ.get("GITHUB_EVENT_PATH"))
    run = event.get("workflow_run") if isinstance(event, dict) else None
    if environ.get("GITHUB_EVENT_NAME") == "workflow_run" and isinstance(run, dict):
        url, conclusion = str(run.get("html_url") or ""), str(run.get("conclusion") or "unknown")
        link = f"[the check run]({url})" if re.fullmatch(r"https://[\w.-]+(/[\w.~%/-]*)?", url) else "the check run"
        return f"<sub>report from {link} (concluded: {md_text(conclusion)}) · updated on every push</sub>"
    return run_footer(environ)


def run_comment(values: Mapping[str, str], *, environ: Mapping[str, str], workspace: Path, stdout: TextIO) -> int:
    """Post the JSON report a check step wrote as the PR comment. Loads no checkpoint and runs no gate, so the
    token can live here; the report is data (parsed as JSON, every string escaped), never the Markdown file."""
    name = values.get("json") or DEFAULT_JSON
    path = trust.report_path("json", name, workspace=workspace) if not os.path.isabs(name) else Path(name)
    try:
        raw = isolation.read_private(path, limit=isolation.MAX_REPORT_BYTES)
        report = json.loads(raw) if raw is not None else None
    except (ConfigError, ValueError, RecursionError) as err:
        raise ConfigError(f"mode: comment: the report {name} cannot be read: {err}") from err
    if report is None:
        markdown = (f"## :no_entry: gate could not run\n\nNo report at {md_code(name)}: the check did not finish "
                    "(exit 2: a broken setup, not a verdict on the model). See the check run's log.\n")
    elif not isinstance(report, dict) or report.get("verdict") not in ("pass", "warn", "fail"):
        raise ConfigError(f"mode: comment: {name} is not a gate report (no verdict pass, warn or fail)")
    else:
        power = power_entry(report).get("note")
        markdown = (f"> :information_source: **power:** {md_text(power)}\n\n" if power else "")
        markdown += markdown_from_report(report)
    post_comment(markdown, values={**values, "comment": "true"}, environ=environ, stdout=stdout,
                 footer=comment_footer(environ))
    stdout.flush()
    return 0


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
        settings = parse_settings(values)
        if settings.mode == "comment":
            return run_comment(values, environ=environ, workspace=workspace, stdout=out)
    except GateError as err:
        outcome = GateOutcome(exit_code=2, verdict="error", error=f"error: {err}")
        values = {**values, "comment": "false"}
    else:
        outcome = run_check(values, settings=settings, environ=environ, workspace=workspace, stdout=out)
        if outcome.reports:
            json_path, markdown_path = outcome.reports["json"], outcome.reports["markdown"]
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


def _needs_token(environ: Mapping[str, str]) -> bool:
    values = read_inputs(environ)
    try:
        settings = parse_settings(values)
    except GateError:
        return False
    return settings.mode == "comment" or (settings.comment and isolation.token_safe(environ))


def main(argv: Sequence[str] | None = None) -> int:
    """With arguments, be the `gate` CLI (the container used by hand or in other CI); without, be the Action.

    As the Action it first makes itself non-dumpable and, when its environment holds secrets it does not use
    (the token unless it posts the comment, the runner's ACTIONS_* tokens), executes itself again without them, so
    that not even its own /proc/PID/environ holds them while the gate runs."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "gate", *args])
    isolation.make_non_dumpable()
    cleaned = isolation.entrypoint_environment(os.environ, keep_token=_needs_token(os.environ))
    if cleaned != dict(os.environ):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "gate.action.entrypoint"], cleaned)
    try:
        return run_action(os.environ)
    except Exception as err:  # noqa: BLE001 - a bug here must still end in one line and exit 2, never a pass
        print(f"error: internal error in the Action: {type(err).__name__}: {' '.join(str(err).split())}",
              file=sys.stderr, flush=True)
        print(workflow_command("error", f"internal error in the Action: {type(err).__name__}: {err}",
                               title="gate could not run"), flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
