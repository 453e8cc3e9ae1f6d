"""The sticky PR comment against a loopback server that behaves like GitHub's REST API for issue comments."""
from __future__ import annotations

import io
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from gate.action import comment as cm
from gate.action import entrypoint as ep

TOKEN = "ghs_test_token"
REPO = "acme/models"
PR = 7


@dataclass
class FakeGitHub:
    """In-memory issue comments for one repository, served like api.github.com (per_page capped at 100)."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)    # (method, path?query)
    forbid_writes: bool = False
    next_id: int = 1000
    url: str = ""
    link_base: str = ""   # where Link headers point; the server's own URL unless a test says otherwise
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, issue: int, body: str) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            comment = {"id": self.next_id, "body": body, "html_url": f"https://github.test/{REPO}/pull/{issue}"
                       f"#issuecomment-{self.next_id}", "user": {"login": "github-actions[bot]"}}
            self.comments.setdefault(issue, []).append(comment)
            return comment

    def marked(self, issue: int, marker: str) -> list[dict[str, Any]]:
        return [c for c in self.comments.get(issue, []) if marker in c["body"]]


def make_handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"message": "Bad credentials"})
                return False
            return True

        def body(self) -> dict[str, Any]:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path))
            if not self.authorised():
                return
            url = urllib.parse.urlsplit(self.path)
            match = re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", url.path)
            if not match:
                return self.reply(404, {"message": "Not Found"})
            query = urllib.parse.parse_qs(url.query)
            per_page = min(int(query.get("per_page", ["30"])[0]), 100)
            page = int(query.get("page", ["1"])[0])
            items = fake.comments.get(int(match.group(1)), [])
            last = max(1, -(-len(items) // per_page))
            headers = {}
            if page < last:
                base = f"{fake.link_base or fake.url}{url.path}?per_page={per_page}"
                headers["Link"] = f'<{base}&page={page + 1}>; rel="next", <{base}&page={last}>; rel="last"'
            self.reply(200, items[(page - 1) * per_page: page * per_page], headers)

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path))
            if not self.authorised():
                return
            match = re.fullmatch(rf"/repos/{REPO}/issues/(\d+)/comments", self.path)
            if not match:
                return self.reply(404, {"message": "Not Found"})
            if fake.forbid_writes:
                return self.reply(403, {"message": "Resource not accessible by integration"})
            self.reply(201, fake.add(int(match.group(1)), self.body()["body"]))

        def do_PATCH(self) -> None:
            fake.requests.append(("PATCH", self.path))
            if not self.authorised():
                return
            match = re.fullmatch(rf"/repos/{REPO}/issues/comments/(\d+)", self.path)
            if fake.forbid_writes:
                return self.reply(403, {"message": "Resource not accessible by integration"})
            for comments in fake.comments.values():
                for comment in comments:
                    if match and comment["id"] == int(match.group(1)):
                        comment["body"] = self.body()["body"]
                        return self.reply(200, comment)
            self.reply(404, {"message": "Not Found"})

    return Handler


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


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
    assert [m for m, _ in github.requests] == ["GET", "POST", "GET", "PATCH"]


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
    gets = [path for method, path in github.requests if method == "GET"]
    assert len(gets) == 2 and "page=2" in gets[1] and "per_page=100" in gets[0]


def test_pagination_reads_every_page_before_creating(github: FakeGitHub):
    for i in range(250):
        github.add(PR, f"chatter {i}")
    result = cm.upsert_comment(api(github), repository=REPO, issue_number=PR, marker=cm.marker_for("x"), body="r")
    assert result.action == "created"
    assert [m for m, _ in github.requests] == ["GET", "GET", "GET", "POST"]
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
                               marker="m")


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
                                   marker="absent")
        assert elsewhere.requests == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_unreachable_api_is_a_comment_error():
    with pytest.raises(cm.CommentError, match="cannot reach the GitHub API"):
        cm.find_marked_comment(cm.GitHubApi(url="http://127.0.0.1:9", token=TOKEN, timeout_s=5), repository=REPO,
                               issue_number=PR, marker="m")


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
