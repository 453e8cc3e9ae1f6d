"""A report from an earlier run is removed before anything can fail: CI never reads a stale verdict.

Each case is a way the gate cannot run (a bad option that click refuses while parsing, a bad config, a missing
input); every report path on the command line held an earlier run's pass, and none may be left."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.acceptance.helpers import run_cli

FACTORY = "tests.tiny_models:build_mlp"
STALE = '{"verdict": "pass"}'

#: name -> (config file name, its text) or None for no config; extra options.
CASES: dict[str, tuple[tuple[str, str] | None, tuple[str, ...]]] = {
    "unknown_key": (("gate.yaml", "devcie: cpu\n"), ()),
    "wrong_type": (("gate.yaml", "seed: many\n"), ()),
    "nan": (("gate.yaml", "checks: {accuracy: {accuracy: {max_drop: .nan}}}\n"), ()),
    "alias_bomb": (("gate.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                    + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                              for p, c in zip("abcdef", "bcdefg"))), ()),
    "duplicate_key": (("gate.yaml", "seed: 1\nseed: 2\n"), ()),
    "bad_yaml": (("gate.yaml", "checks: {accuracy: [\n"), ()),
    "bad_json": (("gate.json", '{"seed": 1,'), ()),
    "trust_from_file": (("gate.yaml", "model: {trust_checkpoint: true}\n"), ()),
    "int_key": (("gate.yaml", "1: x\n"), ()),
    "deep": (("gate.yaml", "x: " + "[" * 5000 + "]" * 5000 + "\n"), ()),
    "seed_too_big": (("gate.yaml", f"seed: {2**64}\n"), ()),
    "missing_config": (None, ("--config", "{tmp}/nope.yaml")),
    "config_is_a_symlink_to_a_non_mapping": (None, ("--config", "{tmp}/link.yaml")),
    "unknown_check_option": (None, ("--enable", "dirft")),
    "unknown_option": (None, ("--bogus",)),
    "threads_too_many": (None, ("--threads", "1000000000")),
    "shard_with_reports": (None, ("--shard", "1/2", "--state", "{tmp}/s.gstate")),
}


def _stale_reports(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.xml", tmp_path / "r.html"]
    for path in paths:
        path.write_text(STALE)
    return paths


def _report_options(paths: list[Path]) -> list[str]:
    json_path, md, xml, html = map(str, paths)
    return ["--json", json_path, "--markdown", md, f"--junit={xml}", "--html", html]


@pytest.mark.parametrize("name", sorted(CASES))
def test_stale_reports_are_removed_whatever_stops_the_gate(name, world, in_repo_root, tmp_path, capsys):
    config, extra = CASES[name]
    paths = _stale_reports(tmp_path)
    (tmp_path / "link.yaml").symlink_to("/etc/hostname" if Path("/etc/hostname").is_file() else "/etc/passwd")
    state = tmp_path / "s.gstate"
    state.write_text("stale state")
    args = [str(world.good), "-b", str(world.baseline), "-d", str(world.data), "--model-factory", FACTORY]
    if config is not None:
        (tmp_path / config[0]).write_text(config[1])
        args += ["-c", str(tmp_path / config[0])]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    res = run_cli(capsys, "check", *args, *_report_options(paths))
    assert res.code == 2, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err + res.out
    assert [p.name for p in paths if p.exists()] == []
    if name == "shard_with_reports":
        assert not state.exists()


def test_stale_reports_are_removed_when_data_is_missing(world, in_repo_root, tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "--model-factory", FACTORY,
                  *_report_options(paths))
    assert res.code == 2 and res.err.count("\n") == 1 and "--data" in res.err, res.err
    assert not any(p.exists() for p in paths)


def test_help_removes_nothing(tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    res = run_cli(capsys, "check", "c.pt", *_report_options(paths), "--help")
    assert res.code == 0 and "--json" in res.out
    assert all(p.read_text() == STALE for p in paths)


def test_an_option_value_that_looks_like_a_report_option_is_read_as_click_reads_it(tmp_path, capsys):
    # "-d --json" gives --data the value "--json": what follows is an argument, not a report path
    kept = tmp_path / "kept.json"
    kept.write_text(STALE)
    gone = tmp_path / "gone.md"
    gone.write_text(STALE)
    res = run_cli(capsys, "check", "c.pt", "-b", "b.pt", "-d", "--json", str(kept), f"--markdown={gone}", "--", "x")
    assert res.code == 2
    assert kept.exists() and not gone.exists()


def test_a_symlinked_report_path_loses_the_link_never_its_target(world, tmp_path, capsys):
    target = tmp_path / "elsewhere.json"
    target.write_text(STALE)
    (tmp_path / "r.json").symlink_to(target)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "--json", tmp_path / "r.json", "--bogus")
    assert res.code == 2
    assert not os.path.lexists(tmp_path / "r.json")       # the path names no report
    assert target.read_text() == STALE                    # and nothing outside it was touched


def test_a_stale_report_that_cannot_be_removed_is_one_error_line(world, tmp_path, capsys, monkeypatch):
    stale = tmp_path / "r.json"
    stale.write_text(STALE)
    unlink = Path.unlink

    def refuse(self, *args, **kwargs):     # what a read-only folder does to a user who is not root
        if self == stale:
            raise PermissionError(13, "Permission denied")
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "--json", stale)
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert res.err == f"error: --json: cannot remove the report of an earlier run at {stale}: Permission denied\n"


def test_a_report_on_a_full_device_is_one_error_line(world, in_repo_root, tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "-d", world.data, "--model-factory", FACTORY,
                  "--json", "/dev/full", "--markdown", paths[1])
    assert res.code == 2, res.err
    assert res.err.strip().splitlines() == ["error: --json: cannot write /dev/full: No space left on device"]
    assert not paths[1].exists() and not list(tmp_path.glob(".r.md.*"))


def test_a_usage_error_before_check_is_reached_still_removes_its_reports(tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    res = run_cli(capsys, "--bogus", "check", "c.pt", "-b", "b.pt", *_report_options(paths))
    assert res.code == 2 and res.err.count("\n") == 1 and "--bogus" in res.err, res.err
    assert not any(p.exists() for p in paths)


@pytest.mark.parametrize("command", ["chek", "mrege"])
def test_a_misspelled_subcommand_still_removes_its_reports_and_never_an_input(command, tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    inputs = [tmp_path / "c.pt", tmp_path / "b.pt"]
    for path in inputs:
        path.write_bytes(b"an input")
    res = run_cli(capsys, command, inputs[0], "-b", inputs[1], *_report_options(paths), "--html", inputs[0])
    assert res.code == 2 and res.err.count("\n") == 1 and command in res.err, res.err
    assert not any(p.exists() for p in paths)
    assert all(p.read_bytes() == b"an input" for p in inputs)


def test_the_pre_commit_hook_removes_stale_reports_too(world, tmp_path, capsys, monkeypatch):
    paths = _stale_reports(tmp_path)
    listed = tmp_path / "hook-args"
    listed.write_text("\n".join(["-b", str(world.baseline), *_report_options(paths), "--enable", "dirft"]) + "\n")
    monkeypatch.setenv("GATE_HOOK_ARGS", str(listed))
    res = run_cli(capsys, "hook", str(world.good))
    assert res.code == 2 and res.err.count("\n") == 1 and "dirft" in res.err, res.err
    assert not any(p.exists() for p in paths)


def test_an_error_line_is_cut_at_4000_characters(tmp_path, capsys):
    res = run_cli(capsys, "check", "c.pt", "-b", "b.pt", "--enable", "x" * 100_000)
    assert res.code == 2 and res.err.count("\n") == 1
    assert len(res.err) < 4100 and res.err.rstrip().endswith("characters in all)")


@pytest.mark.parametrize("option, role", [("--state", "baseline"), ("--json", "data"), ("--markdown", "candidate"),
                                          ("--html", "config")])
def test_a_report_path_that_names_an_input_is_refused_and_the_input_kept(option, role, world, in_repo_root,
                                                                         tmp_path, capsys):
    """`--state b.pt` with b.pt the baseline (no --shard: a usage error), `--json eval.npz` and the like: the
    input is not removed, whatever else is wrong, and the run says why in one line."""
    import shutil

    inputs = {"candidate": tmp_path / "cand.pt", "baseline": tmp_path / "base.pt", "data": tmp_path / "eval.npz",
              "config": tmp_path / "gate.yaml"}
    shutil.copy(world.good, inputs["candidate"])
    shutil.copy(world.baseline, inputs["baseline"])
    shutil.copy(world.data, inputs["data"])
    inputs["config"].write_text("seed: 1\n")
    before = {k: p.read_bytes() for k, p in inputs.items()}
    res = run_cli(capsys, "check", inputs["candidate"], "-b", inputs["baseline"], "-d", inputs["data"],
                  "-c", inputs["config"], "--model-factory", FACTORY, option, inputs[role])
    assert res.code == 2, res.err
    assert {k: p.read_bytes() for k, p in inputs.items()} == before
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    if option != "--state":                     # --state without --shard is refused first, as a usage error
        assert "must not overwrite an input" in lines[0] and str(inputs[role]) in lines[0], lines[0]


def test_merge_removes_stale_reports_on_a_usage_error_and_never_a_state(tmp_path, capsys):
    """`gate merge` with an option click refuses: its stale reports are gone; `--json` naming one of the states
    is refused and the state kept."""
    reports = _stale_reports(tmp_path)
    state = tmp_path / "s1.gstate"
    state.write_bytes(b"not yet read")
    res = run_cli(capsys, "merge", state, *_report_options(reports), "--bogus")
    assert res.code == 2 and not any(p.exists() for p in reports), res.err
    res = run_cli(capsys, "merge", state, "--json", state)
    assert res.code == 2 and state.read_bytes() == b"not yet read", res.err
    assert "must not overwrite an input" in res.err and res.err.count("\n") == 1, res.err


def _one_error_line(res, *, says: str) -> str:
    assert res.code == 2, (res.code, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], res.err
    assert "Traceback" not in res.err + res.out and "internal error" not in res.err
    return lines[0]


@pytest.mark.parametrize("option", ["--json", "--markdown", "--junit", "--html", "--state"])
def test_a_report_or_state_path_that_is_a_link_holds_no_report_after_a_failed_run(option, world, in_repo_root,
                                                                                  tmp_path, capsys):
    """The link at the named path is removed (the earlier run's verdict is not read through it), the file it points
    to is left as it was; with --state, a later `gate merge` of that path finds nothing."""
    earlier = tmp_path / "earlier.out"
    earlier.write_text(STALE)
    link = tmp_path / "named.out"
    link.symlink_to(earlier)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    shard = ("--shard", "1/2") if option == "--state" else ()
    res = run_cli(capsys, "check", broken, "-b", world.baseline, "-d", world.data, "--model-factory", FACTORY,
                  *shard, option, link)
    _one_error_line(res, says="candidate")
    assert not os.path.lexists(link)
    assert earlier.read_text() == STALE


def test_a_report_path_that_is_a_link_is_replaced_by_the_report_not_written_through(world, in_repo_root, tmp_path,
                                                                                    capsys):
    """Success treats the link as failure does: the named path becomes the report, the link's target is untouched."""
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(STALE)
    link = tmp_path / "r.json"
    link.symlink_to(elsewhere)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "-d", world.data, "--model-factory", FACTORY,
                  "--json", link)
    assert res.code in (0, 1), res.err
    assert not link.is_symlink() and json.loads(link.read_text())["verdict"] in ("pass", "warn", "fail")
    assert elsewhere.read_text() == STALE


REPORT_OPTIONS = ("--json", "--markdown", "--junit", "--html")     # in _stale_reports' order

#: The options of `gate check` that take a path or a name: each given as "" is exit 2, never "not given".
EMPTY = ["--config", "--onnx", "--json", "--markdown", "--junit", "--html", "--baseline-cache", "--model-factory",
         "--baseline", "--data", "--state", "--shard", "CANDIDATE"]


@pytest.mark.parametrize("option", EMPTY)
def test_an_empty_option_value_is_an_error_naming_the_option(option, world, in_repo_root, tmp_path, capsys):
    """`-c "$GATE_CONFIG"` with the variable unset: exit 2 naming the option, never a run without the policy or
    the report it was named; the stale reports named by the other options are gone."""
    paths = _stale_reports(tmp_path)
    given = {"--baseline": world.baseline, "--data": world.data, "--model-factory": FACTORY,
             **dict(zip(REPORT_OPTIONS, paths))}
    given[option] = ""
    res = run_cli(capsys, "check", "" if option == "CANDIDATE" else world.good,
                  *[str(v) for pair in given.items() if pair[0] != "CANDIDATE" for v in pair])
    what = "value" if option in ("--model-factory", "--shard") else "path"
    assert _one_error_line(res, says=option) == f"error: {option}: an empty {what}"
    assert [p for p in paths if p.exists()] == [p for o, p in zip(REPORT_OPTIONS, paths) if o == option]


@pytest.mark.parametrize("option", ["--config", "--json", "--markdown", "--junit", "--html", "STATE"])
def test_an_empty_option_value_of_merge_is_an_error_naming_it(option, tmp_path, capsys):
    paths = _stale_reports(tmp_path)
    state = tmp_path / "s1.gstate"
    state.write_bytes(b"not read")
    given = dict(zip(REPORT_OPTIONS, map(str, paths)))
    given[option] = ""
    states = ["", str(state)] if option == "STATE" else [str(state)]
    res = run_cli(capsys, "merge", *states, *[v for pair in given.items() if pair[0] != "STATE" for v in pair])
    assert _one_error_line(res, says=option) == f"error: {option}: an empty path"
    assert [p for p in paths if p.exists()] == [p for o, p in zip(REPORT_OPTIONS, paths) if o == option]
    assert state.read_bytes() == b"not read"


LONG = "a" * 300 + ".json"


@pytest.mark.parametrize("case", ["name_too_long", "link_loop_on_the_way", "file_on_the_way", "no_search_permission"])
def test_a_report_path_that_cannot_be_looked_at_is_one_error_naming_the_option(case, world, in_repo_root, tmp_path,
                                                                               capsys, monkeypatch):
    """ENAMETOOLONG, ELOOP, ENOTDIR, EACCES on the way to a report path: `error: --json: cannot write PATH: why`,
    exit 2, before the run; the other stale reports are gone all the same."""
    paths = _stale_reports(tmp_path)
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "file").write_text("x")
    (tmp_path / "locked").mkdir()
    bad = {"name_too_long": tmp_path / LONG, "link_loop_on_the_way": tmp_path / "loop_a" / "r.json",
           "file_on_the_way": tmp_path / "file" / "r.json", "no_search_permission": tmp_path / "locked" / "r.json"}[case]
    said = {"name_too_long": "File name too long", "link_loop_on_the_way": "Too many levels of symbolic links",
            "file_on_the_way": f"{tmp_path / 'file'} is not a writable directory",
            "no_search_permission": "Permission denied"}[case]
    if case == "no_search_permission":      # what a folder without x permission does (root ignores the bits)
        real_lstat = os.lstat

        def refuse(path, *args, **kwargs):
            if str(path).startswith(str(tmp_path / "locked") + "/"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_lstat(path, *args, **kwargs)

        monkeypatch.setattr(os, "lstat", refuse)
    _, md, xml, html = map(str, paths)
    res = run_cli(capsys, "check", world.good, "-b", world.baseline, "-d", world.data, "--model-factory", FACTORY,
                  "--markdown", md, f"--junit={xml}", "--html", html, "--json", bad)
    assert _one_error_line(res, says=said) == f"error: --json: cannot write {bad}: {said}"
    assert not any(p.exists() for p in paths[1:])
