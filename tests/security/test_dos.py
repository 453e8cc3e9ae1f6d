"""Files built to exhaust the gate (a YAML alias bomb, a zip bomb, a huge safetensors header) end in exit 2 with
one `error:` line, quickly and in bounded memory: nothing is expanded, inflated or parsed beyond its bound."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "tests.tiny_models:build_mlp"
# The child's peak RSS as the kernel counts it (ru_maxrss, KiB on Linux), measured by a wrapper process whose only
# child is the gate.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
sys.stdout.write(done.stderr)
print(f"rc={done.returncode} maxrss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""
MAX_RSS_MIB = 700


def alias_bomb(tmp_path: Path) -> tuple[str, Path]:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "gate.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "config", path


def zip_bomb(tmp_path: Path) -> tuple[str, Path]:
    """A torch.save-like archive whose data.pkl inflates to 1 GiB of zeros from about 1 MB."""
    path = tmp_path / "bomb.pt"
    size = 1 << 30
    chunk = b"\0" * (1 << 24)
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("bomb/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(size // len(chunk)):
                member.write(chunk)
        archive.writestr("bomb/version", b"3\n")
    return "candidate", path


def huge_safetensors_header(tmp_path: Path) -> tuple[str, Path]:
    """A 36 MB header of tensor entries before any weights."""
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for i in range(480_000)}
    raw = json.dumps(header).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * 4)
    return "candidate", path


@pytest.mark.slow
@pytest.mark.parametrize("make", [alias_bomb, zip_bomb, huge_safetensors_header], ids=lambda f: f.__name__)
def test_a_bomb_ends_in_one_error_line_in_bounded_memory(make, world, tmp_path):
    where, path = make(tmp_path)
    args = [sys.executable, "-m", "gate", "check", str(world.good), "--baseline", str(world.baseline),
            "--data", str(world.data), "--model-factory", FACTORY, "--json", str(tmp_path / "r.json")]
    if where == "config":
        args += ["--config", str(path)]
    else:
        args[4] = str(path)
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=180, check=False)
    *errors, last = done.stdout.strip().splitlines()
    assert last.startswith("rc=2 "), done.stdout
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(path) in errors[0], errors
    assert int(last.split("maxrss_kib=")[1]) < MAX_RSS_MIB * 1024, last
    assert not (tmp_path / "r.json").exists()
