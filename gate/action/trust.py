"""Who owns each input of an Action run: the event payload says whether the run is for code from outside the
repository (a pull request from a fork), and every path the Action touches is checked before anything reads it.

Policy (the config, model and data factories) comes from a trusted checkout (`policy-path`, the base branch);
the pull request supplies only artifact files (checkpoints, data), which must stay inside the workspace.
Everything here reads files and the event payload only: no PR file is imported or parsed beyond a git HEAD.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gate.errors import ConfigError

# Events whose payload names a pull request; a run for one of them is for the PR's code unless its head repository
# is the base repository.
PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review",
                                 "pull_request_review_comment"})
CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")   # as gate.data._common reads --data
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MAX_EVENT_BYTES = 25 * 1024 * 1024      # GitHub's payloads are far smaller; a bigger file is not one
MAX_DIRECTORY_ENTRIES = 10_000          # a checkpoint directory (Hugging Face) holds a handful of files


@dataclass(frozen=True)
class RunOrigin:
    """What the event payload says about the code this run is for."""

    event: str
    untrusted: str | None = None          # why the PR's files are not the repository's ("pull request #7 from ...")
    head_sha: str | None = None           # the PR's head commit, when the payload names one
    merge_sha: str | None = None          # GITHUB_SHA on a pull_request event: the merge commit, PR code included


@dataclass(frozen=True)
class Policy:
    """Where policy comes from: the directory the gate runs in, imports factories from and reads the config in."""

    root: Path                 # resolved
    from_pull_request: bool    # root holds the pull request's files (a fork's, no policy-path given)


def read_event(path: str | None) -> Any:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_EVENT_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _full_name(repo: Any) -> str:
    return str(repo.get("full_name") or "").lower() if isinstance(repo, dict) else ""


def run_origin(environ: Mapping[str, str]) -> RunOrigin:
    """Read GITHUB_EVENT_NAME / GITHUB_EVENT_PATH: a PR (or a workflow_run triggered by one) whose head repository
    is not the base repository is untrusted; so is a PR event whose payload cannot be read (fail closed)."""
    event = environ.get("GITHUB_EVENT_NAME", "")
    payload = read_event(environ.get("GITHUB_EVENT_PATH"))
    if event in PULL_REQUEST_EVENTS or (isinstance(payload, dict) and isinstance(payload.get("pull_request"), dict)):
        pr = payload.get("pull_request") if isinstance(payload, dict) else None
        if not isinstance(pr, dict):
            return RunOrigin(event, untrusted=f"a '{event}' event whose payload names no pull request")
        head, base = pr.get("head") or {}, pr.get("base") or {}
        head_repo = _full_name(head.get("repo") if isinstance(head, dict) else None)
        base_repo = _full_name(base.get("repo") if isinstance(base, dict) else None)
        head_sha = head.get("sha") if isinstance(head, dict) and isinstance(head.get("sha"), str) else None
        merge_sha = environ.get("GITHUB_SHA") if event == "pull_request" else None
        untrusted = None
        if not head_repo or head_repo != base_repo:
            untrusted = (f"pull request #{pr.get('number', '?')} from "
                         f"{head_repo or 'a deleted or unknown repository'} into {base_repo or '?'}")
        return RunOrigin(event, untrusted=untrusted, head_sha=head_sha, merge_sha=merge_sha)
    if event == "workflow_run":
        run = payload.get("workflow_run") if isinstance(payload, dict) else None
        if not isinstance(run, dict):
            return RunOrigin(event, untrusted="a 'workflow_run' event whose payload cannot be read")
        head_repo, base_repo = _full_name(run.get("head_repository")), _full_name(run.get("repository"))
        head_sha = run.get("head_sha") if isinstance(run.get("head_sha"), str) else None
        if not head_repo or head_repo != base_repo:
            return RunOrigin(event, untrusted=f"a workflow run for {head_repo or 'an unknown repository'}",
                             head_sha=head_sha)
        return RunOrigin(event, head_sha=head_sha)
    if event == "issue_comment" and isinstance(payload, dict) and isinstance(payload.get("issue"), dict) \
            and payload["issue"].get("pull_request"):
        return RunOrigin(event, untrusted="a comment on a pull request (the payload does not say where it is from)")
    return RunOrigin(event)


# ---------------------------------------------------------------------------------------------------------------
# Paths


def is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _lexical(path: Path) -> Path:
    return Path(os.path.normpath(path))


def _git_component(path: Path, workspace: Path) -> bool:
    try:
        return ".git" in path.relative_to(workspace).parts
    except ValueError:
        return ".git" in path.parts


def artifact_path(name: str, value: str, *, workspace: Path) -> Path:
    """An input naming a file from the pull request (a checkpoint, the data), as an absolute path.

    A path inside the workspace must stay inside it after symlinks (a committed link to /etc/passwd or to the
    runner's files is refused), never points into a `.git` folder (actions/checkout keeps the token in
    .git/config), and a directory (a Hugging Face checkpoint) may hold no link that leaves the workspace.
    A path the workflow gives outside the workspace is its own choice and is taken as it is.
    """
    ws = workspace.resolve()
    given = _lexical(ws / value)
    if not is_within(given, ws):
        return given
    real = given.resolve()
    if not is_within(real, ws):
        raise ConfigError(f"action input '{name}': {value} resolves outside the workspace (to {real}); "
                          "files from the pull request must be real files in the workspace")
    if _git_component(real, ws):
        raise ConfigError(f"action input '{name}': {value} points into a .git folder, which is never data")
    if real.is_dir():
        _check_directory(name, value, real, workspace=ws)
    return given


def _check_directory(name: str, value: str, directory: Path, *, workspace: Path) -> None:
    seen = 0
    for top, dirs, files in os.walk(directory, followlinks=False):
        for entry in [*dirs, *files]:
            seen += 1
            if seen > MAX_DIRECTORY_ENTRIES:
                raise ConfigError(f"action input '{name}': {value} holds more than {MAX_DIRECTORY_ENTRIES} files; "
                                  "a checkpoint directory holds a handful")
            path = Path(top) / entry
            if path.is_symlink():
                real = path.resolve()
                if not is_within(real, workspace) or _git_component(real, workspace):
                    shown = path.relative_to(directory)
                    raise ConfigError(f"action input '{name}': {value}/{shown} is a link to {real}, outside the "
                                      "workspace; files from the pull request must be real files in the workspace")


def report_path(name: str, value: str, *, workspace: Path) -> Path:
    """Where the Action writes a report: inside the workspace, through no symlink (a committed `gate-report` link
    must not make the Action delete or write anything elsewhere), and not onto a directory."""
    ws = workspace.resolve()
    target = _lexical(ws / value)
    if not is_within(target, ws) or target == ws:
        raise ConfigError(f"action input '{name}': {value} is outside the workspace; reports are written inside it")
    current = ws
    parts = target.relative_to(ws).parts
    for i, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            raise ConfigError(f"action input '{name}': {current.relative_to(ws)} is a symlink (to "
                              f"{os.readlink(current)}); the Action writes reports only into real folders of the "
                              "workspace")
        if i < len(parts) - 1 and current.exists() and not current.is_dir():
            raise ConfigError(f"action input '{name}': cannot write the report {value}: "
                              f"{current.relative_to(ws)} is not a folder")
    if target.exists() and not target.is_file():
        raise ConfigError(f"action input '{name}': {value} exists and is not a file")
    return target


def cache_folder(value: str, *, workspace: Path) -> Path:
    """`baseline-cache`: a folder inside the workspace, reached through no symlink and not in a `.git` folder (the
    gate writes entries there; a committed link must not point those writes elsewhere)."""
    ws = workspace.resolve()
    target = _lexical(ws / value)
    if not is_within(target, ws) or target == ws:
        raise ConfigError(f"action input 'baseline-cache': {value} is outside the workspace (or is the workspace); "
                          "name a folder inside it, e.g. .gate-cache, restored by actions/cache")
    current = ws
    for part in target.relative_to(ws).parts:
        current = current / part
        if current.is_symlink():
            raise ConfigError(f"action input 'baseline-cache': {current.relative_to(ws)} is a symlink; the cache "
                              "must be a real folder of the workspace")
        if current.exists() and not current.is_dir():
            raise ConfigError(f"action input 'baseline-cache': {current.relative_to(ws)} is not a folder")
    if _git_component(target, ws):
        raise ConfigError(f"action input 'baseline-cache': {value} is inside a .git folder")
    return target


# ---------------------------------------------------------------------------------------------------------------
# Policy


def policy_root(value: str, *, workspace: Path, origin: RunOrigin, allow_pr_policy: bool) -> Policy:
    """The trusted checkout named by `policy-path` ('' = the workspace itself, as in a one-checkout workflow)."""
    ws = workspace.resolve()
    if not value:
        return Policy(root=ws, from_pull_request=origin.untrusted is not None)
    root = _lexical(ws / value)
    if not root.is_dir():
        raise ConfigError(f"action input 'policy-path': {value} is not a directory (check out the base branch "
                          "there, e.g. actions/checkout with ref: the base sha and path: base)")
    root = root.resolve()
    if origin.untrusted and not allow_pr_policy:
        if is_within(ws, root):
            raise ConfigError(f"action input 'policy-path': {value} is the workspace (or holds it), so it holds "
                              f"the pull request's files too; this run is for {origin.untrusted}")
        nested = next((d for d in [root.parent, *root.parent.parents] if is_within(d, ws) and (d / ".git").exists()),
                      None)
        if nested is not None:
            raise ConfigError(f"action input 'policy-path': {value} is inside another checkout ({nested}); check "
                              "out the base branch and the pull request side by side (path: base, path: pr)")
        head = checkout_head(root)
        if head and head in {origin.head_sha, origin.merge_sha}:
            raise ConfigError(f"action input 'policy-path': {value} holds the pull request's own commit {head[:12]}; "
                              "check out the base branch there (ref: github.event.pull_request.base.sha)")
    return Policy(root=root, from_pull_request=False)


def checkout_head(root: Path) -> str | None:
    """The commit a checkout is at, read from .git without running git (the image has none); None if unknown."""
    git = root / ".git"
    try:
        if git.is_file():   # a worktree or submodule: "gitdir: PATH"
            text = git.read_text(encoding="utf-8", errors="replace")[:4096].strip()
            if not text.startswith("gitdir:"):
                return None
            git = (root / text[len("gitdir:"):].strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8", errors="replace")[:4096].strip()
        if _SHA.match(head):
            return head
        if head.startswith("ref:"):
            ref = head[4:].strip()
            loose = git / ref
            if loose.is_file():
                value = loose.read_text(encoding="utf-8", errors="replace")[:256].strip()
                return value if _SHA.match(value) else None
            packed = git / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8", errors="replace")[:1_000_000].splitlines():
                    sha, _, name = line.partition(" ")
                    if name.strip() == ref and _SHA.match(sha):
                        return sha
    except OSError:
        return None
    return None


def module_file(root: Path, dotted: str) -> Path | None:
    """The file `import dotted` finds under root (pkg/mod.py or pkg/mod/__init__.py), found without importing."""
    parts = dotted.split(".")
    base = root.joinpath(*parts)
    for candidate in (base.with_name(parts[-1] + ".py"), base / "__init__.py", base):
        if candidate.exists():
            return candidate
    return None


def check_policy_module(name: str, spec: str, policy: Policy, *, allow_pr_policy: bool, untrusted: str | None) -> None:
    """A `package.module:callable` input is code: it is imported from the policy checkout, never the PR's."""
    if not CALLABLE_SPEC.match(spec):
        return   # the gate itself says what is wrong with it
    if policy.from_pull_request and not allow_pr_policy:
        raise ConfigError(
            f"action input '{name}': {spec} would be imported from the pull request's checkout, and this run is "
            f"for {untrusted}: set policy-path to a checkout of the base branch (or allow-pr-policy: true to run "
            "the pull request's code, which defeats the gate's promise)"
        )
    if not untrusted or allow_pr_policy:
        return
    parts = spec.partition(":")[0].split(".")
    for depth in range(1, len(parts) + 1):   # every package on the way is imported too (its __init__.py runs)
        found = module_file(policy.root, ".".join(parts[:depth]))
        if found is not None and not is_within(found.resolve(), policy.root):
            raise ConfigError(f"action input '{name}': {spec} resolves to {found.resolve()}, outside policy-path")


def config_path(value: str, policy: Policy, *, allow_pr_policy: bool, untrusted: str | None) -> Path:
    """The config file, relative to the policy checkout; on an untrusted run it must be a file of that checkout."""
    path = _lexical(policy.root / value)
    if not untrusted or allow_pr_policy:
        return path
    if policy.from_pull_request:
        raise ConfigError(
            f"action input 'config': {value} is the pull request's own file, and this run is for {untrusted}: "
            "set policy-path to a checkout of the base branch (or allow-pr-policy: true to let the pull request "
            "set its own thresholds, which defeats the gate's promise)"
        )
    if not is_within(path.resolve(), policy.root):
        raise ConfigError(f"action input 'config': {value} resolves to {path.resolve()}, outside policy-path")
    return path


def foreign_import_paths(pythonpath: str, *, workspace: Path, policy: Policy) -> list[str]:
    """PYTHONPATH entries inside the workspace but outside the policy checkout: the PR's files, importable."""
    ws = workspace.resolve()
    out = []
    for entry in filter(None, pythonpath.split(os.pathsep)):
        real = Path(entry).resolve()
        if is_within(real, ws) and not is_within(real, policy.root):
            out.append(entry)
    return out
