"""The Action's trust boundaries, tried as an attacker would, one test per vector, on real gate runs of tiny models.

The workspace is laid out as the shipped example workflow makes it: `base/` is the base branch (policy: gate.yaml and
the factory modules), `pr/` is the pull request from a fork (checkpoints, data, and its own hostile gate.yaml and
evil.py, whose import writes a marker file), `baseline/` the production checkpoint. Each payload test asserts that its
marker was not written and the exit code (2, with one `error:` line and no report), or that the secret is absent.

The entrypoint is started the ways a container can start it: as root (the gate then runs as an unprivileged uid),
as root with GATE_SANDBOX_UID=0 (no second uid), and as a non-root user. As a non-root user the test runs it as
uid 61001 when pytest is root, else as pytest's own user.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.action_env import IS_ROOT, NON_ROOT_UID, open_to_others, runnable_python
from tests.fake_github import BOT, PR, REPO, TOKEN, FakeGitHub
from tests.fake_github import github  # noqa: F401 - the fixture
from tests.github_files import parse_github_output

RUNTIME_TOKEN = "actions-runtime-token-6f1d"       # ACTIONS_RUNTIME_TOKEN: caches, artifacts
OIDC_TOKEN = "oidc-request-token-93ab"             # ACTIONS_ID_TOKEN_REQUEST_TOKEN: cloud credentials
SECRETS = (TOKEN, RUNTIME_TOKEN, OIDC_TOKEN)
BASE_SHA, HEAD_SHA, MERGE_SHA = "1" * 40, "2" * 40, "3" * 40
from gate.action.isolation import SANDBOX_UIDS  # noqa: E402
MODES = ["root-sandbox", "root-unsandboxed", "non-root"] if IS_ROOT else ["non-root"]
DEFAULT_MODE = MODES[0]

ARCHITECTURE = "torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))"
TINYMLP = f"import torch\n\n\ndef make_model():\n    return {ARCHITECTURE}\n"
# A trusted factory standing in for code that got to run in the gate process: it looks for every secret and tries
# every file command, and records what it found in the probe folder.
SPY = f'''\
import json, os, pathlib, secrets, torch

FORGED = {{"GITHUB_ENV": "BASH_ENV=/tmp/pwned\\n", "GITHUB_OUTPUT": "verdict=pass\\n",
          "GITHUB_STEP_SUMMARY": "## gate passed (forged)\\n", "GITHUB_PATH": "/tmp/pwned\\n"}}


def _ancestors():
    pid, out = os.getppid(), []
    while pid > 1 and len(out) < 8:
        out.append(pid)
        try:
            pid = int(pathlib.Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def make_model():
    seen = {{"uid": os.getuid(), "environ": dict(os.environ), "proc": {{}}, "writes": {{}}}}
    for pid in _ancestors():
        for leaf in ("environ", "mem"):
            try:
                with open(f"/proc/{{pid}}/{{leaf}}", "rb") as fh:
                    seen["proc"][f"{{pid}}/{{leaf}}"] = fh.read(1 << 20).decode("latin-1") if leaf == "environ" else "opened"
            except OSError as err:
                seen["proc"][f"{{pid}}/{{leaf}}"] = f"refused: {{err.strerror}}"
    targets = json.loads(os.environ.get("GATE_TEST_TARGETS", "{{}}"))
    for name, line in FORGED.items():
        for path in {{os.environ.get(name), targets.get(name)}} - {{None}}:
            try:
                with open(path, "a") as fh:
                    fh.write(line)
                seen["writes"][name] = "written"
            except OSError as err:
                seen["writes"][name] = f"refused: {{err.strerror}}"
    print("::set-output name=verdict::pass")
    probe = pathlib.Path(os.environ["GATE_TEST_PROBE"])
    (probe / f"spy-{{secrets.token_hex(4)}}.json").write_text(json.dumps(seen))
    return {ARCHITECTURE}
'''
EXITS = "def make_model():\n    raise SystemExit(0)\n"
SLOW = f"""import os, pathlib, time, torch


def make_model():
    pathlib.Path(os.environ["GATE_TEST_PROBE"], "started").write_text("")
    time.sleep(60)
    return {ARCHITECTURE}
"""
BASE_CONFIG = "version: 1\nmodel:\n  factory: tinymlp:make_model\n"


@dataclass(frozen=True)
class Layout:
    tmp: Path
    ws: Path
    files: Path       # the runner's file commands (outside the workspace, as /github/file_commands is)
    probe: Path       # world-writable: a payload that ran could always leave its marker here
    outside: Path     # the rest of the machine
    marker: Path

    def file(self, name: str) -> Path:
        return self.files / name


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier as state_dicts (production, identical, broken) and 300 samples it labels itself."""
    import numpy as np
    import torch

    out = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = eval(ARCHITECTURE)  # noqa: S307 - our own constant
    x = np.random.default_rng(0).normal(size=(3000, 8)).astype("float32")
    with torch.no_grad():
        model[2].bias -= model(torch.from_numpy(x)).mean(0)
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    picked = np.concatenate([np.flatnonzero(y == k)[:100] for k in range(3)])
    np.savez(out / "holdout.npz", x=x[picked], labels=y[picked].astype("int64"))
    torch.save(model.state_dict(), out / "production.pt")
    broken = {k: v.clone() for k, v in model.state_dict().items()}
    broken["2.bias"][0] -= 50.0
    torch.save(broken, out / "broken.pt")
    return out


def git_checkout(path: Path, sha: str) -> None:
    (path / ".git").mkdir(parents=True)
    (path / ".git" / "HEAD").write_text(sha + "\n", encoding="utf-8")


@pytest.fixture
def layout(tmp_path: Path, checkpoints: Path) -> Layout:
    ws, files, probe, outside = (tmp_path / n for n in ("ws", "file_commands", "probe", "outside"))
    marker = probe / "PWNED"
    base, pr = ws / "base", ws / "pr"
    for d in (base, pr / "models", pr / "eval", ws / "baseline", files, outside):
        d.mkdir(parents=True)
    git_checkout(base, BASE_SHA)
    git_checkout(pr, HEAD_SHA)
    (base / "gate.yaml").write_text(BASE_CONFIG, encoding="utf-8")
    (base / "tinymlp.py").write_text(TINYMLP, encoding="utf-8")
    (base / "spy.py").write_text(SPY, encoding="utf-8")
    (base / "exits.py").write_text(EXITS, encoding="utf-8")
    (base / "slow.py").write_text(SLOW, encoding="utf-8")
    # The pull request's own policy: a config pointing at its own factory, which runs code on import.
    evil = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\n\n{TINYMLP}\n\ndef load():\n    return []\n"
    (pr / "evil.py").write_text(evil, encoding="utf-8")
    (pr / "gate.yaml").write_text("version: 1\nmodel:\n  factory: pr.evil:make_model\n", encoding="utf-8")
    shutil.copyfile(checkpoints / "production.pt", ws / "baseline" / "production.pt")
    shutil.copyfile(checkpoints / "production.pt", pr / "models" / "same.pt")
    shutil.copyfile(checkpoints / "broken.pt", pr / "models" / "broken.pt")
    shutil.copyfile(checkpoints / "holdout.npz", pr / "eval" / "holdout.npz")
    for name in ("summary.md", "output", "env", "path"):
        (files / name).write_text("", encoding="utf-8")
    probe.mkdir()
    os.chmod(probe, 0o777)
    open_to_others(tmp_path)
    return Layout(tmp_path, ws, files, probe, outside, marker)


def fork_event(name: str = "pull_request") -> dict[str, Any]:
    return {"pull_request": {"number": PR, "head": {"sha": HEAD_SHA, "repo": {"full_name": "mallory/models",
                                                                                 "fork": True}},
                             "base": {"sha": BASE_SHA, "repo": {"full_name": REPO}}}}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_entrypoint(lay: Layout, inputs: dict[str, str], *, mode: str = DEFAULT_MODE, event: Any = None,
                   event_name: str = "pull_request", extra_env: dict[str, str] | None = None,
                   api_url: str = "http://127.0.0.1:9", via_init: bool = False) -> Run:
    """The entrypoint as the runner starts a container action: INPUT_* (dashes kept, and the runs.env underscore
    copies), the ACTIONS_* tokens, file commands, an event payload."""
    python, pythonpath = runnable_python()
    event_path = lay.tmp / "event.json"
    event_path.write_text(json.dumps(fork_event() if event is None else event), encoding="utf-8")
    environ = {
        "PATH": "/usr/bin:/bin", "HOME": str(lay.probe), "LANG": "C.UTF-8", "PYTHONPATH": pythonpath,
        "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(lay.ws), "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path), "GITHUB_REPOSITORY": REPO, "GITHUB_WORKFLOW": "model gate",
        "GITHUB_JOB": "gate", "GITHUB_SHA": MERGE_SHA, "GITHUB_API_URL": api_url,
        "GITHUB_STEP_SUMMARY": str(lay.file("summary.md")), "GITHUB_OUTPUT": str(lay.file("output")),
        "GITHUB_ENV": str(lay.file("env")), "GITHUB_PATH": str(lay.file("path")),
        "GITHUB_TOKEN": TOKEN, "ACTIONS_RUNTIME_TOKEN": RUNTIME_TOKEN, "ACTIONS_RUNTIME_URL": "http://127.0.0.1:9/",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": OIDC_TOKEN, "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/oidc",
        "GATE_TEST_PROBE": str(lay.probe),
    }
    defaults = {"baseline": "baseline/production.pt", "data": "pr/eval/holdout.npz", "github-token": TOKEN}
    for name, value in {**defaults, **inputs}.items():
        environ["INPUT_" + name.upper()] = value
        if "-" in name:
            environ["INPUT_" + name.upper().replace("-", "_")] = value
    environ.update(extra_env or {})
    kwargs: dict[str, Any] = {}
    if mode == "root-unsandboxed":
        environ["GATE_SANDBOX_UID"] = "0"
    if mode == "non-root" and IS_ROOT:
        kwargs = {"user": NON_ROOT_UID, "group": NON_ROOT_UID, "extra_groups": []}
        for path in [lay.ws, *lay.ws.rglob("*"), lay.files, *lay.files.iterdir()]:
            os.lchown(path, NON_ROOT_UID, NON_ROOT_UID)
    argv = [python, "-m", "gate.action.entrypoint"]
    if via_init:   # a parent that keeps the runner's environment, as tini (pid 1) does in the Action's container
        argv = ["/bin/sh", "-c", f"{shlex.join(argv)}; exit $?"]
    done = subprocess.run(argv, cwd=lay.ws, env=environ, capture_output=True,
                          text=True, timeout=600, check=False, **kwargs)
    return Run(done.returncode, done.stdout, done.stderr, lay.file("summary.md").read_text(encoding="utf-8"),
               parse_github_output(lay.file("output").read_text(encoding="utf-8")))


def assert_could_not_run(run: Run, lay: Layout, *, says: str, report_dir: bool = True) -> None:
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1 and says in run.error_lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert run.outputs["verdict"] == "error" and run.outputs["report-json"] == ""
    if report_dir:
        assert not (lay.ws / "gate-report" / "report.json").exists()
    assert not lay.marker.exists()


def rendered(markdown: str) -> str:
    """HTML from an independent CommonMark parser (raw HTML on, tables on, as GitHub's renderer has them)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def assert_inert(markdown: str) -> None:
    html = rendered(markdown)
    assert "<img" not in html and "onerror=alert(1)>" not in html
    assert html.count("<details") == html.count("</details>")
    assert "@admins" not in html
    links = re.findall(r"<a href=\"([^\"]*)\"", html)
    assert len(links) == html.count("<a ") and all(u.startswith("https://github.test/") for u in links), links


def spy_records(lay: Layout) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(lay.probe.glob("spy-*.json"))]


# --------------------------------------------------------------------------- the token never meets PR files


@pytest.mark.skipif(not IS_ROOT, reason="GATE_SANDBOX_UID only applies to an entrypoint started as root")
def test_root_gate_refused_while_a_parent_holds_the_runners_tokens(layout: Layout):
    """The entrypoint drops the tokens from its own environment, but the process that started it (tini in the
    container) keeps them: a gate running as root could read them there, so GATE_SANDBOX_UID=0 is refused."""
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml"},
                         mode="root-unsandboxed", via_init=True)
    assert_could_not_run(run, layout, says="GATE_SANDBOX_UID=0 would run the gate as root")
    assert "/environ" in run.error_lines[0]
    for secret in SECRETS:
        assert secret not in run.stderr + run.stdout
    # The default (a sandbox uid) under the same parent runs: the uid cannot read root's processes.
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml"},
                         mode="root-sandbox", via_init=True)
    assert run.returncode == 0, run.stderr



@pytest.mark.slow
@pytest.mark.parametrize("comment", [False, True], ids=["check", "check+comment"])
@pytest.mark.parametrize("mode", MODES)
def test_no_secret_reaches_the_gate_process(layout: Layout, github: FakeGitHub, mode: str, comment: bool):
    separate_uid = mode == "root-sandbox"
    # With a second uid, the spy is even told where the file commands are, as /github/file_commands is public.
    targets = {n: str(layout.file(f)) for n, f in (("GITHUB_ENV", "env"), ("GITHUB_OUTPUT", "output"),
                                                   ("GITHUB_STEP_SUMMARY", "summary.md"), ("GITHUB_PATH", "path"))}
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml",
                                  "model-factory": "spy:make_model", "comment": str(comment).lower()},
                         mode=mode, api_url=github.url,
                         extra_env={"GATE_TEST_TARGETS": json.dumps(targets)} if separate_uid else {})
    assert run.returncode == 0, run.stderr
    records = spy_records(layout)
    assert len(records) == 2   # the factory built the baseline and the candidate
    dumped = json.dumps(records)
    for secret in SECRETS:
        assert secret not in dumped, f"{secret} reached the gate process"
    for record in records:
        env = record["environ"]
        assert not [k for k in env if k.startswith(("INPUT_", "ACTIONS_"))]
        assert not {"GITHUB_TOKEN", "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"} & set(env)
        if mode == "root-sandbox":
            assert record["uid"] in SANDBOX_UIDS and record["uid"] == records[0]["uid"]
        else:
            assert record["uid"] == (0 if mode == "root-unsandboxed" else NON_ROOT_UID if IS_ROOT else os.getuid())
        parent = record["proc"][next(iter(record["proc"]))]   # the entrypoint's /proc/PID/environ
        if mode != "root-unsandboxed":
            assert parent.startswith("refused"), "the gate could read the entrypoint's environment"
        if separate_uid:
            assert set(record["writes"].values()) == {"refused: Permission denied"}
            assert len(record["writes"]) == 4
    assert "forged" not in run.summary and layout.file("env").read_text(encoding="utf-8") == ""
    assert layout.file("path").read_text(encoding="utf-8") == ""
    # The same weights are never failed; on this small set the default rule may only warn that it cannot prove them
    # within every threshold (exit 0 either way). What matters here is where the verdict line was printed.
    verdict = run.outputs["verdict"]
    assert verdict in ("pass", "warn") and run.returncode == 0
    assert "::set-output name=verdict::pass" in run.stdout       # the spy's forgery: printed, inside the fence
    token = run.stdout.split("::stop-commands::", 1)[1].split("\n", 1)[0]
    assert run.stdout.index("::stop-commands::") < run.stdout.index("::set-output") < run.stdout.index(f"::{token}::")
    if comment and mode != "root-unsandboxed":
        [posted] = github.comments[PR]
        assert posted["user"] == BOT and "gate passed" in posted["body"]
    elif comment:   # a root gate could read anything of ours: the token was dropped before it started
        assert PR not in github.comments and "post the comment with a later `mode: comment` step" in run.stdout


# --------------------------------------------------------------------------- policy comes from the base branch


PR_POLICY_CASES = {
    "config from the PR checkout": ({"config": "pr/gate.yaml"}, {}, "pull request's own file"),
    "model factory from the PR checkout": ({"model-factory": "pr.evil:make_model"}, {}, "imported from the pull"),
    "data factory from the PR checkout": ({"data": "pr.evil:load"}, {}, "imported from the pull"),
    "policy-path is the PR's checkout": ({"policy-path": "pr", "config": "gate.yaml"}, {}, "own commit"),
    "policy-path is the workspace": ({"policy-path": ".", "config": "pr/gate.yaml"}, {}, "is the workspace"),
    "config escapes policy-path": ({"policy-path": "base", "config": "../pr/gate.yaml"}, {}, "outside policy-path"),
    "factory symlinked into the PR": ({"policy-path": "base", "model-factory": "linked:make_model"}, {},
                                      "outside policy-path"),
    "package symlinked into the PR": ({"policy-path": "base", "model-factory": "pkg.tinymlp:make_model"}, {},
                                      "outside policy-path"),
    "PYTHONPATH into the PR": ({"policy-path": "base", "model-factory": "evil:make_model"}, {"pythonpath": "pr"},
                               "PYTHONPATH"),
    "config in extra-args": ({"policy-path": "base", "extra-args": "--config ../pr/gate.yaml"}, {}, "own input"),
    "pull_request_target from a fork": ({"config": "pr/gate.yaml"}, {"event": "pull_request_target"},
                                        "pull request's own file"),
    "workflow_run for a fork": ({"config": "pr/gate.yaml"}, {"event": "workflow_run"}, "pull request's own file"),
    "head repository deleted": ({"config": "pr/gate.yaml"}, {"event": "deleted"}, "deleted or unknown"),
    "unreadable event payload": ({"config": "pr/gate.yaml"}, {"event": "garbage"}, "pull request's own file"),
}


def event_for(kind: str | None) -> tuple[Any, str]:
    if kind in (None, "pull_request_target"):
        return fork_event(), kind or "pull_request"
    if kind == "workflow_run":
        return {"workflow_run": {"head_sha": HEAD_SHA, "head_repository": {"full_name": "mallory/models"},
                                 "repository": {"full_name": REPO}, "pull_requests": []}}, "workflow_run"
    if kind == "deleted":
        event = fork_event()
        event["pull_request"]["head"]["repo"] = None
        return event, "pull_request"
    return "not a payload", "pull_request"


@pytest.mark.parametrize("case", list(PR_POLICY_CASES))
def test_policy_from_a_forks_checkout_is_exit_2_and_never_runs(layout: Layout, case: str):
    inputs, how, says = PR_POLICY_CASES[case]
    (layout.ws / "base" / "linked.py").symlink_to(layout.ws / "pr" / "evil.py")
    # A real module whose package's __init__.py is the PR's evil.py: importing pkg.tinymlp runs it first.
    (layout.ws / "base" / "pkg").mkdir()
    (layout.ws / "base" / "pkg" / "tinymlp.py").write_text(TINYMLP, encoding="utf-8")
    (layout.ws / "base" / "pkg" / "__init__.py").symlink_to(layout.ws / "pr" / "evil.py")
    event, name = event_for(how.get("event"))
    extra = {}
    if "pythonpath" in how:
        _, pythonpath = runnable_python()
        extra["PYTHONPATH"] = os.pathsep.join([pythonpath, str(layout.ws / how["pythonpath"])])
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", **inputs}, event=event, event_name=name,
                         extra_env=extra)
    assert_could_not_run(run, layout, says=says)
    assert "could not run" in run.summary and "stop-commands" not in run.stdout   # the gate never started


@pytest.mark.slow
def test_allow_pr_policy_is_the_explicit_opt_out(layout: Layout):
    # The same fork PR with `allow-pr-policy: true` runs the PR's own factory: the marker shows it did.
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "config": "pr/gate.yaml",
                                  "allow-pr-policy": "true"})
    assert run.returncode == 0, run.stderr
    assert layout.marker.exists()


@pytest.mark.slow
def test_a_fork_pr_gated_with_the_base_branchs_policy(layout: Layout):
    same = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml"})
    assert same.returncode == 0, same.stderr
    report = json.loads((layout.ws / same.outputs["report-json"]).read_text(encoding="utf-8"))
    assert report["verdict"] in ("pass", "warn") and same.outputs["report-json"] == "gate-report/report.json"
    for name in ("summary.md", "output"):
        layout.file(name).write_text("", encoding="utf-8")
    broken = run_entrypoint(layout, {"candidate": "pr/models/broken.pt", "policy-path": "base",
                                     "config": "gate.yaml"})
    assert broken.returncode == 1 and broken.outputs["verdict"] == "fail"
    assert not layout.marker.exists()


@pytest.mark.slow
def test_a_same_repository_pr_may_use_its_own_checkout(layout: Layout):
    event = fork_event()
    event["pull_request"]["head"]["repo"] = {"full_name": REPO}
    (layout.ws / "pr" / "evil.py").write_text(TINYMLP, encoding="utf-8")
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "config": "pr/gate.yaml"}, event=event)
    assert run.returncode == 0, run.stderr


# --------------------------------------------------------------------------- symlinks


def test_a_committed_report_symlink_never_makes_the_action_write_elsewhere(layout: Layout):
    elsewhere = layout.outside / "reports"
    elsewhere.mkdir()
    (elsewhere / "report.json").write_text("precious", encoding="utf-8")
    (layout.ws / "gate-report").symlink_to(elsewhere)
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml"})
    assert_could_not_run(run, layout, says="gate-report is a symlink", report_dir=False)
    assert [p.name for p in elsewhere.iterdir()] == ["report.json"]
    assert (elsewhere / "report.json").read_text(encoding="utf-8") == "precious"


@pytest.mark.parametrize("json_input", ["../outside/report.json", "gate-report/../../outside/report.json",
                                        "/etc/gate-report.json"])
def test_reports_are_written_only_inside_the_workspace(layout: Layout, json_input: str):
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml",
                                  "json": json_input})
    assert_could_not_run(run, layout, says="outside the workspace")
    assert not (layout.outside / "report.json").exists() and not Path("/etc/gate-report.json").exists()


def _secret_state_dict(lay: Layout) -> Path:
    secret = lay.outside / "secret.pt"
    shutil.copyfile(lay.ws / "baseline" / "production.pt", secret)
    return secret


@pytest.mark.parametrize("vector", ["candidate", "data", "directory entry", "git config"])
def test_pr_files_that_resolve_outside_the_workspace_are_exit_2(layout: Layout, vector: str):
    pr = layout.ws / "pr"
    inputs = {"candidate": "pr/models/same.pt", "policy-path": "base", "config": "gate.yaml"}
    secret_text = "AUTHORIZATION: basic c2VjcmV0LXRva2Vu"
    if vector == "candidate":
        (pr / "models" / "link.pt").symlink_to(_secret_state_dict(layout))
        inputs["candidate"], says = "pr/models/link.pt", "resolves outside the workspace"
    elif vector == "data":
        (layout.outside / "eval.npz").write_bytes((pr / "eval" / "holdout.npz").read_bytes())
        (pr / "eval" / "link.npz").symlink_to(layout.outside / "eval.npz")
        inputs["data"], says = "pr/eval/link.npz", "resolves outside the workspace"
    elif vector == "directory entry":
        hf = pr / "models" / "hf"
        hf.mkdir()
        (hf / "config.json").write_text("{}", encoding="utf-8")
        (hf / "model.safetensors").symlink_to(_secret_state_dict(layout))
        inputs["candidate"], says = "pr/models/hf", "model.safetensors is a link to"
    else:   # actions/checkout's persisted credentials, one symlink away from the data input
        (pr / ".git" / "config").write_text(f'[http]\n\textraheader = "{secret_text}"\n', encoding="utf-8")
        (pr / "eval" / "holdout.jsonl").symlink_to(pr / ".git" / "config")
        inputs["data"], says = "pr/eval/holdout.jsonl", "points into a .git folder"
    run = run_entrypoint(layout, inputs)
    assert_could_not_run(run, layout, says=says)
    assert "c2VjcmV0LXRva2Vu" not in run.stdout + run.stderr + run.summary


# --------------------------------------------------------------------------- a run without a report is not a pass


@pytest.mark.slow
def test_a_factory_that_exits_0_is_could_not_run(layout: Layout):
    run = run_entrypoint(layout, {"candidate": "pr/models/same.pt", "policy-path": "base",
                                  "model-factory": "exits:make_model"})
    assert_could_not_run(run, layout, says="exited with code 0 but wrote no report")
    assert run.outputs["exit-code"] == "2" and "could not run" in run.summary and "pass" not in run.outputs.values()


# --------------------------------------------------------------------------- escaping, end to end


# A path from the PR, as a folder and a file name (a name cannot hold the '/' of '</details>').
HOSTILE_NAME = "x</details><img src=x onerror=alert(1)> @admins [pwn](http://e.vil) `tick` |cell| #1.pt"


@pytest.mark.slow
def test_a_hostile_file_name_is_inert_in_the_summary_and_the_comment(layout: Layout, github: FakeGitHub):
    hostile = layout.ws / "pr" / "models" / HOSTILE_NAME
    hostile.parent.mkdir(parents=True)
    shutil.copyfile(layout.ws / "pr" / "models" / "same.pt", hostile)
    github.add(PR, "<!-- gate-report:model-gate/gate -->\nforged by mallory", user={"login": "mallory", "id": 6})
    run = run_entrypoint(layout, {"candidate": f"pr/models/{HOSTILE_NAME}", "policy-path": "base",
                                  "config": "gate.yaml", "comment": "true"}, api_url=github.url)
    assert run.returncode == 0, run.stderr
    [forged, ours] = github.comments[PR]
    assert forged["body"].endswith("forged by mallory") and ours["user"] == BOT
    for text in (run.summary, ours["body"]):
        assert_inert(text)
        assert "@\u200badmins" in text and "&lt;img src=x onerror=alert(1)&gt;" in text


# --------------------------------------------------------------------------- mode: comment (two workflows)


@pytest.mark.slow
def test_two_workflows_check_without_a_token_then_comment_from_the_report(layout: Layout, github: FakeGitHub):
    # 1. pull_request from the fork: the check, without any token (a fork's workflow gets only a read-only one).
    check = run_entrypoint(layout, {"candidate": "pr/models/broken.pt", "policy-path": "base", "config": "gate.yaml",
                                    "github-token": ""})
    assert check.returncode == 1 and github.requests == []
    # The fork's run uploads gate-report/; the workflow_run workflow downloads it. A fork could forge anything in
    # it: make it hostile, and keep the verdict the check step wrote.
    report_path = layout.ws / "gate-report" / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report["checks"][0]["summary"] = "</details><img src=x> @admins [x](http://e.vil)"
    report["power"] = [{"check": "accuracy", "metric": "accuracy", "threshold": 0.01, "min_detectable": 0.05,
                        "samples": 300, "samples_needed": 7500, "note": "300 samples detect only drops over 0.05"}]
    report_path.write_text(json.dumps(report), encoding="utf-8")
    (layout.ws / "gate-report" / "report.md").write_text("<img src=x> raw markdown is never posted", encoding="utf-8")
    github.add(PR, "<!-- gate-report:model-gate/gate -->\n## gate passed", user={"login": "mallory", "id": 6})
    # 2. workflow_run in the base repository: comment mode, with the token; it loads no checkpoint.
    for name in ("summary.md", "output"):
        layout.file(name).write_text("", encoding="utf-8")
    event = {"workflow_run": {"head_sha": HEAD_SHA, "head_branch": "patch-1", "conclusion": "failure",
                              "html_url": "https://github.test/acme/models/actions/runs/5",
                              "head_repository": {"full_name": "mallory/models", "owner": {"login": "mallory"}},
                              "repository": {"full_name": REPO}, "pull_requests": []}}
    github.pulls = [{"number": PR, "head": {"ref": "patch-1", "sha": HEAD_SHA,
                                            "repo": {"owner": {"login": "mallory"}}}}]
    posted = run_entrypoint(layout, {"mode": "comment", "candidate": "", "baseline": ""}, event=event,
                            event_name="workflow_run", api_url=github.url)
    assert posted.returncode == 0, posted.stderr
    assert "stop-commands" not in posted.stdout and not spy_records(layout)
    [forged, ours] = github.comments[PR]
    assert forged["body"].endswith("## gate passed") and ours["user"] == BOT
    body = ours["body"]
    assert body.startswith("<!-- gate-report:model-gate/gate -->\n> :information_source: **power:** 300 samples")
    assert "gate: fail" in body and "(concluded: failure)" in body
    assert_inert(body)
    assert "raw markdown" not in body and "&lt;/details&gt;&lt;img src=x&gt;" in body


# --------------------------------------------------------------------------- a cancelled job


@pytest.mark.slow
def test_sigterm_to_the_entrypoint_reaches_the_gate(layout: Layout):
    """`docker stop` signals the entrypoint (PID 1 in the container); the gate, in a session of its own, must hear
    it: one `error:` line, exit 2, no report, and nothing of it left running."""
    import signal
    import time

    python, pythonpath = runnable_python()
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(layout.probe), "PYTHONPATH": pythonpath,
               "GITHUB_WORKSPACE": str(layout.ws), "GITHUB_STEP_SUMMARY": str(layout.file("summary.md")),
               "GITHUB_OUTPUT": str(layout.file("output")), "GATE_TEST_PROBE": str(layout.probe),
               "INPUT_CANDIDATE": "pr/models/same.pt", "INPUT_BASELINE": "baseline/production.pt",
               "INPUT_DATA": "pr/eval/holdout.npz", "INPUT_POLICY-PATH": "base", "INPUT_MODEL-FACTORY": "slow:make_model"}
    proc = subprocess.Popen([python, "-m", "gate.action.entrypoint"], cwd=layout.ws, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (layout.probe / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 30                      # not the factory's 60 s sleep
    assert proc.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "terminated" in errors[0], stderr
    assert "Traceback" not in stderr and not (layout.ws / "gate-report" / "report.json").exists()
    assert parse_github_output(layout.file("output").read_text(encoding="utf-8"))["verdict"] == "error"
