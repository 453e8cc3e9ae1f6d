"""The gate process as the one place PR files are loaded: no secret in its environment, no way into its parent.

- Its environment drops every INPUT_*, ACTIONS_* and secret-looking variable and the file-command paths
  (GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH, GITHUB_STATE, GITHUB_STEP_SUMMARY): the entrypoint writes those itself,
  from the report, after the gate has ended.
- The entrypoint makes itself non-dumpable (prctl), so a process of the same uid cannot read its
  /proc/PID/environ or memory; and, when it has no use for the token, re-executes itself without it first.
- Started as root (as GitHub runs container actions), the entrypoint runs the gate as an unprivileged uid that owns
  nothing: it cannot read the parent's /proc files, write the workspace, the file commands or the factory modules.
- The gate writes its reports into a private folder; the entrypoint reads them there (no symlink, no hard link, a
  size limit) and installs them in the workspace itself.
"""
from __future__ import annotations

import ctypes
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from gate.errors import ConfigError

FILE_COMMANDS = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")
TOKEN_INPUTS = ("INPUT_GITHUB-TOKEN", "INPUT_GITHUB_TOKEN")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE_KEY|AUTH", re.I)
SANDBOX_UIDS = range(61000, 62000)   # unused by the image and by GitHub's runners; one fresh uid per run, so that
                                     # "every process of this uid" is this run's gate and nothing else
MAX_REPORT_BYTES = 64 * 1024 * 1024
_PR_SET_DUMPABLE = 4


def is_secret(name: str) -> bool:
    """Variables no process that loads a PR file may see: the runner's ACTIONS_* tokens, the token input (every
    input, in fact: the gate gets its options on the command line), and anything named like a credential."""
    return name.startswith(("INPUT_", "ACTIONS_")) or bool(_SECRET_NAME.search(name))


def entrypoint_environment(environ: Mapping[str, str], *, keep_token: bool) -> dict[str, str]:
    """The entrypoint's own environment, for re-executing itself: its inputs and file commands, no secret it
    does not use (the token, as input or GITHUB_TOKEN, only when it will post the comment)."""
    kept = {*TOKEN_INPUTS, "GITHUB_TOKEN"} if keep_token else set()
    return {k: v for k, v in environ.items()
            if k in kept or (not k.startswith("ACTIONS_") and not _SECRET_NAME.search(k))}


def gate_environment(environ: Mapping[str, str], *, home: Path | None = None,
                     tmpdir: Path | None = None) -> dict[str, str]:
    """The gate process's environment: ours without secrets, inputs and file-command paths."""
    env = {k: v for k, v in environ.items() if not is_secret(k) and k not in FILE_COMMANDS}
    env.pop("GITHUB_EVENT_PATH", None)
    if home is not None:
        env.update(HOME=str(home), USER="gate-sandbox", LOGNAME="gate-sandbox")
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def make_non_dumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0): /proc/self/{environ,mem,fd} become root's and ptrace is refused to processes of
    our uid. Linux only; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class Sandbox:
    """Whom the gate runs as: another uid when the entrypoint is root, else the entrypoint's own."""

    uid: int | None = None
    gid: int | None = None
    as_root: bool = False     # GATE_SANDBOX_UID=0: the gate runs as root and could read anything of ours

    @property
    def separate(self) -> bool:
        return self.uid is not None


def sandbox_for(environ: Mapping[str, str]) -> Sandbox:
    """Root -> GATE_SANDBOX_UID (default: a uid from 61000-61999, fresh per run; 0 runs the gate as root,
    unisolated); anyone else runs the gate as themselves (the entrypoint is non-dumpable, so the gate cannot read it)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return Sandbox()
    raw = environ.get("GATE_SANDBOX_UID", "").strip() or str(secrets.choice(SANDBOX_UIDS))
    if not raw.isdigit():
        raise ConfigError(f"GATE_SANDBOX_UID: expected a uid, found {raw!r}")
    if int(raw) == 0:
        holder = token_holder()
        if holder is not None:
            raise ConfigError(
                f"GATE_SANDBOX_UID=0 would run the gate as root, and root can read the runner's tokens in the "
                f"environment of {holder}; let the gate run as a sandbox uid (unset GATE_SANDBOX_UID), or start the "
                "container as a non-root user (container options: --user)"
            )
        return Sandbox(as_root=True)
    return Sandbox(uid=int(raw), gid=int(raw))


def _runner_token(name: str) -> bool:
    return name.startswith("ACTIONS_") or name in (*TOKEN_INPUTS, "GITHUB_TOKEN")


def token_holder(pid: int | None = None) -> str | None:
    """The first process above us (parent, its parent, ... up to the container's init, pid 1) whose environment
    holds one of the runner's tokens (ACTIONS_*, the token input, GITHUB_TOKEN) that we can read; None if none.

    The entrypoint re-executes itself without them, but the processes that started it (tini, the runner's shell)
    keep theirs, and a gate running as root could read their /proc/PID/environ."""
    proc = Path("/proc")
    pid = os.getppid() if pid is None else pid
    for _ in range(64):
        if pid <= 0:
            return None
        try:
            names = [item.split(b"=", 1)[0].decode("utf-8", "replace")
                     for item in (proc / str(pid) / "environ").read_bytes().split(b"\0") if item]
        except OSError:
            names = []
        if any(_runner_token(name) for name in names):
            return f"pid {pid} (/proc/{pid}/environ)"
        if pid == 1:
            return None
        try:
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def token_safe(environ: Mapping[str, str]) -> bool:
    """Whether the entrypoint may hold the token while the gate runs: the gate is another uid, or our uid and we
    are non-dumpable (Linux). A gate running as root could read our memory: then the token is dropped."""
    try:
        box = sandbox_for(environ)
    except ConfigError:
        return False
    return box.separate or (not box.as_root and sys.platform.startswith("linux"))


def unreachable_by_others(path: Path) -> Path | None:
    """The first folder on the way to `path` (or the file itself) that other users cannot pass; None if all can."""
    real = path.resolve()
    for part in [*reversed(real.parents), real]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return part
        if not mode & stat.S_IXOTH:
            return part
    return None


def check_sandbox_can_run(sandbox: Sandbox, interpreter: str, workspace: Path) -> None:
    """Fail early, with one line, when the sandbox uid could not start Python or reach the workspace."""
    if not sandbox.separate:
        return
    for what, path in (("run", Path(interpreter)), ("reach the workspace", workspace)):
        blocked = unreachable_by_others(path)
        if blocked is not None:
            raise ConfigError(
                f"the gate runs as uid {sandbox.uid} (the entrypoint is root), which cannot {what}: {blocked} is "
                "closed to other users; open it (chmod o+x), or set GATE_SANDBOX_UID=0 to run the gate as root, "
                "unisolated from the entrypoint"
            )


def private_dir(sandbox: Sandbox) -> Path:
    """A fresh 0700 folder owned by the gate's uid, for its reports, HOME and temp files."""
    path = Path(tempfile.mkdtemp(prefix="gate-run-"))
    for sub in ("home", "reports", "cwd"):
        (path / sub).mkdir(mode=0o700)
    if sandbox.separate:
        for p in (path, path / "home", path / "reports", path / "cwd"):
            os.chown(p, sandbox.uid, sandbox.gid)  # type: ignore[arg-type]
    return path


def spawn(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], sandbox: Sandbox,
          **kwargs: object) -> subprocess.Popen[str]:
    """Start the gate in a session of its own (so its whole process group can be ended), as the sandbox uid."""
    extra: dict[str, object] = {}
    if sandbox.separate:
        extra = {"user": sandbox.uid, "group": sandbox.gid, "extra_groups": []}
    return subprocess.Popen(list(command), cwd=cwd, env=dict(env), text=True, start_new_session=True, umask=0o077,
                            **extra, **kwargs)  # type: ignore[call-overload]


def end_leftovers(proc: subprocess.Popen[str], sandbox: Sandbox) -> None:
    """Kill what the gate left running: its process group, and as root every process of the sandbox uid (a
    daemon that left the group), so nothing of it outlives the gate into the comment or the file commands."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    if sandbox.separate:
        subprocess.run([sys.executable, "-c", "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\n"
                        "except OSError:\n    pass\n"], user=sandbox.uid, group=sandbox.gid, extra_groups=[],
                       env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30, check=False)


def read_private(path: Path, *, limit: int = MAX_REPORT_BYTES) -> bytes | None:
    """A report the gate wrote into its private folder: a regular file with one link, not a symlink (the gate's
    uid could otherwise point the root entrypoint at /etc/shadow); None when it is not there."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"the gate's report {path.name} cannot be read: {err.strerror or err}") from err
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise ConfigError(f"the gate's report {path.name} is not a plain file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"the gate's report {path.name} is over {limit // (1024 * 1024)} MiB")
    return data


def workspace_owner(workspace: Path) -> tuple[int, int] | None:
    """The uid/gid reports get in the workspace when we are root (so the runner's later steps own them)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    info = workspace.stat()
    return info.st_uid, info.st_gid


def make_dirs(directory: Path, *, root: Path, owner: tuple[int, int] | None) -> None:
    """mkdir -p below root, each new folder owned by `owner`."""
    missing = []
    current = directory
    while not current.exists() and current != root and root in current.parents:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir()
        if owner:
            os.chown(path, *owner)


def install(files: Mapping[Path, bytes], *, owner: tuple[int, int] | None) -> None:
    """Write each file as a temp file beside its target (O_EXCL, no symlink followed), then rename them all."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            staged.append((tmp, target))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if owner:
                    os.fchown(handle.fileno(), *owner)
        done: list[Path] = []
        for tmp, target in staged:
            os.replace(tmp, target)
            done.append(target)
    except OSError as err:
        for path in [tmp for tmp, _ in staged] + (done if "done" in locals() else []):   # all or none
            try:
                path.unlink()
            except OSError:
                pass
        raise ConfigError(f"cannot write the reports into the workspace: {err.strerror or err}") from err


def lend_folder(folder: Path, *, root: Path, sandbox: Sandbox, owner: tuple[int, int] | None) -> None:
    """The baseline-cache folder, created, and writable by the gate's uid for the run (the folder itself: the
    gate reads the entries in it, writes new ones and removes corrupt ones)."""
    try:
        make_dirs(folder, root=root, owner=owner)
        if sandbox.separate:
            os.chown(folder, sandbox.uid, sandbox.gid)  # type: ignore[arg-type]
    except OSError as err:
        raise ConfigError(f"cannot prepare the baseline-cache folder {folder}: {err.strerror or err}") from err


def take_back_folder(folder: Path, *, sandbox: Sandbox, owner: tuple[int, int] | None) -> None:
    """After the run: the folder and the plain files the gate wrote in it belong to the workspace's owner again,
    readable by the job's later steps (actions/cache saves them); links the gate made are removed."""
    if not sandbox.separate or owner is None:
        return
    try:
        for entry in os.scandir(folder):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                os.chown(entry.path, *owner, follow_symlinks=False)
                os.chmod(entry.path, 0o644)
            elif stat.S_ISLNK(info.st_mode):
                os.unlink(entry.path)
        os.chown(folder, *owner)
    except OSError:
        pass
