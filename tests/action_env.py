"""How the Action's tests start the entrypoint on this machine, as root or not.

Started as root, the entrypoint runs the gate as an unprivileged uid (gate/action/isolation.py). That uid must be
able to start Python and read the workspace: `runnable_python()` finds an interpreter every uid can run (this one,
or the system's python of the same version with our site-packages on PYTHONPATH), and `open_to_others()` opens
pytest's private temp folders for traversal (root's are 0700).
"""
from __future__ import annotations

import os
import stat
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NON_ROOT_UID = 61001     # the entrypoint's uid in the tests that run it as a non-root container user


def _others_can_run(path: Path) -> bool:
    real = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [*real.parents, real])


def runnable_python() -> tuple[str, str]:
    """(interpreter, PYTHONPATH) that any uid can run with this checkout's gate and this environment's packages."""
    site = sysconfig.get_paths()["purelib"]
    pythonpath = os.pathsep.join([str(ROOT), site])
    if _others_can_run(Path(sys.executable)) and _others_can_run(Path(site)):
        return sys.executable, pythonpath
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path("/usr/bin") / version, Path("/usr/local/bin") / version):
        if candidate.exists() and _others_can_run(candidate) and _others_can_run(Path(site)):
            return str(candidate), pythonpath
    raise AssertionError(f"no {version} that other users can run: the sandbox tests need one")


def open_to_others(path: Path) -> None:
    """chmod o+x on `path` and its parents up to the temp root (o+rx on path), so the sandbox uid can reach it."""
    if not IS_ROOT:
        return
    path = path.resolve()
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(part, stat.S_IMODE(mode) | stat.S_IXOTH | (stat.S_IROTH if part == path else 0))
        if part == Path("/tmp") or part == Path("/"):
            break


def in_process_environ() -> dict[str, str]:
    """Extra variables for tests that call run_action() inside pytest (this interpreter may be closed to other
    uids): as root the gate then runs as root (GATE_SANDBOX_UID=0), which those tests do not depend on."""
    return {"GATE_SANDBOX_UID": "0", "PYTHONPATH": str(ROOT)} if IS_ROOT else {"PYTHONPATH": str(ROOT)}
