"""The sticky PR comment against a loopback server that behaves like GitHub's REST API for issue comments."""
from __future__ import annotations

import io
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gate.action import comment as cm
from gate.action import entrypoint as ep
from tests.fake_github import BOT, PAT, PAT_USER, PR, REPO, TOKEN, FakeGitHub, make_handler
from tests.fake_github import github  # noqa: F401 - the fixture


def api(fake: FakeGitHub) -> cm.GitHubApi:
    return cm.GitHubApi(url=fake.url, token=TOKEN, timeout_s=10)


def actions_env(fake: FakeGitHub, tmp_path: Path, event: dict[str, Any], name: str = "pull_request") -> dict[str, str]:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    return {"GITHUB_API_URL": fake.url, "GITHUB_REPOSITORY": REPO, "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_EVENT_NAME": name, "GITHUB_WORKFLOW": "model gate", "GITHUB_JOB": "gate"}


# --------------------------------------------------------------------------- upsert against the fake API


def test_two_runs_leave_exactly_one_comment_updated_not_duplicated(github: FakeGitHub):
    github.add(PR, "LGTM")
    marker = cm.marker_for("model gate/gate")
    first = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=marker, body="report one")
    second = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=marker, body="report two")
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id
    [only] = github.marked(PR, marker)
    assert only["body"] == f"{marker}\nreport two"
    assert [c["body"] for c in github.comments[PR]][0] == "LGTM"
    assert [(m, p.split("?")[0].rsplit("/", 1)[-1]) for m, p in github.requests] == [
        ("GET", "user"), ("GET", "comments"), ("POST", "comments"),
        ("GET", "user"), ("GET", "comments"), ("PATCH", str(first.comment_id))]


def test_a_comment_on_the_second_page_is_found_and_updated(github: FakeGitHub):
    marker = cm.marker_for("gate")
    for i in range(120):
        github.add(PR, f"chatter {i}")
    mine = github.add(PR, f"{marker}\nold report")
    for i in range(15):
        github.add(PR, f"more chatter {i}")
    result = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=marker, body="new report")
    assert (result.action, result.comment_id) == ("updated", mine["id"])
    assert len(github.comments[PR]) == 136
    assert mine["body"] == f"{marker}\nnew report"
    gets = [path for method, path in github.requests if method == "GET" and path != "/user"]
    assert len(gets) == 2 and "page=2" in gets[1] and "per_page=100" in gets[0]


def test_pagination_reads_every_page_before_creating(github: FakeGitHub):
    for i in range(250):
        github.add(PR, f"chatter {i}")
    result = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=cm.marker_for("x"), body="r")
    assert result.action == "created"
    assert [m for m, p in github.requests if p != "/user"] == ["GET", "GET", "GET", "POST"]
    assert len(github.comments[PR]) == 251


def test_different_keys_keep_different_comments(github: FakeGitHub):
    for key in ("gate/cpu", "gate/cuda", "gate/cpu"):
        cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=cm.marker_for(key), body=key)
    assert sorted(c["body"].split("\n")[1] for c in github.comments[PR]) == ["gate/cpu", "gate/cuda"]


def test_403_raises_comment_error_with_a_hint(github: FakeGitHub):
    github.forbid_writes = True
    with pytest.raises(cm.CommentError, match=r"HTTP 403 .*not accessible by integration.*pull-requests: write"):
        cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=cm.marker_for("k"), body="r")
    assert PR not in github.comments


def test_a_bad_token_is_a_comment_error(github: FakeGitHub):
    with pytest.raises(cm.CommentError, match="HTTP 401"):
        cm.find_marked_comment(cm.GitHubApi(url=github.url, token="wrong"), repository=REPO, issue_number=PR,
                               marker="m", author=cm.ACTIONS_BOT)


def test_the_token_is_never_sent_to_another_origin(github: FakeGitHub):
    elsewhere = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(elsewhere))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        other = f"http://127.0.0.1:{server.server_address[1]}"
        # A Link header that points at another host must not receive the Authorization header.
        for i in range(101):
            github.add(PR, f"c{i}")
        github.link_base = other
        with pytest.raises(cm.CommentError, match="refusing to send the token"):
            cm.find_marked_comment(api(github), repository=REPO, issue_number=PR,
                                   marker="absent", author=cm.ACTIONS_BOT)
        assert elsewhere.requests == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_unreachable_api_is_a_comment_error():
    with pytest.raises(cm.CommentError, match="cannot reach the GitHub API"):
        cm.find_marked_comment(cm.GitHubApi(url="http://127.0.0.1:9", token=TOKEN, timeout_s=5), repository=REPO,
                               issue_number=PR, marker="m", author=cm.ACTIONS_BOT)


# --------------------------------------------------------------------------- whose comment is edited


MALLORY = {"login": "mallory", "id": 666}


@pytest.mark.parametrize("token,ours", [(TOKEN, BOT), (PAT, PAT_USER)], ids=["GITHUB_TOKEN", "user token"])
def test_a_comment_by_someone_else_with_the_marker_is_never_edited(github: FakeGitHub, token: str, ours: dict):
    marker = cm.marker_for("model gate/gate")
    # A PR author copies the marker (it is in every report comment's source) into comments of their own, first.
    forged = [github.add(PR, f"{marker}\n## gate passed", user=MALLORY),
              github.add(PR, f"{marker}\nlooks good", user={"login": ours["login"] + "-evil", "id": 1})]
    gate_api = cm.GitHubApi(url=github.url, token=token, timeout_s=10)
    first = cm.upsert_comment(gate_api, repository=REPO, issue_number=PR, marker=marker, body="report one")
    second = cm.upsert_comment(gate_api, repository=REPO, issue_number=PR, marker=marker, body="report two")
    assert (first.action, second.action) == ("created", "updated") and first.comment_id == second.comment_id
    assert [c["body"] for c in forged] == [f"{marker}\n## gate passed", f"{marker}\nlooks good"]
    assert github.edited == [first.comment_id]
    [mine] = [c for c in github.comments[PR] if c["id"] == first.comment_id]
    assert mine["user"]["login"] == ours["login"] and mine["body"] == f"{marker}\nreport two"


def test_the_marker_must_open_the_comment(github: FakeGitHub):
    # Our own identity quoting a marker mid-text (a reply that quotes the report) is not the report comment.
    marker = cm.marker_for("k")
    quoted = github.add(PR, f"> {marker}\n> old report\n\nreply")
    result = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=marker, body="r")
    assert result.action == "created" and quoted["body"].startswith("> ")


def test_identity_of_a_user_token_is_read_from_the_api(github: FakeGitHub):
    assert cm.token_identity(cm.GitHubApi(url=github.url, token=PAT)) == cm.Identity("gate-bot", 77)
    assert cm.token_identity(api(github)) == cm.ACTIONS_BOT
    with pytest.raises(cm.CommentError, match="cannot reach"):
        cm.token_identity(cm.GitHubApi(url="http://127.0.0.1:9", token=TOKEN, timeout_s=5))


def test_same_login_with_another_id_is_someone_else():
    assert cm.Identity("gate-bot", 77).wrote({"user": {"login": "Gate-Bot", "id": 77}})
    assert not cm.Identity("gate-bot", 77).wrote({"user": {"login": "gate-bot", "id": 78}})
    assert not cm.ACTIONS_BOT.wrote({"user": None}) and not cm.ACTIONS_BOT.wrote({})


def test_workflow_run_finds_a_forks_pull_request_from_githubs_payload(github: FakeGitHub, tmp_path: Path):
    github.pulls = [{"number": 9, "head": {"ref": "patch-1", "sha": "b" * 40, "repo": {"owner": {"login": "evil"}}}},
                    {"number": PR, "head": {"ref": "patch-1", "sha": "a" * 40, "repo": {"owner": {"login": "evil"}}}}]
    event = {"workflow_run": {"pull_requests": [], "head_branch": "patch-1", "head_sha": "a" * 40,
                              "head_repository": {"full_name": "evil/models", "owner": {"login": "evil"}},
                              "repository": {"full_name": REPO}}}
    environ = actions_env(github, tmp_path, event, name="workflow_run")
    result = cm.comment_on_pull_request(environ, token=TOKEN, key="k", markdown="report")
    assert result.action == "created" and PR in github.comments and 9 not in github.comments


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("header,expected", [
    ('<https://api.github.com/r?page=2>; rel="next", <https://api.github.com/r?page=9>; rel="last"',
     "https://api.github.com/r?page=2"),
    ('<https://api.github.com/r?page=1>; rel="prev", <https://api.github.com/r?page=1>; rel="first"', None),
    ('<https://api.github.com/r?page=3>; rel="last", <https://api.github.com/r?page=2>; rel="next"',
     "https://api.github.com/r?page=2"),
    ("", None),
    (None, None),
])
def test_next_page_url(header: str | None, expected: str | None):
    assert cm.next_page_url(header) == expected


def test_marker_is_a_valid_hidden_html_comment():
    marker = cm.marker_for("my workflow -->  <b>/job")
    assert marker.startswith("<!-- gate-report:") and marker.endswith(" -->")
    assert "--" not in marker[len("<!--"):-len("-->")]
    assert cm.marker_for("") == "<!-- gate-report:default -->"


def test_comment_body_is_cut_to_githubs_limit_and_keeps_marker_and_footer():
    marker = cm.marker_for("k")
    body = cm.comment_body("x" * 100_000, marker=marker, footer="[run 1](https://github.test)")
    assert len(body) <= cm.MAX_COMMENT_CHARS
    assert body.startswith(marker) and "[run 1](https://github.test)" in body and "cut to fit" in body
    assert cm.comment_body("short", marker=marker) == f"{marker}\nshort\n"


@pytest.mark.parametrize("event,expected", [
    ({"pull_request": {"number": 12}}, 12),
    ({"issue": {"number": 5, "pull_request": {"url": "u"}}}, 5),
    ({"issue": {"number": 5}}, None),
    ({"ref": "refs/heads/main"}, None),
    ([], None),
])
def test_pull_request_number_from_the_event_payload(tmp_path: Path, event: Any, expected: int | None):
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    assert cm.pull_request_number(str(path)) == expected


def test_pull_request_number_of_a_missing_payload_is_none(tmp_path: Path):
    assert cm.pull_request_number(str(tmp_path / "missing.json")) is None
    assert cm.pull_request_number(None) is None


# --------------------------------------------------------------------------- through the entrypoint


FAILED = ep.GateOutcome(
    exit_code=1, verdict="fail", markdown="## :x: gate FAILED\n\naccuracy dropped\n",
    report={"verdict": "fail", "checks": [{"name": "accuracy", "status": "fail", "summary": "dropped"}]},
)


def publish(outcome: ep.GateOutcome, environ: dict[str, str], values: dict[str, str], tmp_path: Path) -> str:
    stdout = io.StringIO()
    ep.publish(outcome, values=values, environ=environ, workspace=tmp_path, json_path=tmp_path / "r.json",
               markdown_path=tmp_path / "r.md", stdout=stdout)
    return stdout.getvalue()


def test_entrypoint_posts_then_updates_one_comment(github: FakeGitHub, tmp_path: Path):
    environ = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    environ.update(GITHUB_SERVER_URL="https://github.test", GITHUB_RUN_ID="42")
    values = {"comment": "true", "github-token": TOKEN}
    log1 = publish(FAILED, environ, values, tmp_path)
    passed = ep.GateOutcome(exit_code=0, verdict="pass", markdown="## gate passed\n", report={"checks": []})
    log2 = publish(passed, environ, values, tmp_path)
    assert "gate: created the pull-request comment" in log1 and "gate: updated the pull-request comment" in log2
    [only] = github.comments[PR]
    assert only["body"].startswith("<!-- gate-report:model-gate/gate -->\n## gate passed")
    assert "[gate run 42](https://github.test/acme/models/actions/runs/42)" in only["body"]


def test_entrypoint_comment_when_the_gate_could_not_run_shows_the_error(github: FakeGitHub, tmp_path: Path):
    environ = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    outcome = ep.GateOutcome(exit_code=2, verdict="error", error="error: baseline.pt: no such file")
    publish(outcome, environ, {"comment": "true", "github-token": TOKEN}, tmp_path)
    [only] = github.comments[PR]
    assert "could not run" in only["body"] and "error: baseline.pt: no such file" in only["body"]


def test_entrypoint_403_is_a_warning_not_a_crash(github: FakeGitHub, tmp_path: Path):
    github.forbid_writes = True
    environ = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    log = publish(FAILED, environ, {"comment": "true", "github-token": TOKEN}, tmp_path)
    warnings = [line for line in log.splitlines() if line.startswith("::warning title=gate PR comment::")]
    assert len(warnings) == 1 and "HTTP 403" in warnings[0]
    assert "::error title=gate%3A accuracy::dropped" in log   # the verdict is still reported
    assert PR not in github.comments


def test_entrypoint_without_token_or_outside_a_pr_warns(github: FakeGitHub, tmp_path: Path):
    pr_env = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    no_token = publish(FAILED, pr_env, {"comment": "true", "github-token": ""}, tmp_path)
    assert "::warning title=gate PR comment::comment: true, but no github-token" in no_token
    push_env = actions_env(github, tmp_path, {"ref": "refs/heads/main"}, name="push")
    on_push = publish(FAILED, push_env, {"comment": "true", "github-token": TOKEN}, tmp_path)
    assert "::warning title=gate PR comment::comment: true, but this run is for a 'push' event" in on_push
    assert github.requests == []


def test_entrypoint_does_not_comment_unless_asked(github: FakeGitHub, tmp_path: Path):
    environ = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    log = publish(FAILED, environ, {"comment": "false", "github-token": TOKEN}, tmp_path)
    assert github.requests == [] and "PR comment" not in log


# --------------------------------------------------------------------------- mode: comment


def comment_mode_environ(github: FakeGitHub, tmp_path: Path) -> dict[str, str]:
    environ = actions_env(github, tmp_path, {"pull_request": {"number": PR}})
    environ.update({"GITHUB_WORKSPACE": str(tmp_path), "INPUT_MODE": "comment", "INPUT_GITHUB-TOKEN": TOKEN,
                    "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    return environ


def test_comment_mode_posts_the_json_report_escaped(github: FakeGitHub, tmp_path: Path):
    (tmp_path / "gate-report").mkdir()
    report = {"verdict": "fail", "summary": "FAIL: <b>x</b>", "checks": [
        {"name": "per_class", "status": "fail", "summary": "recall[@admins] dropped",
         "findings": [{"status": "fail", "reason": "recall[</details>] dropped 0.3"}]}]}
    (tmp_path / "gate-report" / "report.json").write_text(json.dumps(report), encoding="utf-8")
    stdout = io.StringIO()
    assert ep.run_action(comment_mode_environ(github, tmp_path), stdout=stdout) == 0
    [posted] = github.comments[PR]
    body = posted["body"]
    assert body.startswith("<!-- gate-report:model-gate/gate -->\n## :x: gate: fail")
    assert "&lt;b&gt;x&lt;/b&gt;" in body and "@\u200badmins" in body and "&lt;/details&gt;" in body
    assert "stop-commands" not in stdout.getvalue() and not (tmp_path / "summary.md").exists()


def test_comment_mode_without_a_report_says_the_check_could_not_run(github: FakeGitHub, tmp_path: Path):
    stdout = io.StringIO()
    assert ep.run_action(comment_mode_environ(github, tmp_path), stdout=stdout) == 0
    [posted] = github.comments[PR]
    assert "gate could not run" in posted["body"] and "No report at" in posted["body"]
