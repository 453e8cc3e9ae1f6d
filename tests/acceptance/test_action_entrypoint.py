"""The Action end to end: `python -m gate.action.entrypoint` in a simulated Actions environment, on a real gate run
of tiny models; the release/CI scripts on the same models; and the linters GitHub, Docker and GitLab users rely on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.action_env import open_to_others, runnable_python
from tests.github_files import parse_github_output

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FACTORY = '''\
"""The tiny classifier's architecture; the checkpoints are its state_dicts."""
import torch


def make_model():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
'''
BROKEN_CLASS = 0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout as the Action sees it: the model factory, a baseline, an identical candidate, a candidate whose
    class 0 logit is pushed down by 50 (never predicted), and 300 tensor samples, 100 per class, labelled by the
    baseline (so the baseline is right on all of them)."""
    import numpy as np
    import torch

    ws = tmp_path_factory.mktemp("workspace")
    (ws / "tinymlp.py").write_text(FACTORY, encoding="utf-8")
    # 300 samples can prove an identical candidate within an accuracy max_drop of 2 points, not of 1
    # (docs/statistics.md); the pass path needs a threshold this data can decide.
    (ws / "gate.yaml").write_text("version: 1\nmodel:\n  factory: tinymlp:make_model\n"
                                  "checks:\n  accuracy:\n    accuracy: {max_drop: 0.02}\n", encoding="utf-8")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = np.random.default_rng(0).normal(size=(3000, 8)).astype("float32")
    with torch.no_grad():
        model[2].bias -= model(torch.from_numpy(x)).mean(0)   # centre the logits: the three classes balance
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    picked = np.concatenate([np.flatnonzero(y == k)[:100] for k in range(3)])
    assert len(picked) == 300, np.bincount(y)
    (ws / "models").mkdir()
    (ws / "eval").mkdir()
    np.savez(ws / "eval" / "holdout.npz", x=x[picked], labels=y[picked].astype("int64"))
    torch.save(model.state_dict(), ws / "models" / "production.pt")
    shutil.copyfile(ws / "models" / "production.pt", ws / "models" / "same.pt")
    broken = {k: v.clone() for k, v in model.state_dict().items()}
    broken["2.bias"][BROKEN_CLASS] -= 50.0
    torch.save(broken, ws / "models" / "broken.pt")
    open_to_others(ws)   # started as root, the entrypoint runs the gate as an unprivileged uid
    return ws


@dataclass(frozen=True)
class ActionRun:
    returncode: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]


def clean_environ() -> dict[str, str]:
    """This process's environment without anything an enclosing CI run (GitHub, say) would leak into the test."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}




def run_action(ws: Path, tmp_path: Path, inputs: dict[str, str]) -> ActionRun:
    """Run the entrypoint as the runner would: INPUT_<NAME> env vars (dashes kept), file commands, the workspace."""
    summary, output, event = tmp_path / "step_summary.md", tmp_path / "github_output", tmp_path / "event.json"
    summary.write_text("earlier step\n", encoding="utf-8")
    output.write_text("", encoding="utf-8")
    event.write_text(json.dumps({"ref": "refs/heads/main"}), encoding="utf-8")
    environ = clean_environ()
    python, environ["PYTHONPATH"] = runnable_python()
    environ.update({
        "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(ws), "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output), "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/models", "GITHUB_WORKFLOW": "model gate", "GITHUB_JOB": "gate",
    })
    defaults = {"model-factory": "tinymlp:make_model", "trust-checkpoint": "false", "comment": "false",
                "github-token": "ghs_not_used", "debug": "false", "verbose": "false"}
    for name, value in {**defaults, **inputs}.items():
        environ["INPUT_" + name.replace(" ", "_").upper()] = value
    done = subprocess.run([python, "-m", "gate.action.entrypoint"], cwd=ws, env=environ,
                          capture_output=True, text=True, timeout=600, check=False)
    return ActionRun(done.returncode, done.stdout, done.stderr, summary.read_text(encoding="utf-8"),
                     parse_github_output(output.read_text(encoding="utf-8")))


def commands(stdout: str, kind: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(f"::{kind} ")]


def validate_report(path: Path) -> dict:
    from gate.config import report_schema

    report = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(report, report_schema())
    return report


# --------------------------------------------------------------------------- the Action on real gate runs


@pytest.mark.slow
def test_pass_case(workspace: Path, tmp_path: Path):
    run = run_action(workspace, tmp_path, {"candidate": "models/same.pt", "baseline": "models/production.pt",
                                           "data": "eval/holdout.npz", "config": "gate.yaml",
                                           "html": "gate-report/report.html"})
    assert run.returncode == 0, run.stderr
    assert run.outputs["verdict"] == "pass" and run.outputs["exit-code"] == "0"
    html = (workspace / "gate-report" / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html     # installed from the private folder
    assert run.outputs["failed-checks"] == ""
    assert run.outputs["report-json"] == "gate-report/report.json"
    report = validate_report(workspace / run.outputs["report-json"])
    assert report["verdict"] == "pass" and report["exit_code"] == 0
    markdown = (workspace / run.outputs["report-markdown"]).read_text(encoding="utf-8")
    assert run.summary == "earlier step\n" + markdown       # appended, the gate's own Markdown
    assert commands(run.stdout, "error") == [] and commands(run.stdout, "warning") == []
    # The gate's console output sits between stop-commands and its resume token.
    token = re.search(r"^::stop-commands::([0-9a-f]{32})$", run.stdout, re.M).group(1)
    assert run.stdout.index("verdict: PASS") < run.stdout.index(f"::{token}::")


@pytest.mark.slow
def test_fail_case(workspace: Path, tmp_path: Path):
    run = run_action(workspace, tmp_path, {
        "candidate": "models/broken.pt", "baseline": "models/production.pt", "data": "eval/holdout.npz",
        "json": "out/gate.json", "junit": "out/junit.xml",
    })
    assert run.returncode == 1, run.stderr
    assert run.outputs["verdict"] == "fail" and run.outputs["exit-code"] == "1"
    assert run.outputs["report-json"] == "out/gate.json"
    report = validate_report(workspace / "out" / "gate.json")
    failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
    assert {"accuracy", "per_class"} <= set(failed)
    assert run.outputs["failed-checks"].split(",") == failed
    errors = commands(run.stdout, "error")
    assert [re.match(r"::error title=gate%3A (\w+)::", e).group(1) for e in errors] == failed
    accuracy = report["metrics"]
    assert accuracy["baseline"]["accuracy"] == 1.0 and abs(accuracy["candidate"]["accuracy"] - 2 / 3) < 1e-9
    per_class_line = next(e for e in errors if "gate%3A per_class" in e)
    assert "recall[0]" in per_class_line            # the reason names the broken class
    assert "FAIL" in run.summary and run.summary.startswith("earlier step\n")
    junit = ET.parse(workspace / "out" / "junit.xml").getroot()
    failures = [case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None]
    assert sorted(failures) == sorted(failed)   # the junit input reached the gate


@pytest.mark.slow
def test_missing_checkpoint_is_could_not_run(workspace: Path, tmp_path: Path):
    run = run_action(workspace, tmp_path, {"candidate": "models/does-not-exist.pt",
                                           "baseline": "models/production.pt", "data": "eval/holdout.npz"})
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    error_line = next(line for line in run.stderr.splitlines() if line.startswith("error:"))
    assert "does-not-exist.pt" in error_line
    assert run.outputs == {"verdict": "error", "exit-code": "2", "failed-checks": "", "report-json": "",
                           "report-markdown": "", "power-note": "", "min-detectable-drop": "", "samples-needed": "",
                           "state": ""}
    assert commands(run.stdout, "error") == [f"::error title=gate could not run::{error_line}"]
    assert "could not run" in run.summary and error_line in run.summary
    assert not (workspace / "gate-report" / "report.json").exists()   # no stale report from the pass case


def test_with_arguments_the_entrypoint_is_the_gate_cli():
    done = subprocess.run([sys.executable, "-m", "gate.action.entrypoint", "--version"], capture_output=True,
                          text=True, timeout=120, check=False, env=clean_environ())
    assert done.returncode == 0 and "gate" in done.stdout and "0." in done.stdout


# --------------------------------------------------------------------------- release and CI scripts


def run_script(script: str, ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = clean_environ()
    environ["GATE"] = f"{sys.executable} -m gate"
    environ["GATE_REPORT_DIR"] = "reports"
    return subprocess.run(["bash", str(ROOT / "examples" / "ci" / script), *args], cwd=ws, env=environ,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_release_check_deploys_only_after_a_pass(workspace: Path):
    marker = workspace / "deployed"
    marker.unlink(missing_ok=True)
    common = ["models/production.pt", "eval/holdout.npz", "--", "touch", str(marker)]
    done = run_script("release-check.sh", workspace, "models/broken.pt", *common)
    assert done.returncode == 1 and "regressed" in done.stderr and not marker.exists()
    done = run_script("release-check.sh", workspace, "models/same.pt", *common)
    assert done.returncode == 0, done.stderr
    assert marker.exists() and validate_report(workspace / "reports" / "report.json")["verdict"] == "pass"


@pytest.mark.slow
def test_check_script_tells_could_not_run_from_a_regression(workspace: Path):
    done = run_script("check.sh", workspace, "models/missing.pt", "models/production.pt", "eval/holdout.npz",
                      "--config", "gate.yaml")
    assert done.returncode == 2
    assert "could not run" in done.stderr and "regressed" not in done.stderr


def test_release_check_usage_is_exit_2(workspace: Path):
    done = run_script("release-check.sh", workspace, "only-one-arg")
    assert done.returncode == 2 and "usage" in done.stderr


# --------------------------------------------------------------------------- linters (test dependencies: fail if missing)


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing from {BIN}: pip install 'pytorch-gate[test]'"
    return str(path)


def lint(*argv: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"


def test_dockerfile_is_hadolint_clean():
    lint(tool("hadolint"), "Dockerfile")


def test_action_yml_matches_githubs_action_schema():
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", "action.yml")


EXAMPLE_WORKFLOWS = ("github-workflow.yml", "github-workflow-comment.yml")


@pytest.mark.parametrize("name", EXAMPLE_WORKFLOWS)
def test_example_workflow_passes_actionlint_and_the_workflow_schema(name: str):
    lint(tool("actionlint"), f"examples/ci/{name}")
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", f"examples/ci/{name}")


@pytest.mark.parametrize("name", EXAMPLE_WORKFLOWS)
def test_example_workflow_inputs_exist_in_action_yml(tmp_path: Path, name: str):
    """actionlint checks a local action's inputs: lint the example with `uses: ./` in a project holding this
    action.yml (actionlint finds the project by its .git and .github/workflows folders)."""
    (tmp_path / ".git").mkdir()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for source in ("action.yml", "Dockerfile"):
        shutil.copyfile(ROOT / source, tmp_path / source)
    text = (ROOT / "examples" / "ci" / name).read_text(encoding="utf-8")
    local, count = re.subn(r"uses: gate-dev/gate@v0\.2\.0\b.*", "uses: ./", text)
    assert count == 1
    (workflows / "gate.yml").write_text(local, encoding="utf-8")
    lint(tool("actionlint"), ".github/workflows/gate.yml", cwd=tmp_path)
    # ... and the check is real: a misspelt input is caught.
    (workflows / "gate.yml").write_text(local.replace("mode:", "mode_:").replace("policy-path:", "policy_path:"),
                                        encoding="utf-8")
    done = subprocess.run([tool("actionlint"), ".github/workflows/gate.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1 and re.search(r'input "(mode_|policy_path)" is not defined', done.stdout)


def test_sharded_example_workflow_lints_with_this_action_yml(tmp_path: Path):
    """examples/ci/github-workflow-sharded.yml (a matrix of shard jobs, then a merge job): actionlint and the
    workflow schema accept it, and with `uses: ./` every input it sets is one of this action.yml's."""
    name = "examples/ci/github-workflow-sharded.yml"
    lint(tool("actionlint"), name)
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", name)
    (tmp_path / ".git").mkdir()
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for source in ("action.yml", "Dockerfile"):
        shutil.copyfile(ROOT / source, tmp_path / source)
    local, count = re.subn(r"uses: gate-dev/gate@v0\.2\.0\b.*", "uses: ./", (ROOT / name).read_text(encoding="utf-8"))
    assert count == 2
    (workflows / "gate.yml").write_text(local, encoding="utf-8")
    lint(tool("actionlint"), ".github/workflows/gate.yml", cwd=tmp_path)
    (workflows / "gate.yml").write_text(local.replace("states:", "states_:"), encoding="utf-8")
    done = subprocess.run([tool("actionlint"), ".github/workflows/gate.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1 and 'input "states_" is not defined' in done.stdout
    steps = yaml.safe_load(local)["jobs"]
    shard_inputs = next(s["with"] for s in steps["shard"]["steps"] if s.get("uses") == "./")
    assert shard_inputs["shard"] == "${{ matrix.shard }}/3" and shard_inputs["baseline-cache"] == ".gate-cache"
    merge_inputs = next(s["with"] for s in steps["merge"]["steps"] if s.get("uses") == "./")
    assert merge_inputs["mode"] == "merge" and merge_inputs["config"] == shard_inputs["config"]   # docs/security.md


def test_example_workflow_takes_policy_from_the_base_branch_and_files_from_the_pr():
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-workflow.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["gate"]["steps"]
    checkouts = {s["with"]["path"]: s["with"] for s in steps if str(s.get("uses", "")).startswith("actions/checkout")}
    assert checkouts["base"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert checkouts["pr"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert all(c["persist-credentials"] is False for c in checkouts.values())
    [gate_step] = [s for s in steps if s.get("id") == "gate"]
    inputs = gate_step["with"]
    assert inputs["policy-path"] == "base" and not inputs["config"].startswith("pr/")
    assert inputs["candidate"].startswith("pr/") and not inputs["data"].startswith("pr/")
    assert inputs.get("comment") in (None, False) and "github-token" not in inputs
    assert workflow["permissions"] == {"contents": "read"}
    comment = yaml.safe_load((ROOT / "examples" / "ci" / "github-workflow-comment.yml").read_text(encoding="utf-8"))
    assert list(comment[True]) == ["workflow_run"]   # YAML 1.1 reads the key `on` as true
    steps = comment["jobs"]["comment"]["steps"]
    assert not [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout")]   # no PR code here
    assert [s["with"]["mode"] for s in steps if "gate-dev/gate" in str(s.get("uses"))] == ["comment"]


def test_gitlab_example_matches_the_gitlab_ci_schema():
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", "examples/ci/gitlab-ci.yml")
    jobs = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text(encoding="utf-8"))
    gate_job = jobs["model-gate"]
    assert gate_job["artifacts"]["when"] == "always"
    assert gate_job["artifacts"]["reports"]["junit"] in " ".join(gate_job["script"])


def test_shell_examples_parse():
    for script in ("release-check.sh", "check.sh"):
        lint("bash", "-n", str(ROOT / "examples" / "ci" / script))
        assert os.access(ROOT / "examples" / "ci" / script, os.X_OK)


def test_pre_commit_hook_manifest():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    [hook] = [h for h in hooks if h["id"] == "gate-check"]
    # The keys pre-commit's manifest accepts (pre_commit/clientlib.py MANIFEST_HOOK_DICT).
    known = {"id", "name", "entry", "language", "alias", "files", "exclude", "types", "types_or", "exclude_types",
             "additional_dependencies", "args", "always_run", "fail_fast", "pass_filenames", "description",
             "language_version", "log_file", "minimum_pre_commit_version", "require_serial", "stages", "verbose"}
    assert set(hook) <= known
    # system: the repository's own environment and its torch, never a pre-commit environment that resolves
    # torch>=2.6 to a multi-GB CUDA build.
    assert hook["language"] == "system" and hook["pass_filenames"] is False
    assert "additional_dependencies" not in hook
    assert hook["stages"] == ["pre-push", "manual"]
    assert hook["entry"].split()[0] in _console_scripts()
    assert hook["entry"].split()[1:] == ["hook"]


def test_the_hook_command_takes_its_arguments_from_gate_hook_args(world, tmp_path):
    """`pre-commit try-repo` passes no hook arguments: `gate hook` reads them from the file GATE_HOOK_ARGS names."""
    args = tmp_path / "gate-args"
    report = tmp_path / "r.json"
    args.write_text("\n".join([str(world.regressed), "--baseline", str(world.baseline), "--data", str(world.data),
                                "--model-factory", "tests.tiny_models:build_mlp", "--json", str(report)]) + "\n",
                    encoding="utf-8")
    env = {**clean_environ(), "GATE_HOOK_ARGS": str(args)}
    done = subprocess.run([sys.executable, "-m", "gate", "hook", "-q"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr           # the regressed candidate stops the push
    assert json.loads(report.read_text(encoding="utf-8"))["verdict"] == "fail"
    env["GATE_HOOK_ARGS"] = str(tmp_path / "missing")
    done = subprocess.run([sys.executable, "-m", "gate", "hook"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 2 and done.stderr.startswith("error: GATE_HOOK_ARGS=") and "not found" in done.stderr


def _console_scripts() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])


def test_dockerfile_layers_install_torch_before_the_code():
    """Editing gate/ must not reinstall torch: the dependency layer may only see the project metadata."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.11-slim[\w.-]*", instructions[0])
    deps = next(i for i, line in enumerate(instructions) if "GATE_DEPS_ONLY=1" in line)
    code = next(i for i, line in enumerate(instructions) if re.fullmatch(r"COPY gate gate", line))
    copies_before = [line for line in instructions[:deps] if line.startswith("COPY")]
    assert all(re.search(r"pyproject\.toml|\.ci/install\.sh|gate/__init__\.py", line) for line in copies_before)
    assert deps < code
    assert "--no-deps" in " ".join(instructions[code:])
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in instructions
    # GitHub runs container actions as root and recommends it: the entrypoint drops to an unprivileged uid for the
    # gate itself. Nothing before the dependency layer may depend on a uid (a uid build-arg rebuilt everything).
    assert not [line for line in instructions if line.startswith("USER ")]
    assert not [line for line in instructions[:deps] if "UID" in line]
    entrypoint = [line for line in instructions if line.startswith("ENTRYPOINT")]
    assert entrypoint and json.loads(entrypoint[-1][len("ENTRYPOINT"):])[:2] == ["/usr/bin/tini", "--"]
    assert "gate.action.entrypoint" in entrypoint[-1]


def test_dockerignore_keeps_what_the_dockerfile_copies():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = []
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert any(source == k or source.startswith(k + "/") for k in kept), f"{source} is not in the build context"


def test_release_workflow_lints_and_pins_the_action_to_the_pushed_image():
    lint(tool("actionlint"), ".github/workflows/release.yml")
    lint(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", ".github/workflows/release.yml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8"))
    builds = workflow["jobs"]["image"]["strategy"]["matrix"]["include"]
    assert {b["variant"] for b in builds} == {"cpu", "cuda"}
    assert all(b["torch_index"].startswith("https://download.pytorch.org/whl/") for b in builds)
    # The pin step rewrites exactly the line action.yml has on main.
    pin = "\n".join(step.get("run", "") for step in workflow["jobs"]["pin-action"]["steps"])
    assert "s|^  image: Dockerfile$|" in pin
    assert re.search(r"^  image: Dockerfile$", (ROOT / "action.yml").read_text(encoding="utf-8"), re.M)


# --------------------------------------------------------------------------- a sharded matrix and the cache


@pytest.mark.slow
def test_a_matrix_of_shard_jobs_and_a_merge_job_decide_like_one_check(workspace: Path, tmp_path: Path):
    """`shard: 1/2` and `shard: 2/2` each write a state (verdict output `shard`, exit 0, no report); `mode: merge`
    with a glob of them gives the single check's verdict, exit code, metrics and failed checks."""
    common = {"candidate": "models/broken.pt", "baseline": "models/production.pt", "data": "eval/holdout.npz",
              "batch-size": "64"}
    (tmp_path / "single").mkdir()
    single = run_action(workspace, tmp_path / "single", {**common, "json": "single/report.json"})
    assert single.returncode == 1, single.stderr
    expected = validate_report(workspace / "single" / "report.json")
    for i in (1, 2):
        (tmp_path / f"s{i}").mkdir()
        shard = run_action(workspace, tmp_path / f"s{i}", {**common, "shard": f"{i}/2", "state": f"states/s{i}.gstate"})
        assert shard.returncode == 0, shard.stderr
        assert shard.outputs["verdict"] == "shard" and shard.outputs["state"] == f"states/s{i}.gstate"
        assert shard.outputs["report-json"] == "" and f"shard {i}/2" in shard.summary
        assert (workspace / "states" / f"s{i}.gstate").is_file()
    (tmp_path / "m").mkdir()
    merged = run_action(workspace, tmp_path / "m", {"mode": "merge", "states": "states/*.gstate",
                                                    "json": "merged/report.json", "junit": "merged/junit.xml"})
    assert merged.returncode == 1, merged.stderr
    report = validate_report(workspace / "merged" / "report.json")
    assert (report["verdict"], report["exit_code"], report["metrics"]) == \
        (expected["verdict"], expected["exit_code"], expected["metrics"])
    assert merged.outputs["verdict"] == "fail"
    assert merged.outputs["failed-checks"] == single.outputs["failed-checks"] != ""
    assert (workspace / "merged" / "junit.xml").is_file() and "FAIL" in merged.summary


@pytest.mark.slow
def test_the_baseline_cache_input_hits_on_the_second_run(workspace: Path, tmp_path: Path):
    inputs = {"candidate": "models/same.pt", "baseline": "models/production.pt", "data": "eval/holdout.npz",
              "config": "gate.yaml", "baseline-cache": ".gate-cache", "json": "cache/report.json"}
    notes = []
    for run_dir in ("first", "second"):
        (tmp_path / run_dir).mkdir()
        run = run_action(workspace, tmp_path / run_dir, inputs)
        assert run.returncode == 0, run.stderr
        notes.append(" ".join(validate_report(workspace / "cache" / "report.json")["notes"]))
    assert "baseline cache miss" in notes[0] and "baseline cache hit" in notes[1]
    assert any(p.suffix == ".json" for p in (workspace / ".gate-cache").iterdir())
