"""The Action's image run as GitHub's runner runs a container action, and what came out checked.

    PYTHONPATH=. .venv/bin/python .ci/container_check.py --image localhost/gate-ci:check --work /tmp/runs

Each Action run starts the image the way the runner's container-action handler does (`docker run --workdir
/github/workspace -v <checkout>:/github/workspace -v <temp>/_runner_file_commands:/github/file_commands
-v <temp>/_github_workflow:/github/workflow -v <temp>/_github_home:/github/home -e INPUT_... IMAGE`): every input
of action.yml as INPUT_<NAME> (dashes kept, defaults filled in), action.yml's `runs.env` evaluated, the runner's
ACTIONS_* tokens, the event payload, fresh file-command files; the loopback fake GitHub API (tests/fake_github.py)
is reached over `--network host`. The models are the tests' own tiny models (tests/tiny_models.py).

Every scenario prints `ok` or what differed; the script exits 1 if any assertion failed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.fake_github import BOT, PR, REPO, TOKEN, FakeGitHub, make_handler
from tests.github_files import parse_github_output
from tests.tiny_models import make_world

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = os.environ.get("GATE_CC_RUN") or str(os.getpid())   # in every container's name: gate-cc-RUN_ID-...
RUNTIME_TOKEN = "actions-runtime-token-c0ffee"      # ACTIONS_RUNTIME_TOKEN: caches, artifacts
OIDC_TOKEN = "oidc-request-token-5eed"              # ACTIONS_ID_TOKEN_REQUEST_TOKEN: cloud credentials
SECRETS = (TOKEN, RUNTIME_TOKEN, OIDC_TOKEN)
BASE_SHA, HEAD_SHA, MERGE_SHA = "1" * 40, "2" * 40, "3" * 40
SANDBOX_UIDS = range(61000, 62000)   # where gate/action/isolation.py picks the gate's uid
MARKER = "<!-- gate-report:model-gate/gate -->"     # comment.marker_for("model gate/gate")
AUTHOR = {"login": "mallory", "id": 666}            # the fork's author, who can post a comment with our marker
FACTORY = "tiny_models:build_mlp"

# A trusted factory standing in for code that got to run in the gate process: it records every environment it can
# read, tries the runner's file commands, and leaves what it saw in /probe.
SPY = '''\
import json, os, pathlib, secrets
from tiny_models import build_mlp


def build_spy():
    seen = {"uid": os.getuid(), "pid": os.getpid(), "environ": dict(os.environ), "proc": {}, "writes": {}}
    for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
        for leaf in ("environ", "cmdline"):
            try:
                seen["proc"][f"{pid}/{leaf}"] = pathlib.Path(f"/proc/{pid}/{leaf}").read_bytes().decode("latin-1")
            except OSError as err:
                seen["proc"][f"{pid}/{leaf}"] = f"refused: {err.strerror}"
    for name in sorted(os.listdir("/github/file_commands")):
        try:
            with open(f"/github/file_commands/{name}", "a") as handle:
                handle.write("BASH_ENV=/tmp/pwned\\n## gate passed (forged)\\n")
            seen["writes"][name] = "written"
        except OSError as err:
            seen["writes"][name] = f"refused: {err.strerror}"
    pathlib.Path(f"/probe/spy-{secrets.token_hex(4)}.json").write_text(json.dumps(seen))
    return build_mlp()
'''
# A factory that never finishes, for the SIGTERM runs.
SLEEPY = '''\
import sys, time


def build_slowly():
    print("sleepy: building the model", file=sys.stderr, flush=True)
    time.sleep(600)
'''


@dataclass
class Results:
    failures: list[str] = field(default_factory=list)
    passed: int = 0

    def expect(self, scenario: str, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{scenario}: {what}" + (f" ({detail})" if detail else ""))
            print(f"  FAIL {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def equal(self, scenario: str, what: str, found: Any, expected: Any) -> bool:
        return self.expect(scenario, what, found == expected, f"expected {expected!r}, found {found!r}")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]
    files: dict[str, str]       # every file command's content, by its name in /github/file_commands
    seconds: float

    def commands(self, kind: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(f"::{kind} ")]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


# ------------------------------------------------------------------------------------------- the machinery


def podman(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise SystemExit(f"container-check: podman {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done


def action_inputs(given: dict[str, str], *, token: str) -> dict[str, str]:
    """INPUT_* as the runner sets them for a container action: every input of action.yml, its default when the
    step does not give it (`${{ github.token }}` evaluated), the name upper-cased with its dashes kept; then
    action.yml's `runs.env` with `${{ inputs.x }}` evaluated."""
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    unknown = set(given) - set(action["inputs"])
    if unknown:
        raise SystemExit(f"container-check: inputs not in action.yml: {sorted(unknown)}")
    values = {}
    for name, spec in action["inputs"].items():
        value = given.get(name, str(spec.get("default", "")))
        values[name] = value.replace("${{ github.token }}", token)
    env = {f"INPUT_{name.upper()}": value for name, value in values.items()}
    for key, template in (action["runs"].get("env") or {}).items():
        env[key] = re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], str(template))
    return env


def fork_event() -> dict[str, Any]:
    return {"number": PR, "pull_request": {
        "number": PR,
        "head": {"sha": HEAD_SHA, "ref": "patch-1", "repo": {"full_name": "mallory/models", "fork": True}},
        "base": {"sha": BASE_SHA, "ref": "main", "repo": {"full_name": REPO}}}}


def chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


@dataclass
class Runner:
    """One self-hosted or GitHub-hosted runner: its temp folders belong to its uid, as does the checkout."""

    image: str
    work: Path
    api_url: str
    count: int = 0

    def prepare(self, ws: Path, inputs: dict[str, str], *, uid: int,
                probe: Path | None = None) -> tuple[list[str], Path, dict[str, str]]:
        """`podman run` arguments up to the image, as the runner's handler builds its `docker run`; the file-command
        folder and the file names behind each variable."""
        self.count += 1
        temp = self.work / f"runner-{self.count}"
        home, workflow, files = temp / "_github_home", temp / "_github_workflow", temp / "_runner_file_commands"
        for d in (home, workflow, files):
            d.mkdir(parents=True)
        suffix = f"{self.count:08x}-0000-4000-8000-000000000000"
        names = {"GITHUB_OUTPUT": f"set_output_{suffix}", "GITHUB_STEP_SUMMARY": f"step_summary_{suffix}",
                 "GITHUB_ENV": f"set_env_{suffix}", "GITHUB_PATH": f"add_path_{suffix}",
                 "GITHUB_STATE": f"save_state_{suffix}"}
        for name in names.values():
            (files / name).write_text("", encoding="utf-8")
        (workflow / "event.json").write_text(json.dumps(fork_event()), encoding="utf-8")
        chown_tree(temp, uid)
        env = {
            "HOME": "/github/home", "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_REPOSITORY": REPO, "GITHUB_WORKFLOW": "model gate", "GITHUB_JOB": "gate", "GITHUB_SHA": MERGE_SHA,
            "GITHUB_REF": f"refs/pull/{PR}/merge", "GITHUB_RUN_ID": "4242", "GITHUB_SERVER_URL": "https://github.test",
            "GITHUB_API_URL": self.api_url, "RUNNER_OS": "Linux", "RUNNER_TEMP": "/home/runner/work/_temp",
            "ACTIONS_RUNTIME_TOKEN": RUNTIME_TOKEN, "ACTIONS_RUNTIME_URL": "http://127.0.0.1:9/",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": OIDC_TOKEN, "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/oidc",
            **{key: f"/github/file_commands/{name}" for key, name in names.items()},
            **action_inputs(inputs, token=TOKEN),
        }
        args = ["--name", f"gate-cc-{RUN_ID}-{self.count}", "--workdir", "/github/workspace",
                "--network", "host", "-v", f"{ws}:/github/workspace", "-v", f"{home}:/github/home",
                "-v", f"{workflow}:/github/workflow", "-v", f"{files}:/github/file_commands"]
        if probe is not None:
            args += ["-v", f"{probe}:/probe"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        return args, files, names

    @staticmethod
    def collect(returncode: int, stdout: str, stderr: str, files: Path, names: dict[str, str],
                seconds: float) -> Run:
        contents = {key: (files / name).read_text(encoding="utf-8") for key, name in names.items()}
        try:
            outputs = parse_github_output(contents["GITHUB_OUTPUT"])
        except ValueError:   # not what the entrypoint writes: shown whole, so every output assertion fails
            outputs = {"(GITHUB_OUTPUT that GitHub cannot read)": contents["GITHUB_OUTPUT"]}
        return Run(returncode, stdout, stderr, contents["GITHUB_STEP_SUMMARY"], outputs, contents, seconds)

    def run(self, ws: Path, inputs: dict[str, str], *, uid: int, probe: Path | None = None,
            timeout: float = 300) -> Run:
        args, files, names = self.prepare(ws, inputs, uid=uid, probe=probe)
        t0 = time.monotonic()
        done = podman("run", "--rm", *args, self.image, timeout=timeout)
        return self.collect(done.returncode, done.stdout, done.stderr, files, names, time.monotonic() - t0)


def make_template(work: Path) -> Path:
    """The checkout as the fork-safe example workflow lays it out: `base/` (the base branch: the factory code),
    `pr/` (the pull request: checkpoints and data), `baseline/` (production)."""
    world = make_world(work / "world")
    ws = work / "template"
    for d in ("base/.git", "pr/.git", "pr/models", "pr/eval", "baseline"):
        (ws / d).mkdir(parents=True)
    (ws / "base" / ".git" / "HEAD").write_text(BASE_SHA + "\n", encoding="utf-8")
    (ws / "pr" / ".git" / "HEAD").write_text(HEAD_SHA + "\n", encoding="utf-8")
    shutil.copyfile(ROOT / "tests" / "tiny_models.py", ws / "base" / "tiny_models.py")
    (ws / "base" / "spy.py").write_text(SPY, encoding="utf-8")
    (ws / "base" / "sleepy.py").write_text(SLEEPY, encoding="utf-8")
    shutil.copyfile(world.good, ws / "pr" / "models" / "good.pt")
    shutil.copyfile(world.regressed, ws / "pr" / "models" / "regressed.pt")
    shutil.copyfile(world.data, ws / "pr" / "eval" / "eval.npz")
    shutil.copyfile(world.baseline, ws / "baseline" / "baseline.pt")
    for p in [ws, *ws.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return ws


def workspace(template: Path, work: Path, name: str, uid: int) -> Path:
    ws = work / name
    shutil.copytree(template, ws)
    chown_tree(ws, uid)
    return ws


CHECK = {"policy-path": "base", "model-factory": FACTORY, "baseline": "baseline/baseline.pt",
         "data": "pr/eval/eval.npz"}


def show(run: Run) -> str:
    return (f"rc={run.returncode} in {run.seconds:.0f}s\n--- stdout\n{run.stdout[-3000:]}\n"
            f"--- stderr\n{run.stderr[-3000:]}")


# ------------------------------------------------------------------------------------------- the scenarios


def assert_result(res: Results, scenario: str, run: Run, ws: Path, *, uid: int, exit_code: int) -> dict | None:
    """A run whose gate decided: exit code, outputs, summary, annotations and reports all agree, and the reports
    in the workspace belong to the workspace's owner."""
    print(f"{scenario}: exit {run.returncode} in {run.seconds:.0f}s", flush=True)
    if not res.equal(scenario, "exit code", run.returncode, exit_code):
        print(show(run))
    report_path = ws / "gate-report" / "report.json"
    if not res.expect(scenario, "the JSON report is in the workspace", report_path.is_file(), show(run)):
        return None
    report = json.loads(report_path.read_text(encoding="utf-8"))
    markdown = (ws / "gate-report" / "report.md").read_text(encoding="utf-8")
    failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
    warned = [c["name"] for c in report["checks"] if c["status"] == "warn"]
    res.equal(scenario, "report exit_code", report["exit_code"], exit_code)
    res.equal(scenario, "outputs", {k: run.outputs.get(k) for k in ("verdict", "exit-code", "failed-checks",
                                                                       "report-json", "report-markdown")},
              {"verdict": report["verdict"], "exit-code": str(exit_code), "failed-checks": ",".join(failed),
               "report-json": "gate-report/report.json", "report-markdown": "gate-report/report.md"})
    res.expect(scenario, "every output of action.yml is set",
               set(yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))["outputs"]) <= set(run.outputs),
               f"outputs {sorted(run.outputs)}")
    res.expect(scenario, "the job summary holds the gate's Markdown report", markdown.strip() in run.summary,
               f"summary starts {run.summary[:200]!r}")
    res.expect(scenario, "no forged line in the summary", "forged" not in run.summary)
    titles = [re.match(r"::\w+ title=gate%3A (\w+)::", c) for c in run.commands("error")]
    res.equal(scenario, "one ::error annotation per failed check, in order",
              [t.group(1) if t else None for t in titles], failed)
    titles = [re.match(r"::\w+ title=gate%3A (\w+)::", c) for c in run.commands("warning")]
    res.equal(scenario, "one ::warning annotation per warning check",
              [t.group(1) for t in titles if t], warned)
    for name in ("report.json", "report.md"):
        info = (ws / "gate-report" / name).stat()
        res.equal(scenario, f"gate-report/{name} owner", (info.st_uid, info.st_gid), (uid, uid))
    info = (ws / "gate-report").stat()
    res.equal(scenario, "gate-report/ owner", (info.st_uid, info.st_gid), (uid, uid))
    res.equal(scenario, "GITHUB_ENV and GITHUB_PATH untouched", run.files["GITHUB_ENV"] + run.files["GITHUB_PATH"], "")
    res.expect(scenario, "no traceback on stderr", "Traceback" not in run.stderr, run.stderr[-2000:])
    return report


def scenario_runs_by_owner(res: Results, runner: Runner, template: Path, github: FakeGitHub) -> None:
    """The runner's uid owns the checkout and the file commands: 1001 (GitHub-hosted), 1000, root (self-hosted)."""
    ws = workspace(template, runner.work, "ws-1001", 1001)

    run = runner.run(ws, {**CHECK, "candidate": "pr/models/good.pt"}, uid=1001)
    report = assert_result(res, "good candidate, workspace uid 1001", run, ws, uid=1001, exit_code=0)
    if report is not None:
        res.expect("good candidate", "verdict pass or warn", report["verdict"] in ("pass", "warn"), report["verdict"])
        res.equal("good candidate", "no ::error annotation", run.commands("error"), [])

    # mode: comment posts the report the check step wrote; a PR author's comment with our marker is left alone.
    planted = github.add(PR, f"{MARKER}\nplanted by the pull request's author", user=AUTHOR)
    run = runner.run(ws, {"mode": "comment"}, uid=1001)
    print(f"mode: comment (first): exit {run.returncode} in {run.seconds:.0f}s", flush=True)
    ours = [c for c in github.marked(PR, MARKER) if c["user"] == BOT]
    res.equal("comment (first)", "exit code", run.returncode, 0) or print(show(run))
    res.equal("comment (first)", "comments by the token's identity", len(ours), 1)
    res.equal("comment (first)", "comments edited", github.edited, [])
    first_id = ours[0]["id"] if ours else None
    if ours:
        res.expect("comment (first)", "the comment holds the verdict",
                   f"gate: {report['verdict'] if report else '?'}" in ours[0]["body"], ours[0]["body"][:300])
    res.expect("comment (first)", "stdout says created", "created the pull-request comment" in run.stdout, run.stdout)

    run = runner.run(ws, {**CHECK, "candidate": "pr/models/regressed.pt"}, uid=1001)
    report = assert_result(res, "regressed candidate, workspace uid 1001", run, ws, uid=1001, exit_code=1)
    if report is not None:
        res.equal("regressed candidate", "verdict", report["verdict"], "fail")
        res.expect("regressed candidate", "the summary says FAIL", "FAIL" in run.summary, run.summary[:300])

    run = runner.run(ws, {"mode": "comment"}, uid=1001)
    print(f"mode: comment (second): exit {run.returncode} in {run.seconds:.0f}s", flush=True)
    ours = [c for c in github.marked(PR, MARKER) if c["user"] == BOT]
    res.equal("comment (second)", "exit code", run.returncode, 0) or print(show(run))
    res.equal("comment (second)", "still one comment by the token's identity", [c["id"] for c in ours], [first_id])
    res.equal("comment (second)", "the same comment was edited", github.edited, [first_id])
    if ours:
        res.expect("comment (second)", "the comment now says fail", "gate: fail" in ours[0]["body"],
                   ours[0]["body"][:300])
    res.expect("comment (second)", "the author's planted comment is unchanged",
               planted["body"] == f"{MARKER}\nplanted by the pull request's author")

    run = runner.run(ws, {**CHECK, "candidate": "pr/models/missing.pt"}, uid=1001)
    scenario = "missing checkpoint"
    print(f"{scenario}: exit {run.returncode} in {run.seconds:.0f}s", flush=True)
    res.equal(scenario, "exit code", run.returncode, 2) or print(show(run))
    res.expect(scenario, "one error: line naming the file",
               len(run.error_lines) == 1 and "missing.pt" in run.error_lines[0], run.stderr[-2000:])
    res.expect(scenario, "no traceback", "Traceback" not in run.stderr)
    res.equal(scenario, "outputs", run.outputs, {
        "verdict": "error", "exit-code": "2", "failed-checks": "", "report-json": "", "report-markdown": "",
        "power-note": "", "min-detectable-drop": "", "samples-needed": "", "state": ""})
    if run.error_lines:
        res.equal(scenario, "annotations", run.commands("error"),
                  [f"::error title=gate could not run::{run.error_lines[0]}"])
    res.expect(scenario, "the summary says could not run", "could not run" in run.summary, run.summary[:300])
    res.expect(scenario, "no stale report left from the runs before",
               not (ws / "gate-report" / "report.json").exists())

    for uid in (1000, 0):
        ws = workspace(template, runner.work, f"ws-{uid}", uid)
        run = runner.run(ws, {**CHECK, "candidate": "pr/models/regressed.pt"}, uid=uid)
        assert_result(res, f"regressed candidate, workspace uid {uid}", run, ws, uid=uid, exit_code=1)


def scenario_token(res: Results, runner: Runner, template: Path, github: FakeGitHub) -> None:
    """comment: true keeps the token in the entrypoint while the gate runs: a factory in the gate process must not
    find it (nor the runner's ACTIONS_* tokens) anywhere it can read, nor write the file commands."""
    scenario = "a factory in the gate process looks for the token"
    ws = workspace(template, runner.work, "ws-spy", 1001)
    probe = runner.work / "probe"
    probe.mkdir()
    os.chmod(probe, 0o777)
    before = len(github.comments.get(PR, []))
    run = runner.run(ws, {**CHECK, "model-factory": "spy:build_spy", "candidate": "pr/models/good.pt",
                          "comment": "true"}, uid=1001, probe=probe)
    print(f"{scenario}: exit {run.returncode} in {run.seconds:.0f}s", flush=True)
    res.equal(scenario, "exit code", run.returncode, 0) or print(show(run))
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(probe.glob("spy-*.json"))]
    res.equal(scenario, "the spy ran for the baseline and the candidate", len(records), 2)
    dumped = json.dumps(records)
    for secret in SECRETS:
        res.expect(scenario, f"{secret} is absent from all the gate process could read", secret not in dumped)
    res.equal(scenario, "one gate process (one uid) built both models", len({r["uid"] for r in records}), 1)
    for record in records:
        res.expect(scenario, "the gate runs as a sandbox uid (61000-61999), not root nor the workspace's owner",
                   record["uid"] in SANDBOX_UIDS, f"uid {record['uid']}")
        leaked = sorted(k for k in record["environ"] if k.startswith(("INPUT_", "ACTIONS_"))
                        or k in ("GITHUB_TOKEN", "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"))
        res.equal(scenario, "secret or file-command variables in the gate's environment", leaked, [])
        others = {k: v for k, v in record["proc"].items() if k.endswith("/environ") and not v.startswith("refused")
                  and k != f"{record['pid']}/environ"}
        res.equal(scenario, "other processes' environments the gate could read", sorted(others), [])
        res.expect(scenario, "every file command refused the write",
                   record["writes"] and set(record["writes"].values()) == {"refused: Permission denied"},
                   str(record["writes"]))
    res.equal(scenario, "GITHUB_ENV and GITHUB_PATH untouched", run.files["GITHUB_ENV"] + run.files["GITHUB_PATH"], "")
    res.expect(scenario, "no forged line in the summary", "forged" not in run.summary)
    res.equal(scenario, "verdict output", run.outputs.get("verdict") in ("pass", "warn"), True)
    ours = [c for c in github.marked(PR, MARKER) if c["user"] == BOT]
    res.equal(scenario, "the comment was posted by the entrypoint, still one of ours", len(ours), 1)
    res.equal(scenario, "no new comment", len(github.comments.get(PR, [])), before)


def scenario_cli(res: Results, runner: Runner, template: Path) -> None:
    """`docker run -v "$PWD:/work" IMAGE check ...` by a user whose uid is not root."""
    scenario = "podman run --user 1000:1000 -v $PWD:/work IMAGE check"
    ws = workspace(template, runner.work, "ws-cli", 1000)
    shutil.copyfile(ws / "base" / "tiny_models.py", ws / "tiny_models.py")
    os.lchown(ws / "tiny_models.py", 1000, 1000)
    t0 = time.monotonic()
    done = podman("run", "--rm", "--user", "1000:1000", "-v", f"{ws}:/work", runner.image, "check",
                  "pr/models/regressed.pt", "--baseline", "baseline/baseline.pt", "--data", "pr/eval/eval.npz",
                  "--model-factory", FACTORY, "--json", "out/report.json", timeout=300)
    print(f"{scenario}: exit {done.returncode} in {time.monotonic() - t0:.0f}s", flush=True)
    res.equal(scenario, "exit code (the regressed candidate)", done.returncode, 1) or print(done.stdout, done.stderr)
    report = ws / "out" / "report.json"
    if res.expect(scenario, "the report was written", report.is_file()):
        res.equal(scenario, "report verdict", json.loads(report.read_text(encoding="utf-8"))["verdict"], "fail")
        res.equal(scenario, "report owner", report.stat().st_uid, 1000)
    res.expect(scenario, "the console verdict", "verdict: FAIL" in done.stdout, done.stdout[-1000:])
    res.expect(scenario, "no traceback", "Traceback" not in done.stderr, done.stderr[-2000:])


def stop_when_building(name: str, args: list[str], command: list[str]) -> tuple[
        str, subprocess.CompletedProcess[str], float, bool]:
    """Start a container detached, wait until the factory is building, `podman stop` it (SIGTERM to PID 1, SIGKILL
    after 30 s): its exit code, its logs, how long the stop took, and whether the gate got as far as the factory."""
    podman("rm", "--force", name)
    podman("run", "-d", "--name", name, *args, *command, check=True)
    deadline, logs = time.monotonic() + 180, ""
    while time.monotonic() < deadline:
        logs = podman("logs", name).stderr
        running = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if "sleepy: building" in logs or running == "false":
            break
        time.sleep(0.5)
    t0 = time.monotonic()
    podman("stop", "--time", "30", name, timeout=120)
    stopped_in = time.monotonic() - t0
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    done = podman("logs", name)
    podman("rm", "--force", name)
    return code, done, stopped_in, "sleepy: building" in logs


def scenario_sigterm(res: Results, runner: Runner, template: Path) -> None:
    """`podman stop` (a cancelled job): tini forwards SIGTERM. The CLI ends with its one `error:` line and 143; the
    Action passes the signal on to the gate, which prints that line, and reports exit 2 (could not run) with the
    outputs saying error and no report."""
    ws = workspace(template, runner.work, "ws-sigterm", 1000)
    for name in ("sleepy.py", "tiny_models.py"):
        shutil.copyfile(ws / "base" / name, ws / name)
        os.lchown(ws / name, 1000, 1000)

    scenario = "SIGTERM, CLI (podman run --user 1000:1000 IMAGE check ...)"
    code, logs, stopped_in, started = stop_when_building(
        f"gate-cc-{RUN_ID}-stop-cli",
        ["--user", "1000:1000", "-v", f"{ws}:/work"],
        [runner.image, "check", "pr/models/good.pt", "--baseline", "baseline/baseline.pt", "--data",
         "pr/eval/eval.npz", "--model-factory", "sleepy:build_slowly", "--json", "out/sigterm.json"])
    print(f"{scenario}: exit {code}, stopped in {stopped_in:.1f}s", flush=True)
    if res.expect(scenario, "the gate reached the factory", started, logs.stderr[-2000:]):
        errors = [line for line in logs.stderr.splitlines() if line.startswith("error:")]
        res.equal(scenario, "exit code", code, "143")
        res.expect(scenario, "stopped by SIGTERM, not killed after the grace period", stopped_in < 25,
                   f"{stopped_in:.1f}s")
        res.expect(scenario, "exactly one error: line, about SIGTERM",
                   len(errors) == 1 and "SIGTERM" in errors[0], "\n".join(errors) or logs.stderr[-1500:])
        res.expect(scenario, "no traceback", "Traceback" not in logs.stderr, logs.stderr[-1500:])
        res.expect(scenario, "no report", not (ws / "out" / "sigterm.json").exists())

    scenario = "SIGTERM, Action (as the runner starts it)"
    args, files, names = runner.prepare(ws, {**CHECK, "candidate": "pr/models/good.pt",
                                             "model-factory": "sleepy:build_slowly"}, uid=1000)
    code, logs, stopped_in, started = stop_when_building(f"gate-cc-{RUN_ID}-stop-action", args[2:], [runner.image])
    run = runner.collect(int(code) if code.lstrip("-").isdigit() else -1, logs.stdout, logs.stderr, files, names,
                         stopped_in)
    print(f"{scenario}: exit {code}, stopped in {stopped_in:.1f}s", flush=True)
    if res.expect(scenario, "the gate reached the factory", started, logs.stderr[-2000:]):
        res.equal(scenario, "exit code (could not run)", code, "2")
        res.expect(scenario, "stopped by SIGTERM, not killed after the grace period", stopped_in < 25,
                   f"{stopped_in:.1f}s")
        res.expect(scenario, "exactly one error: line, about the signal",
                   len(run.error_lines) == 1 and "terminated" in run.error_lines[0],
                   "\n".join(run.error_lines) or logs.stderr[-1500:])
        res.expect(scenario, "no traceback", "Traceback" not in logs.stderr, logs.stderr[-1500:])
        res.equal(scenario, "verdict and exit-code outputs",
                  (run.outputs.get("verdict"), run.outputs.get("exit-code")), ("error", "2"))
        res.expect(scenario, "no report", not (ws / "gate-report" / "report.json").exists())


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--work", type=Path, required=True, help="a new folder for workspaces and runner files")
    parser.add_argument("--only", nargs="*", default=[], help="scenario names: owners token cli sigterm")
    opts = parser.parse_args()
    opts.work.mkdir(parents=True)
    os.chmod(opts.work, 0o755)
    github = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(github))
    github.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    runner = Runner(image=opts.image, work=opts.work, api_url=github.url)
    template = make_template(opts.work)
    res = Results()
    scenarios: dict[str, Callable[[], None]] = {
        "owners": lambda: scenario_runs_by_owner(res, runner, template, github),
        "token": lambda: scenario_token(res, runner, template, github),
        "cli": lambda: scenario_cli(res, runner, template),
        "sigterm": lambda: scenario_sigterm(res, runner, template),
    }
    t0 = time.monotonic()
    for name, scenario in scenarios.items():
        if not opts.only or name in opts.only:
            scenario()
    server.shutdown()
    print(f"container-check: {res.passed} assertions held, {len(res.failures)} failed "
          f"({time.monotonic() - t0:.0f}s of container runs)")
    for failure in res.failures:
        print(f"container-check: FAILED: {failure}", file=sys.stderr)
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
