"""A loopback server that behaves like GitHub's REST API for issue comments (per_page capped at 100, Link
pagination, only a comment's author may edit it, GET /user refused to the job's installation token)."""
from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

TOKEN = "ghs_test_token"          # the job's GITHUB_TOKEN: an installation token, GET /user is refused
PAT = "ghp_user_token"            # a user's token: GET /user says who
PAT_USER = {"login": "gate-bot", "id": 77}
BOT = {"login": "github-actions[bot]", "id": 41898282}
REPO = "acme/models"
PR = 7


@dataclass
class FakeGitHub:
    """In-memory issue comments for one repository, served like api.github.com (per_page capped at 100)."""

    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)    # (method, path?query)
    edited: list[int] = field(default_factory=list)                  # ids of the comments PATCHed
    forbid_writes: bool = False
    next_id: int = 1000
    url: str = ""
    link_base: str = ""   # where Link headers point; the server's own URL unless a test says otherwise
    pulls: list[dict[str, Any]] = field(default_factory=list)   # open PRs, for GET /repos/R/pulls?head=...
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, issue: int, body: str, user: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            self.next_id += 1
            comment = {"id": self.next_id, "body": body, "html_url": f"https://github.test/{REPO}/pull/{issue}"
                       f"#issuecomment-{self.next_id}", "user": dict(user or BOT)}
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
            if self.headers.get("Authorization") not in (f"Bearer {TOKEN}", f"Bearer {PAT}"):
                self.reply(401, {"message": "Bad credentials"})
                return False
            return True

        def caller(self) -> dict[str, Any]:
            return PAT_USER if self.headers.get("Authorization") == f"Bearer {PAT}" else BOT

        def body(self) -> dict[str, Any]:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path))
            if not self.authorised():
                return
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/user":
                if self.caller() is BOT:
                    return self.reply(403, {"message": "Resource not accessible by integration"})
                return self.reply(200, PAT_USER)
            if url.path == f"/repos/{REPO}/pulls":
                head = urllib.parse.parse_qs(url.query).get("head", [""])[0]
                return self.reply(200, [p for p in fake.pulls if f"{p['head']['repo']['owner']['login']}:"
                                        f"{p['head']['ref']}" == head])
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
            self.reply(201, fake.add(int(match.group(1)), self.body()["body"], user=self.caller()))

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
                        if comment["user"]["login"] != self.caller()["login"]:   # GitHub: only the author edits
                            return self.reply(403, {"message": "Must have admin rights to Repository."})
                        fake.edited.append(comment["id"])
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
