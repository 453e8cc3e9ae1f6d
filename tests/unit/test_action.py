"""The Action's entrypoint without running a model: inputs -> argv, exit-code mapping, escaping, outputs, files."""
from __future__ import annotations

import io
import json
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from gate.action import entrypoint as ep
from gate.errors import ConfigError
from tests.action_env import in_process_environ
from tests.github_files import parse_github_output

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"candidate": "cand.pt", "baseline": "base.pt", "data": "eval.npz"}
# `gate check` options the Action deliberately has no input for (extra-args still reaches them).
CLI_OPTIONS_WITHOUT_INPUT = {
    "--quiet",   # the log should show the console report; the summary has it anyway
}


def action_inputs() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))["inputs"]


def check_command():
    from gate.cli import check

    return check


def click_options() -> dict[str, object]:
    """Every `gate check` option string (long and short) -> its click parameter."""
    out = {}
    for param in check_command().params:
        for opt in (*param.opts, *param.secondary_opts):
            out[opt] = param
    return out


def sample_value(spec: ep.InputOption) -> str:
    if spec.kind == "flag":
        return "true"
    if spec.kind == "trust":
        return "all"
    if spec.kind == "multi":
        return "accuracy, flips"
    return {"device": "cpu", "decision": "point", "batch-size": "16", "limit": "50", "seed": "3", "threads": "2",
            "task": "regression"}.get(
        spec.input, f"value-of-{spec.input}"
    )


# --------------------------------------------------------------------------- action.yml <-> entrypoint <-> CLI


def test_every_action_input_is_either_a_gate_option_or_an_action_only_input():
    declared = set(action_inputs())
    mapped = {spec.input for spec in ep.GATE_INPUTS}
    assert mapped.isdisjoint(ep.ACTION_ONLY_INPUTS)
    assert declared == mapped | set(ep.ACTION_ONLY_INPUTS)


@pytest.mark.parametrize("spec", [s for s in ep.GATE_INPUTS if s.kind != "positional"], ids=lambda s: s.input)
def test_each_input_reaches_an_existing_gate_check_option(spec: ep.InputOption):
    assert spec.input in action_inputs()
    value = sample_value(spec)
    argv = ep.build_gate_argv({**REQUIRED, spec.input: value})
    assert spec.option in argv
    if spec.kind == "value":
        assert argv[argv.index(spec.option) + 1] == value
    param = click_options().get(spec.option)
    assert param is not None, f"{spec.option} is not an option of `gate check`"
    if spec.kind == "trust":   # --trust-checkpoint ROLE, repeatable: baseline, candidate or all
        assert argv[argv.index(spec.option) + 1] == "all"
        assert not getattr(param, "is_flag", False) and param.multiple
        assert set(param.type.choices) == {"baseline", "candidate", "all"}
        return
    assert bool(getattr(param, "is_flag", False)) == (spec.kind == "flag")
    assert bool(getattr(param, "multiple", False)) == (spec.kind == "multi")


def test_candidate_is_the_commands_positional_argument():
    arguments = [p for p in check_command().params if p.param_type_name == "argument"]
    assert [a.name for a in arguments] == ["candidate"]
    assert ep.build_gate_argv(REQUIRED)[:2] == ["check", "cand.pt"]


def test_every_gate_check_option_has_an_input():
    long_names = {max(p.opts, key=len) for p in check_command().params if p.param_type_name == "option"}
    exposed = {spec.option for spec in ep.GATE_INPUTS if spec.option}
    assert long_names - {"--help"} - CLI_OPTIONS_WITHOUT_INPUT == exposed


def test_click_parses_the_argv_built_from_every_input():
    values = {spec.input: sample_value(spec) for spec in ep.GATE_INPUTS}
    values.update(REQUIRED)
    argv = ep.build_gate_argv(values)
    ctx = check_command().make_context("check", argv[1:])
    assert ctx.params["candidate"] == "cand.pt"
    assert ctx.params["baseline"] == "base.pt"
    assert ctx.params["enable"] == ("accuracy", "flips")
    assert ctx.params["disable"] == ("accuracy", "flips")
    assert ctx.params["batch_size"] == 16 and ctx.params["limit"] == 50
    assert ctx.params["trust_checkpoint"] == ("all",) and ctx.params["debug"] is True
    assert ctx.params["verbose"] is True
    assert ctx.params["model_factory"] == "value-of-model-factory"
    assert ctx.params["task"] == "regression"


def test_action_yml_defaults_give_a_plain_gate_check():
    values = {name: str(meta.get("default", "")) for name, meta in action_inputs().items()}
    values["github-token"] = ""  # an expression GitHub evaluates
    values.update(REQUIRED)
    assert ep.build_gate_argv(values) == ["check", "cand.pt", "--baseline", "base.pt", "--data", "eval.npz"]


def test_action_yml_requires_nothing_because_comment_mode_needs_no_checkpoint():
    # candidate and baseline are required by mode: check, which says so itself (exit 2, one error line).
    declared = {name for name, meta in action_inputs().items() if meta.get("required")}
    assert declared == set()
    for name in ep.REQUIRED_INPUTS:
        assert "required for mode: check" in action_inputs()[name]["description"]


def test_hyphenated_inputs_have_underscore_aliases_in_runs_env():
    env = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))["runs"]["env"]
    for name in action_inputs():
        if "-" in name:
            _, underscored = ep.input_env_names(name)
            assert env[underscored] == "${{ inputs.%s }}" % name


# --------------------------------------------------------------------------- reading inputs


def test_inputs_are_read_as_github_names_them_dashes_kept_or_underscored():
    environ = {
        "INPUT_CANDIDATE": " cand.pt ",
        "INPUT_MODEL-FACTORY": "pkg.mod:make",
        "INPUT_BATCH_SIZE": "8",
        "INPUT_TRUST-CHECKPOINT": "",
        "INPUT_TRUST_CHECKPOINT": "true",
    }
    values = ep.read_inputs(environ)
    assert values["candidate"] == "cand.pt"
    assert values["model-factory"] == "pkg.mod:make"
    assert values["batch-size"] == "8"
    assert values["trust-checkpoint"] == "true"
    assert values["onnx"] == ""
    assert set(values) == set(action_inputs())


@pytest.mark.parametrize("text,expected", [("true", True), ("True", True), ("yes", True), ("false", False),
                                           ("FALSE", False), ("", False), ("0", False)])
def test_parse_bool(text: str, expected: bool):
    assert ep.parse_bool("comment", text) is expected


def test_parse_bool_rejects_anything_else_naming_the_input():
    with pytest.raises(ConfigError, match="'trust-checkpoint'.*'maybe'"):
        ep.parse_bool("trust-checkpoint", "maybe")


def test_missing_required_inputs_are_named():
    with pytest.raises(ConfigError, match="'candidate', 'baseline'"):
        ep.build_gate_argv({"data": "d.npz"})


def test_required_inputs_are_what_gate_check_requires():
    required = set()
    for param in check_command().params:
        if param.required:
            required.add("candidate" if param.param_type_name == "argument" else max(param.opts, key=len)[2:])
    assert required == set(ep.REQUIRED_INPUTS)


@pytest.mark.parametrize("task", ["auto", "classification", "multi_label", "regression"])
def test_the_task_input_is_the_task_option(task: str):
    argv = ep.build_gate_argv({**REQUIRED, "task": task})
    assert argv[argv.index("--task"):argv.index("--task") + 2] == ["--task", task]
    assert check_command().make_context("check", argv[1:]).params["task"] == task


def test_an_empty_task_input_passes_no_task_so_the_configs_stands():
    assert "--task" not in ep.build_gate_argv({**REQUIRED, "task": ""})
    assert "--task" not in ep.build_gate_argv({**REQUIRED, "task": "  "})
    assert action_inputs()["task"]["default"] == ""
    with pytest.raises(ConfigError, match="--task has its own input; set 'task' instead"):
        ep.build_gate_argv({**REQUIRED, "extra-args": "--task regression"})


def test_enable_accepts_commas_spaces_and_lines():
    argv = ep.build_gate_argv({**REQUIRED, "enable": "drift,\nonnx  latency"})
    assert argv[-6:] == ["--enable", "drift", "--enable", "onnx", "--enable", "latency"]


def test_extra_args_are_split_like_a_shell_and_come_last():
    argv = ep.build_gate_argv({**REQUIRED, "extra-args": "--quiet --onnx-atol 'a b'"})
    assert argv[-3:] == ["--quiet", "--onnx-atol", "a b"]
    with pytest.raises(ConfigError, match="extra-args"):
        ep.build_gate_argv({**REQUIRED, "extra-args": "--seed 'unclosed"})


@pytest.mark.parametrize("extra", ["--config gate.yaml", "--config=gate.yaml", "-c gate.yaml", "-vc gate.yaml",
                                   "--model-factory os:system", "--data os:system", "-d x", "--trust-checkpoint all",
                                   "--json /tmp/x.json", "-b other.pt"])
def test_extra_args_cannot_set_an_option_that_has_its_own_input(extra: str):
    # The input is where the Action checks where a value comes from (policy-path, the workspace).
    with pytest.raises(ConfigError, match="extra-args.*(own input|instead)"):
        ep.build_gate_argv({**REQUIRED, "extra-args": extra})


@pytest.mark.parametrize("value,argv", [("none", []), ("", []), ("false", []), ("true", ["all"]), ("all", ["all"]),
                                        ("baseline", ["baseline"]), ("candidate", ["candidate"]),
                                        ("Baseline, candidate", ["all"])])
def test_trust_checkpoint_input_maps_to_the_per_role_option(value: str, argv: list[str]):
    built = ep.build_gate_argv({**REQUIRED, "trust-checkpoint": value})
    roles = [built[i + 1] for i, a in enumerate(built) if a == "--trust-checkpoint"]
    assert roles == argv
    assert check_command().make_context("check", built[1:]).params["trust_checkpoint"] == tuple(argv)


@pytest.mark.parametrize("value", ["maybe", "everyone", "baseline,maybe"])
def test_trust_checkpoint_rejects_other_values(value: str):
    with pytest.raises(ConfigError, match="'trust-checkpoint': expected none, baseline, candidate or all"):
        ep.parse_settings({"trust-checkpoint": value})


def test_report_defaults_fill_only_what_is_empty():
    filled = ep.with_report_defaults({"json": "", "markdown": "out/r.md"})
    assert filled["json"] == ep.DEFAULT_JSON and filled["markdown"] == "out/r.md"


def test_gate_environment_drops_inputs_tokens_and_file_commands():
    environ = {"PATH": "/bin", "INPUT_GITHUB-TOKEN": "t", "INPUT_CANDIDATE": "c.pt", "GITHUB_TOKEN": "t",
               "GITHUB_SHA": "abc", "ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t",
               "ACTIONS_ID_TOKEN_REQUEST_URL": "u", "ACTIONS_CACHE_URL": "u", "HF_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "t",
               "GITHUB_ENV": "/f/env", "GITHUB_OUTPUT": "/f/out", "GITHUB_PATH": "/f/path", "GITHUB_STATE": "/f/s",
               "GITHUB_STEP_SUMMARY": "/f/sum", "GITHUB_EVENT_PATH": "/f/event.json", "LANG": "C.UTF-8"}
    assert ep.gate_environment(environ) == {"PATH": "/bin", "GITHUB_SHA": "abc", "LANG": "C.UTF-8"}


def test_the_entrypoint_keeps_the_token_only_when_it_posts_the_comment():
    from gate.action.isolation import entrypoint_environment

    environ = {"INPUT_GITHUB-TOKEN": "t", "INPUT_CANDIDATE": "c.pt", "ACTIONS_RUNTIME_TOKEN": "t",
               "GITHUB_OUTPUT": "/f/out", "GITHUB_TOKEN": "t"}
    assert entrypoint_environment(environ, keep_token=False) == {"INPUT_CANDIDATE": "c.pt", "GITHUB_OUTPUT": "/f/out"}
    assert entrypoint_environment(environ, keep_token=True) == {
        "INPUT_GITHUB-TOKEN": "t", "INPUT_CANDIDATE": "c.pt", "GITHUB_OUTPUT": "/f/out", "GITHUB_TOKEN": "t"}


# --------------------------------------------------------------------------- exit codes and outcomes


def write_report(path: Path, verdict: str, checks: list[dict]) -> None:
    path.write_text(json.dumps({"verdict": verdict, "exit_code": 1 if verdict == "fail" else 0,
                                "summary": "s", "checks": checks}), encoding="utf-8")


FAILING = [
    {"name": "accuracy", "status": "fail", "summary": "accuracy dropped by 0.31",
     "findings": [{"metric": "accuracy", "rule": "max_drop", "status": "fail", "reason": "dropped 0.31 > 0.01"},
                  {"metric": "macro_f1", "rule": "max_drop", "status": "pass", "reason": "fine"}]},
    {"name": "flips", "status": "warn", "summary": "many flips", "findings": []},
    {"name": "sanity", "status": "pass", "summary": "ok", "findings": []},
    {"name": "per_class", "status": "fail", "summary": "recall[cat] dropped", "findings": []},
]


def test_interpret_a_failed_gate(tmp_path: Path):
    write_report(tmp_path / "r.json", "fail", FAILING)
    (tmp_path / "r.md").write_text("## gate FAILED\n", encoding="utf-8")
    outcome = ep.interpret(1, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    assert (outcome.exit_code, outcome.verdict) == (1, "fail")
    assert [c["name"] for c in outcome.checks_with("fail")] == ["accuracy", "per_class"]
    assert outcome.markdown == "## gate FAILED\n"


def test_interpret_could_not_run_keeps_the_error_line(tmp_path: Path):
    stderr = "some warning\nerror: cand.pt: no such file\n"
    outcome = ep.interpret(2, stderr, json_path=tmp_path / "none.json", markdown_path=tmp_path / "none.md")
    assert (outcome.exit_code, outcome.verdict, outcome.error) == (2, "error", "error: cand.pt: no such file")


@pytest.mark.parametrize("returncode", [1, -9, 137, 3])
def test_a_crash_without_a_report_is_could_not_run_not_a_regression(tmp_path: Path, returncode: int):
    outcome = ep.interpret(returncode, "Traceback ...\nKeyError: 'x'\n",
                           json_path=tmp_path / "none.json", markdown_path=tmp_path / "none.md")
    assert (outcome.exit_code, outcome.verdict) == (2, "error")
    assert outcome.error == "KeyError: 'x'"


@pytest.mark.parametrize("content", [None, "{not json", '{"verdict": "maybe"}', "[]", "[" * 100_000])
def test_exit_0_without_a_readable_report_is_could_not_run_never_a_pass(tmp_path: Path, content: str | None):
    if content is not None:
        (tmp_path / "r.json").write_text(content, encoding="utf-8")
    outcome = ep.interpret(0, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    assert (outcome.exit_code, outcome.verdict) == (2, "error")
    assert outcome.error.startswith("error: the gate exited with code 0 but wrote no report")
    assert ep.annotations(outcome)[0].startswith("::error title=gate could not run::error: the gate exited with code 0")


@pytest.mark.parametrize("returncode,verdict", [(0, "fail"), (1, "pass"), (1, "warn")])
def test_an_exit_code_that_disagrees_with_the_report_is_could_not_run(tmp_path: Path, returncode: int, verdict: str):
    write_report(tmp_path / "r.json", verdict, [])
    outcome = ep.interpret(returncode, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    assert (outcome.exit_code, outcome.verdict) == (2, "error") and "but its report says" in outcome.error


def test_a_report_that_is_a_symlink_is_not_read(tmp_path: Path):
    # The gate's uid could point the (root) entrypoint at a file it may not read itself.
    secret = tmp_path / "secret.json"
    write_report(secret, "pass", [])
    (tmp_path / "r.json").symlink_to(secret)
    outcome = ep.interpret(0, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    assert (outcome.exit_code, outcome.verdict) == (2, "error")
    assert "report.json cannot be read" in outcome.error or "r.json cannot be read" in outcome.error


# --------------------------------------------------------------------------- workflow commands


@pytest.mark.parametrize("text", ["plain", "50% of 3\nnext line\r\n", "%0A literal", "a:b,c::d", ""])
def test_escaped_commands_decode_back_to_the_text(text: str):
    # GitHub percent-decodes command data and properties; urllib's decoder is an independent oracle.
    data, prop = ep.escape_data(text), ep.escape_property(text)
    assert urllib.parse.unquote(data) == text and urllib.parse.unquote(prop) == text
    assert "\n" not in data + prop and "\r" not in data + prop
    assert ":" not in prop and "," not in prop


def test_one_annotation_per_failed_or_warning_check(tmp_path: Path):
    write_report(tmp_path / "r.json", "fail", FAILING)
    outcome = ep.interpret(1, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    lines = ep.annotations(outcome)
    assert lines == [
        "::error title=gate%3A accuracy::dropped 0.31 > 0.01",
        "::error title=gate%3A per_class::recall[cat] dropped",
        "::warning title=gate%3A flips::many flips",
    ]


def test_annotation_lists_every_failing_reason_up_to_a_limit():
    findings = [{"metric": f"recall[{i}]", "status": "fail", "reason": f"recall[{i}] dropped"} for i in range(12)]
    message = ep.check_message({"name": "per_class", "status": "fail", "summary": "s", "findings": findings})
    assert message.splitlines() == [f"recall[{i}] dropped" for i in range(10)] + ["(+2 more in the job summary)"]


def test_could_not_run_is_one_error_annotation():
    outcome = ep.GateOutcome(exit_code=2, verdict="error", error="error: data.npz: no such file")
    assert ep.annotations(outcome) == ["::error title=gate could not run::error: data.npz: no such file"]


# --------------------------------------------------------------------------- $GITHUB_OUTPUT and the summary




def test_outputs_round_trip_single_and_multi_line():
    values = {"verdict": "fail", "failed-checks": "accuracy,per_class", "note": "line one\nline two", "empty": ""}
    text = "".join(ep.format_output(k, v) for k, v in values.items())
    assert parse_github_output(text) == values


def test_summary_for_could_not_run_says_so_with_the_error_line():
    text = ep.summary_markdown(ep.GateOutcome(exit_code=2, verdict="error", error="error: bad.yaml: unknown key"))
    assert "could not run" in text and "error: bad.yaml: unknown key" in text and "exit" in text


def test_summary_falls_back_to_the_json_report_when_markdown_is_missing(tmp_path: Path):
    write_report(tmp_path / "r.json", "fail", FAILING)
    outcome = ep.interpret(1, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "missing.md")
    text = ep.summary_markdown(outcome)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]  # below the header row
    assert [row.split("|")[1].strip() for row in rows] == ["accuracy", "flips", "sanity", "per_class"]


def test_oversized_summary_is_cut_below_githubs_limit():
    text = ep.fit_summary("é" * ep.MAX_SUMMARY_BYTES)
    assert len(text.encode("utf-8")) <= ep.MAX_SUMMARY_BYTES
    assert text.rstrip().endswith("JSON report._")


def test_report_paths_are_given_relative_to_the_workspace(tmp_path: Path):
    assert ep.display_path(tmp_path / "gate-report" / "r.json", tmp_path) == "gate-report/r.json"
    assert ep.display_path(Path("/elsewhere/r.json"), tmp_path) == "/elsewhere/r.json"


def test_a_missing_input_fails_as_could_not_run_without_running_the_gate(tmp_path: Path):
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    environ = {"GITHUB_WORKSPACE": str(tmp_path), "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
               "INPUT_CANDIDATE": "cand.pt", "INPUT_DATA": "eval.npz"}
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    log = stdout.getvalue()
    assert "::error title=gate could not run::error: action input(s) 'baseline' required but empty" in log
    assert "stop-commands" not in log  # the gate was never started
    assert parse_github_output(output.read_text(encoding="utf-8")) == {
        "verdict": "error", "exit-code": "2", "failed-checks": "", "report-json": "", "report-markdown": "",
        "power-note": "", "min-detectable-drop": "", "samples-needed": "", "state": ""}
    assert "could not run" in summary.read_text(encoding="utf-8")
    assert not (tmp_path / "gate-report").exists()


def test_without_github_files_outputs_go_to_the_log(tmp_path: Path):
    stdout = io.StringIO()
    assert ep.run_action({"GITHUB_WORKSPACE": str(tmp_path)}, stdout=stdout) == 2
    assert re.search(r"^gate outputs: verdict=error, exit-code=2", stdout.getvalue(), re.M)


def actions_environ(tmp_path: Path, **inputs: str) -> dict[str, str]:
    environ = {"PATH": "/usr/bin:/bin", "GITHUB_WORKSPACE": str(tmp_path),
               "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output"),
               **in_process_environ()}
    environ.update({"INPUT_" + k.replace("_", "-").upper(): v for k, v in inputs.items()})
    return environ


def test_the_gates_own_error_line_is_kept_and_its_output_fenced(tmp_path: Path):
    # A config file that does not exist: the real CLI answers exit 2 before loading any model.
    environ = actions_environ(tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz", config="missing.yaml")
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    log = stdout.getvalue()
    token = re.search(r"^::stop-commands::(\w+)$", log, re.M).group(1)
    assert f"\n::{token}::\n" in log
    [error] = [line for line in log.splitlines() if line.startswith("::error ")]
    assert error.startswith("::error title=gate could not run::error: ") and "missing.yaml" in error
    assert "missing.yaml" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_an_unwritable_report_location_is_could_not_run(tmp_path: Path):
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    environ = actions_environ(tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz", json="a-file/r.json")
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    assert "::error title=gate could not run::error: action input 'json': cannot write the report" \
        in stdout.getvalue()


def test_an_unwritable_github_output_is_a_warning_not_a_crash(tmp_path: Path):
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    environ = {"GITHUB_WORKSPACE": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "a-file" / "out")}
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    assert re.search(r"^::warning title=gate::cannot write .*a-file/out", stdout.getvalue(), re.M)


def test_docstring_examples_hold():
    import doctest

    from gate.action import comment

    for module in (ep, comment):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --------------------------------------------------------------------------- boolean and choice inputs


@pytest.mark.parametrize("name", [*ep.BOOLEAN_INPUTS, "mode", "trust-checkpoint"])
def test_a_bad_boolean_or_choice_input_is_exit_2_with_one_error_line(tmp_path: Path, capsys, name: str):
    environ = actions_environ(tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz")
    environ[ep.input_env_names(name)[0]] = "maybe"
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: action input '{name}': expected ") and "'maybe'" in \
        errors[0]
    assert "stop-commands" not in stdout.getvalue()            # the gate never started
    assert parse_github_output((tmp_path / "output").read_text(encoding="utf-8"))["verdict"] == "error"
    assert not (tmp_path / "gate-report").exists()


def test_comment_maybe_no_longer_just_warns(tmp_path: Path):
    environ = actions_environ(tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz", comment="maybe")
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    assert "::error title=gate could not run::error: action input 'comment'" in stdout.getvalue()


@pytest.mark.parametrize("value,expected", [("true", True), ("Yes", True), ("off", False), ("", False)])
def test_every_boolean_input_reads_the_same_spellings(value: str, expected: bool):
    for name in ep.BOOLEAN_INPUTS:
        settings = ep.parse_settings({name: value})
        assert {"comment": settings.comment, "allow-pr-policy": settings.allow_pr_policy}.get(name, expected) \
            is expected
        if name in ("verbose", "debug"):
            assert (f"--{name}" in ep.build_gate_argv({**REQUIRED, name: value})) is expected


def test_boolean_inputs_are_declared_with_boolean_defaults():
    for name in ep.BOOLEAN_INPUTS:
        assert action_inputs()[name]["default"] == "false"
    assert action_inputs()["mode"]["default"] == "check" and action_inputs()["trust-checkpoint"]["default"] == "none"


# --------------------------------------------------------------------------- power outputs


POWER = [{"check": "accuracy", "metric": "accuracy", "threshold": 0.01, "min_detectable": 0.0523, "samples": 300,
          "samples_needed": 8100, "note": "300 samples detect only drops over 0.052\n(threshold 0.01)"},
         {"check": "per_class", "metric": "recall[cat]", "threshold": 0.05, "min_detectable": 0.2, "samples": 100,
          "samples_needed": 1600, "note": "second"}]


def test_power_outputs_come_from_the_first_power_entry(tmp_path: Path):
    outcome = ep.GateOutcome(exit_code=0, verdict="pass", report={"verdict": "pass", "checks": [], "power": POWER})
    outputs = ep.action_outputs(outcome, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md",
                                workspace=tmp_path)
    assert outputs["power-note"] == "300 samples detect only drops over 0.052 (threshold 0.01)"
    assert (outputs["min-detectable-drop"], outputs["samples-needed"]) == ("0.0523", "8100")


@pytest.mark.parametrize("report", [{"verdict": "pass", "checks": []}, {"verdict": "pass", "power": []},
                                    {"verdict": "pass", "power": "not a list"}, None])
def test_power_outputs_are_empty_without_power(tmp_path: Path, report):
    outcome = ep.GateOutcome(exit_code=0, verdict="pass", report=report)
    outputs = ep.action_outputs(outcome, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md",
                                workspace=tmp_path)
    assert (outputs["power-note"], outputs["min-detectable-drop"], outputs["samples-needed"]) == ("", "", "")
    declared = set(yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))["outputs"])
    assert set(outputs) == declared and outputs["state"] == ""    # every declared output set; `state` empty
                                                                   # unless a shard job wrote one


def test_the_power_note_comes_first_in_the_summary_once():
    report = {"verdict": "pass", "checks": [], "power": POWER}
    text = ep.summary_markdown(ep.GateOutcome(exit_code=0, verdict="pass", report=report,
                                              markdown="## gate passed\n\nbody\n"))
    assert text.startswith("> :information_source: **power:** 300 samples detect only drops over 0.052 (threshold "
                           "0.01)\n\n## gate passed")
    already = ep.GateOutcome(exit_code=0, verdict="pass", report={**report, "power": POWER[1:]},
                             markdown="## gate passed\n\n> second\n")
    assert ep.summary_markdown(already) == "## gate passed\n\n> second\n"


def test_power_outputs_from_a_json_report_the_gate_wrote(tmp_path: Path):
    write_report(tmp_path / "r.json", "pass", [])
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    (tmp_path / "r.json").write_text(json.dumps({**data, "power": POWER}), encoding="utf-8")
    outcome = ep.interpret(0, "", json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md")
    stdout = io.StringIO()
    environ = actions_environ(tmp_path)
    ep.publish(outcome, values={}, environ=environ, workspace=tmp_path, json_path=tmp_path / "r.json",
               markdown_path=tmp_path / "r.md", stdout=stdout)
    outputs = parse_github_output((tmp_path / "output").read_text(encoding="utf-8"))
    assert outputs["samples-needed"] == "8100" and outputs["power-note"].startswith("300 samples")
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith("> :information_source: **power:**")


# --------------------------------------------------------------------------- mode: comment, without a fake API


def test_comment_mode_never_runs_the_gate_and_a_bad_report_is_exit_2(tmp_path: Path, capsys):
    (tmp_path / "gate-report").mkdir()
    (tmp_path / "gate-report" / "report.json").write_text('{"verdict": "maybe"}', encoding="utf-8")
    environ = actions_environ(tmp_path, mode="comment")
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    assert "stop-commands" not in stdout.getvalue()
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert error.startswith("error: mode: comment: gate-report/report.json is not a gate report")


def test_comment_mode_refuses_a_report_path_through_a_symlink(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.json").write_text('{"verdict": "pass"}', encoding="utf-8")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "gate-report").symlink_to(outside)
    environ = {**actions_environ(tmp_path, mode="comment"), "GITHUB_WORKSPACE": str(workspace)}
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    assert "::error title=gate could not run::error: action input 'json': gate-report is a symlink" in stdout.getvalue()


@pytest.mark.parametrize("version", [(3, 10, 0), (3, 11, 0)])
def test_the_gate_starts_without_its_working_folder_on_sys_path(tmp_path: Path, version: tuple[int, ...]):
    # A PR's torch.py or gate/ in the folder the gate runs in must not shadow the real ones (both spellings run
    # here: the pre-3.11 one is plain Python too).
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "__init__.py").write_text("raise SystemExit('shadowed')\n", encoding="utf-8")
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", **in_process_environ()}
    done = subprocess.run([sys.executable, *ep.safe_path_flags(version), "gate", "--version"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.startswith("gate"), done.stderr


def test_a_gate_that_cannot_be_started_is_one_error_line(tmp_path: Path, capsys, monkeypatch):
    from gate.action import isolation

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(isolation, "spawn", refuse)
    environ = actions_environ(tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz")
    stdout = io.StringIO()
    assert ep.run_action(environ, stdout=stdout) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert error.startswith("error: cannot start the gate as ") and "Operation not permitted" in error
    assert "::error title=gate could not run::error: cannot start the gate" in stdout.getvalue()


def fork_environ(tmp_path: Path, **inputs: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"repo": {"full_name": "evil/m"}},
                                                  "base": {"repo": {"full_name": "acme/m"}}}}), encoding="utf-8")
    return {**actions_environ(tmp_path, **inputs), "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_EVENT_PATH": str(event)}


@pytest.mark.parametrize("trust,warned", [("candidate", True), ("all", True), ("baseline", False), ("none", False)])
def test_trusting_the_candidate_of_a_fork_is_flagged(tmp_path: Path, trust: str, warned: bool):
    values = ep.with_report_defaults(ep.read_inputs(fork_environ(tmp_path, candidate="c.pt", baseline="b.pt",
                                                                 data="d.npz", trust_checkpoint=trust)))
    plan = ep.plan_check(values, workspace=tmp_path, environ=fork_environ(tmp_path),
                         settings=ep.parse_settings(values))
    assert bool([n for n in plan.notes if "the gate's promise does not hold" in n]) is warned


def test_a_fork_run_without_policy_runs_the_gate_in_an_empty_folder(tmp_path: Path):
    # No config and no factory: allowed, but nothing of the PR's checkout is importable (cwd None: a fresh folder).
    values = ep.with_report_defaults(ep.read_inputs(fork_environ(tmp_path, candidate="c.pt", baseline="b.pt",
                                                                 data="d.npz")))
    plan = ep.plan_check(values, workspace=tmp_path, environ=fork_environ(tmp_path), settings=ep.parse_settings(values))
    assert plan.cwd is None and plan.values["candidate"] == str(tmp_path.resolve() / "c.pt")


def test_interpret_a_gate_killed_by_a_signal_names_the_signal(tmp_path: Path):
    """A gate killed before it could say why (SIGKILL from the OOM killer, say) is 'could not run', named as such."""
    outcome = ep.interpret(-9, "", json_path=tmp_path / "none.json", markdown_path=tmp_path / "none.md")
    assert outcome.exit_code == 2 and outcome.verdict == "error"
    assert outcome.error == "error: the gate process was killed by SIGKILL before it decided anything"


# --------------------------------------------------------------------------- shard, state, states, baseline-cache


def test_a_shard_job_writes_a_state_and_no_report(tmp_path: Path):
    values = ep.with_report_defaults(ep.read_inputs(actions_environ(tmp_path, candidate="c.pt", baseline="b.pt",
                                                                    data="d.npz", shard="2/3")))
    plan = ep.plan_check(values, workspace=tmp_path, environ=actions_environ(tmp_path),
                         settings=ep.parse_settings(values))
    assert plan.reports == {} and plan.state == tmp_path.resolve() / "gate-report" / "shard-2-of-3.gstate"
    argv = ep.build_gate_argv({**plan.values, "json": "", "markdown": "", "state": "/private/s.gstate"})
    ctx = check_command().make_context("check", argv[1:])
    assert ctx.params["shard"] == "2/3" and ctx.params["state_path"] == "/private/s.gstate"
    assert ctx.params["json_path"] is None and ctx.params["markdown_path"] is None


@pytest.mark.parametrize("inputs,message", [
    ({"shard": "4/3"}, "action input 'shard': --shard: expected I/N"),
    ({"state": "s.gstate"}, "'state' goes with 'shard'"),
    ({"shard": "1/2", "junit": "j.xml"}, "a shard job writes its state, not reports"),
    ({"shard": "1/2", "state": "../s.gstate"}, "outside the workspace"),
    ({"baseline-cache": "../cache"}, "outside the workspace"),
])
def test_bad_shard_inputs_are_exit_2_before_the_gate_runs(tmp_path: Path, inputs: dict, message: str):
    values = ep.with_report_defaults({**ep.read_inputs(actions_environ(tmp_path, candidate="c.pt", baseline="b.pt",
                                                                       data="d.npz")), **inputs})
    with pytest.raises(ConfigError, match=re.escape(message)):
        ep.plan_check(values, workspace=tmp_path, environ=actions_environ(tmp_path), settings=ep.parse_settings(values))


def test_baseline_cache_is_a_real_folder_of_the_workspace(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    values = ep.with_report_defaults(ep.read_inputs(actions_environ(tmp_path, candidate="c.pt", baseline="b.pt",
                                                                    data="d.npz")))
    settings = ep.parse_settings(values)
    plan = ep.plan_check({**values, "baseline-cache": ".gate-cache"}, workspace=tmp_path,
                         environ=actions_environ(tmp_path), settings=settings)
    assert plan.cache == tmp_path.resolve() / ".gate-cache"
    assert "--baseline-cache" in ep.build_gate_argv(plan.values)
    with pytest.raises(ConfigError, match="is a symlink"):
        ep.plan_check({**values, "baseline-cache": "link/cache"}, workspace=tmp_path,
                      environ=actions_environ(tmp_path), settings=settings)


def test_merge_mode_takes_state_files_and_patterns_from_the_workspace(tmp_path: Path):
    (tmp_path / "states").mkdir()
    for i in (1, 2):
        (tmp_path / "states" / f"shard-{i}.gstate").write_bytes(b"x")
    values = ep.with_report_defaults(ep.read_inputs(actions_environ(tmp_path, mode="merge",
                                                                    states="states/*.gstate", verbose="true")))
    settings = ep.parse_settings(values)
    assert settings.mode == "merge"
    plan = ep.plan_merge(values, workspace=tmp_path, environ=actions_environ(tmp_path), settings=settings)
    assert [p.name for p in plan.states] == ["shard-1.gstate", "shard-2.gstate"]
    argv = ep.build_merge_argv(plan, {"json": Path("/p/r.json"), "markdown": Path("/p/r.md")})
    assert argv == ["merge", *map(str, plan.states), "--json", "/p/r.json", "--markdown", "/p/r.md", "--verbose"]
    from gate.cli import merge

    assert merge.make_context("merge", argv[1:]).params["states"] == tuple(map(str, plan.states))
    (tmp_path / "gate.yaml").write_text("seed: 0\n")
    plan = ep.plan_merge({**values, "config": "gate.yaml"}, workspace=tmp_path, environ=actions_environ(tmp_path),
                         settings=settings)
    argv = ep.build_merge_argv(plan, {})
    assert argv[len(plan.states) + 1:len(plan.states) + 3] == ["--config", str(tmp_path.resolve() / "gate.yaml")]
    assert merge.make_context("merge", argv[1:]).params["config_path"] == str(tmp_path.resolve() / "gate.yaml")
    (tmp_path / "link.gstate").symlink_to("/etc/hostname")
    for states, message in (("", "'states' is required"), ("none/*.gstate", "matches no file"),
                            ("link.gstate", "resolves outside the workspace"), ("/etc/*", "relative to the workspace")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            ep.plan_merge({**values, "states": states}, workspace=tmp_path, environ=actions_environ(tmp_path),
                          settings=settings)


@pytest.mark.parametrize("inputs", [{"mode": "merge", "states": "s.gstate"},
                                    {"candidate": "c.pt", "baseline": "b.pt", "baseline-cache": ".gate-cache"}])
def test_states_and_caches_are_refused_on_a_forks_pull_request(tmp_path: Path, capsys, inputs: dict):
    """Either one decides what the gate compares; a fork's checkout could hold forged ones at that path."""
    (tmp_path / "s.gstate").write_bytes(b"x")
    environ = fork_environ(tmp_path, **{k.replace("-", "_"): v for k, v in inputs.items()})
    assert ep.run_action(environ, stdout=io.StringIO()) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert error.startswith("error: action input") and "pull request #7 from evil/m" in error


def test_a_shard_outcome_says_nothing_was_decided(tmp_path: Path):
    outcome = ep.GateOutcome(exit_code=0, verdict="shard", shard="1/2: 320 samples in 5 batches",
                             state=tmp_path / "gate-report" / "s.gstate")
    text = ep.summary_markdown(outcome)
    assert "shard 1/2: 320 samples in 5 batches" in text and "mode: merge" in text
    outputs = ep.action_outputs(outcome, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md",
                                workspace=tmp_path)
    assert outputs["verdict"] == "shard" and outputs["state"] == "gate-report/s.gstate"
    assert outputs["report-json"] == "" and ep.annotations(outcome) == []
    bad = ep.interpret_shard(0, "", state_path=tmp_path / "missing.gstate", shard="1/2")
    assert bad.exit_code == 2 and "wrote no state file" in bad.error
    (tmp_path / "forged.gstate").write_bytes(b"not a state")
    bad = ep.interpret_shard(0, "", state_path=tmp_path / "forged.gstate", shard="1/2")
    assert bad.exit_code == 2 and "not a gate state file" in bad.error


def test_token_holder_finds_a_parent_that_keeps_the_runners_tokens(tmp_path):
    """A process started by one that holds ACTIONS_* names that parent; started by a clean one, it names none of
    its own ancestors up to that clean parent."""
    import subprocess
    import sys as _sys

    probe = ("import os, sys; sys.path.insert(0, os.environ['GATE_ROOT']); "
             "from gate.action.isolation import token_holder; print(os.getppid(), token_holder())")
    root = str(Path(__file__).resolve().parents[2])
    base = {"PATH": "/usr/bin:/bin", "GATE_ROOT": root}
    for env, holds in (({**base, "ACTIONS_RUNTIME_TOKEN": "t0k3n"}, True), (base, False)):
        shell = f"{_sys.executable} -c {probe!r}; exit $?"
        out = subprocess.run(["/bin/sh", "-c", shell], env=env, capture_output=True, text=True, check=True).stdout
        parent, _, holder = out.strip().partition(" ")
        if holds:
            assert holder == f"pid {parent} (/proc/{parent}/environ)"
        else:
            assert holder == "None" or not holder.startswith(f"pid {parent} "), holder


@pytest.mark.parametrize("task_input,task", [("", "regression"), ("multi_label", "multi_label")])
def test_a_forks_task_comes_from_the_policy_or_the_input_never_from_its_own_config(tmp_path: Path, task_input: str,
                                                                                  task: str):
    """The pull request commits a gate.yaml with another task where the config input points: on a fork's run the
    config is read in policy-path (the base branch's), so the task is the policy's unless the workflow's input says."""
    from gate.api import OPTIONS, configure

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "gate.yaml").write_text("task: regression\n", encoding="utf-8")
    (tmp_path / "gate.yaml").write_text("task: classification\n", encoding="utf-8")     # the pull request's
    values = ep.with_report_defaults(ep.read_inputs(fork_environ(
        tmp_path, candidate="c.pt", baseline="b.pt", data="d.npz", policy_path="base", config="gate.yaml",
        task=task_input)))
    plan = ep.plan_check(values, workspace=tmp_path, environ=fork_environ(tmp_path), settings=ep.parse_settings(values))
    params = check_command().make_context("check", ep.build_gate_argv(plan.values)[1:]).params
    assert Path(plan.cwd or "", params["config_path"]).resolve() == (tmp_path / "base" / "gate.yaml").resolve()
    assert params["task"] == (task_input or None)
    config = configure(Path(plan.cwd or "", params["config_path"]), **{k: params[k] for k in OPTIONS})
    assert config.task == task and (config.task_source == "--task") is bool(task_input)
