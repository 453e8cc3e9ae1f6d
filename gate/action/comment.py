"""One sticky pull-request comment holding the gate report, created once and updated on every later run.

The comment carries a hidden marker (`<!-- gate-report:KEY -->`); a run lists the PR's comments (all pages), PATCHes
the one that starts with its marker *and was written by the token's own identity*, or POSTs a new one. Anyone can
post a comment holding the marker; only the identity check keeps a PR author's comment from being taken over (the
marker only tells our comments apart). urllib only, so the Action needs no HTTP dependency.

Every problem (no token, not a pull request, 403 from a fork's read-only token, network) raises `CommentError`:
the entrypoint turns it into a `::warning`, because a missing comment must never hide or change the gate's verdict.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

# GitHub rejects comment bodies over 65,536 characters.
MAX_COMMENT_CHARS = 65_536
PER_PAGE = 100
_USER_AGENT = "pytorch-gate-action"
_LINK_PART = re.compile(r'<([^>]*)>\s*;\s*(.*)')
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class CommentError(Exception):
    """The PR comment could not be posted; the message says why and what to change."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Who the token acts as: only comments by this login (and id, when known) are ever edited."""

    login: str
    id: int | None = None

    def wrote(self, comment: Mapping[str, Any]) -> bool:
        user = comment.get("user")
        if not isinstance(user, dict) or str(user.get("login") or "").lower() != self.login.lower():
            return False
        return self.id is None or user.get("id") is None or user.get("id") == self.id


# What the workflow's own GITHUB_TOKEN acts as (GET /user is refused to an installation token).
ACTIONS_BOT = Identity("github-actions[bot]", 41898282)


@dataclass(frozen=True)
class GitHubApi:
    """Where and as whom to call the REST API (GITHUB_API_URL, the job's token)."""

    url: str
    token: str
    timeout_s: float = 30.0


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "updated"]
    comment_id: int
    html_url: str


def marker_for(key: str) -> str:
    """The hidden HTML comment that identifies this job's report comment among all comments on the PR.

    >>> marker_for("model gate/check")
    '<!-- gate-report:model-gate/check -->'
    """
    safe = re.sub(r"[^A-Za-z0-9_./:-]+", "-", key.strip())
    safe = re.sub(r"-{2,}", "-", safe).strip("-") or "default"
    return f"<!-- gate-report:{safe} -->"


def comment_body(markdown: str, *, marker: str, footer: str = "") -> str:
    """The marker, the report, and a footer, cut to GitHub's size limit with a note saying where the rest is."""
    tail = f"\n\n{footer}" if footer else ""
    body = f"{marker}\n{markdown.rstrip()}{tail}\n"
    if len(body) <= MAX_COMMENT_CHARS:
        return body
    note = "\n\n_The report was cut to fit a comment; the full report is in the job summary and the JSON report._"
    room = MAX_COMMENT_CHARS - len(marker) - len(note) - len(tail) - 2
    return f"{marker}\n{markdown[:room]}{note}{tail}\n"


def pull_request_number(event_path: str | None) -> int | None:
    """The PR number from the workflow's event payload (pull_request / pull_request_target / issue_comment on a PR).

    None when the event is not about a pull request or the payload cannot be read.
    """
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    pr = event.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("number"), int):
        return pr["number"]
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and isinstance(issue.get("number"), int):
        return issue["number"]
    return None


def _load_event(event_path: str | None) -> Any:
    if not event_path:
        return None
    try:
        return json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def workflow_run_pull_request(api: GitHubApi, *, repository: str, event_path: str | None) -> int | None:
    """The PR a `workflow_run` event is for, from GitHub's own payload (never from the triggering run's artifacts,
    which a fork controls): `workflow_run.pull_requests`, which is empty for forks, else the open PR whose head is
    the run's head branch of the run's head repository at the run's head commit."""
    event = _load_event(event_path)
    run = event.get("workflow_run") if isinstance(event, dict) else None
    if not isinstance(run, dict):
        return None
    for pr in run.get("pull_requests") or []:
        if isinstance(pr, dict) and isinstance(pr.get("number"), int):
            return pr["number"]
    head_repo = run.get("head_repository") or {}
    owner = (head_repo.get("owner") or {}).get("login") if isinstance(head_repo, dict) else None
    branch, sha = run.get("head_branch"), run.get("head_sha")
    if not (owner and branch and sha):
        return None
    query = urllib.parse.urlencode({"state": "open", "head": f"{owner}:{branch}", "per_page": PER_PAGE})
    pulls, _ = _request(api, "GET", f"{_repo_url(api, repository)}/pulls?{query}")
    for pr in pulls if isinstance(pulls, list) else []:
        if isinstance(pr, dict) and (pr.get("head") or {}).get("sha") == sha and isinstance(pr.get("number"), int):
            return pr["number"]
    return None


def next_page_url(link_header: str | None) -> str | None:
    """The rel="next" URL of a GitHub `Link` header, or None on the last page.

    >>> next_page_url('<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last"')
    'https://api.github.com/x?page=2'
    """
    if not link_header:
        return None
    for part in link_header.split(","):
        match = _LINK_PART.match(part.strip())
        if not match:
            continue
        for param in match.group(2).split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return match.group(1)
    return None


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _request(api: GitHubApi, method: str, url: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """One REST call -> (decoded JSON, Link header). HTTP and network failures become CommentError."""
    # The token goes only to the API's own origin, even if a Link header pointed elsewhere.
    if not _same_origin(url, api.url):
        raise CommentError(f"refusing to send the token to {url}: it is not on {api.url}")
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/vnd.github+json")
    request.add_header("Authorization", f"Bearer {api.token}")
    request.add_header("X-GitHub-Api-Version", "2022-11-28")
    request.add_header("User-Agent", _USER_AGENT)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    path = urllib.parse.urlsplit(url).path
    try:
        with urllib.request.urlopen(request, timeout=api.timeout_s) as response:
            raw = response.read()
            link = response.headers.get("Link")
    except urllib.error.HTTPError as err:
        raise CommentError(f"{method} {path}: HTTP {err.code} {err.reason}{_api_message(err)}{_hint(err.code)}",
                           status=err.code) from err
    except (urllib.error.URLError, OSError) as err:
        raise CommentError(f"{method} {path}: cannot reach the GitHub API at {api.url}: {err}") from err
    try:
        return (json.loads(raw) if raw else None), link
    except ValueError as err:
        raise CommentError(f"{method} {path}: the API answered with something that is not JSON") from err


def _api_message(err: urllib.error.HTTPError) -> str:
    """GitHub's own explanation from an error response's JSON body, e.g. ' (Resource not accessible by integration)'."""
    try:
        message = json.loads(err.read() or b"{}").get("message")
    except (ValueError, AttributeError, OSError):
        return ""
    finally:
        err.close()
    return f" ({message})" if message else ""


def _hint(code: int) -> str:
    if code in (401, 403, 404):
        return (
            "; the token needs `permissions: pull-requests: write`, and pull requests from forks only get a "
            "read-only token"
        )
    return ""


def _repo_url(api: GitHubApi, repository: str) -> str:
    if not _REPOSITORY.match(repository):
        raise CommentError(f"GITHUB_REPOSITORY should be OWNER/NAME, found {repository!r}")
    return f"{api.url.rstrip('/')}/repos/{repository}"


def token_identity(api: GitHubApi) -> Identity:
    """The login the token acts as: GET /user for a user's token; the Actions bot for the job's GITHUB_TOKEN
    (an installation token, to which GET /user answers 403)."""
    try:
        user, _ = _request(api, "GET", f"{api.url.rstrip('/')}/user")
    except CommentError as err:
        if err.status in (401, 403, 404):
            return ACTIONS_BOT
        raise
    if not isinstance(user, dict) or not user.get("login"):
        raise CommentError("GET /user: the API did not say who the token is")
    return Identity(str(user["login"]), user.get("id") if isinstance(user.get("id"), int) else None)


def find_marked_comment(
    api: GitHubApi, *, repository: str, issue_number: int, marker: str, author: Identity
) -> dict[str, Any] | None:
    """The first comment on the PR that starts with `marker` and was written by `author`, reading every page."""
    url: str | None = f"{_repo_url(api, repository)}/issues/{issue_number}/comments?per_page={PER_PAGE}"
    while url:
        page, link = _request(api, "GET", url)
        if not isinstance(page, list):
            raise CommentError(f"listing comments of #{issue_number}: expected a JSON list, got {type(page).__name__}")
        for comment in page:
            if isinstance(comment, dict) and str(comment.get("body") or "").startswith(marker) and author.wrote(comment):
                return comment
        url = next_page_url(link)
    return None


def upsert_comment(
    api: GitHubApi, *, repository: str, issue_number: int, marker: str, body: str, author: Identity | None = None
) -> CommentResult:
    """Update our comment carrying `marker`, or create it: one comment per marker, however often the job runs.
    A comment with the marker written by anyone else is left alone."""
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    who = author or token_identity(api)
    existing = find_marked_comment(api, repository=repository, issue_number=issue_number, marker=marker, author=who)
    if existing is not None:
        url = f"{_repo_url(api, repository)}/issues/comments/{existing['id']}"
        answer, _ = _request(api, "PATCH", url, {"body": body})
        action: Literal["created", "updated"] = "updated"
    else:
        url = f"{_repo_url(api, repository)}/issues/{issue_number}/comments"
        answer, _ = _request(api, "POST", url, {"body": body})
        action = "created"
    if not isinstance(answer, dict) or "id" not in answer:
        raise CommentError(f"{action} comment on #{issue_number}, but the API did not return it")
    return CommentResult(action=action, comment_id=int(answer["id"]), html_url=str(answer.get("html_url") or ""))


def comment_on_pull_request(
    environ: Mapping[str, str], *, token: str, key: str, markdown: str, footer: str = ""
) -> CommentResult:
    """Post or update the report comment on the PR this workflow run is for, from the Actions environment.

    Raises CommentError for a missing token, a run that is not for a pull request, or any API failure.
    """
    if not token:
        raise CommentError("comment: true, but no github-token was given (the default is ${{ github.token }})")
    repository = environ.get("GITHUB_REPOSITORY", "")
    api = GitHubApi(url=environ.get("GITHUB_API_URL") or "https://api.github.com", token=token)
    number = pull_request_number(environ.get("GITHUB_EVENT_PATH"))
    if number is None and environ.get("GITHUB_EVENT_NAME") == "workflow_run":
        number = workflow_run_pull_request(api, repository=repository, event_path=environ.get("GITHUB_EVENT_PATH"))
    if number is None:
        event = environ.get("GITHUB_EVENT_NAME") or "unknown"
        raise CommentError(f"comment: true, but this run is for a '{event}' event, not a pull request: no comment")
    marker = marker_for(key)
    return upsert_comment(
        api,
        repository=repository,
        issue_number=number,
        marker=marker,
        body=comment_body(markdown, marker=marker, footer=footer),
    )
