"""Files built to exhaust the gate (a YAML alias bomb, a zip bomb, a huge safetensors header, data archives that
inflate to a gigabyte, a config.json that sizes a model far beyond its weights) end in exit 2 with one `error:` line,
quickly and in bounded memory: nothing is expanded, inflated, allocated or parsed beyond its bound."""
from __future__ import annotations

import json
import shutil
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


def _write_zeros(member, size: int) -> None:
    chunk = b"\0" * (1 << 24)
    for start in range(0, size, len(chunk)):
        member.write(chunk[:size - start])


def npz_data_bomb(tmp_path: Path) -> tuple[str, Path]:
    """An np.savez_compressed-like archive: 'x.npy' is 1 GiB of float32 zeros (2**22 rows of 64) in about 1 MB."""
    import numpy as np
    from numpy.lib import format as npy_format

    path = tmp_path / "bomb.npz"
    rows = 1 << 22
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (rows, 64)})
            _write_zeros(member, rows * 64 * 4)
        with archive.open("labels.npy", "w") as member:
            np.save(member, np.zeros(600, dtype=np.int64))
    return "data", path


def _torch_save_of_zeros(path: Path, tensors: dict, *, compression: int) -> None:
    """torch.save of tensors of zeros, without the test holding them: saved under skip_data (torch.empty's pages are
    never touched, no storage is written), then re-zipped with each storage record streamed as zeros (real CRC-32s)."""
    import torch

    skeleton = path.with_suffix(".skeleton")
    with torch.serialization.skip_data():
        torch.save(tensors, skeleton)
    with zipfile.ZipFile(skeleton) as source, zipfile.ZipFile(path, "w", compression=compression) as target:
        for info in source.infolist():
            with target.open(info.filename, "w", force_zip64=True) as copy:
                if "/data/" in info.filename:
                    _write_zeros(copy, info.file_size)
                else:
                    with source.open(info) as member:
                        shutil.copyfileobj(member, copy)
    skeleton.unlink()


def pt_data_bomb(tmp_path: Path) -> tuple[str, Path]:
    """A torch.save file zipped with deflate: its 'x' storage is 1 GiB of zeros in about 1 MB."""
    import torch

    path = tmp_path / "bomb_data.pt"
    _torch_save_of_zeros(path, {"x": torch.empty(1 << 22, 64), "labels": torch.empty(600, dtype=torch.long)},
                         compression=zipfile.ZIP_DEFLATED)
    return "data", path


def pt_rows_beyond_the_labels(tmp_path: Path) -> tuple[str, Path]:
    """A stored (not deflated) torch.save file whose 'x' has 2**22 rows (1 GiB) for 600 labels: refused from the
    pickle's shapes before a storage is read."""
    import torch

    path = tmp_path / "rows.pt"
    _torch_save_of_zeros(path, {"x": torch.empty(1 << 22, 64), "labels": torch.empty(600, dtype=torch.long)},
                         compression=zipfile.ZIP_STORED)
    return "data", path


# What the one line must name besides the file: the member that would inflate, the input that has too many rows.
NAMED = {"npz_data_bomb": "'x.npy'", "pt_data_bomb": "/data/0'", "pt_rows_beyond_the_labels": "tensor 'x' has 4194304 rows"}


@pytest.mark.slow
@pytest.mark.parametrize("make", [alias_bomb, zip_bomb, huge_safetensors_header, npz_data_bomb, pt_data_bomb,
                                  pt_rows_beyond_the_labels], ids=lambda f: f.__name__)
def test_a_bomb_ends_in_one_error_line_in_bounded_memory(make, world, tmp_path):
    where, path = make(tmp_path)
    args = [sys.executable, "-m", "gate", "check", str(world.good), "--baseline", str(world.baseline),
            "--data", str(world.data), "--model-factory", FACTORY, "--json", str(tmp_path / "r.json")]
    if where == "config":
        args += ["--config", str(path)]
    elif where == "data":
        args[args.index("--data") + 1] = str(path)
    else:
        args[4] = str(path)
    errors = _measured_errors(args, tmp_path)
    assert str(path) in errors[0] and NAMED.get(make.__name__, "") in errors[0], errors


def _measured_errors(args: list[str], tmp_path: Path) -> list[str]:
    """The gate's stderr lines, after asserting exit 2, peak RSS under the bound and no report."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=180, check=False)
    *errors, last = done.stdout.strip().splitlines()
    assert last.startswith("rc=2 "), done.stdout
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert int(last.split("maxrss_kib=")[1]) < MAX_RSS_MIB * 1024, last
    assert not (tmp_path / "r.json").exists()
    return errors


@pytest.mark.slow
def test_a_config_that_sizes_the_model_beyond_its_weights_is_refused_before_allocating(tmp_path):
    """vocab_size 10,000,000 next to weights of 16 rows: transformers would allocate and initialise 640 MB for the
    mismatched embedding before the post-load check refused it; the meta-device skeleton refuses it first."""
    from tests.unit import model_fixtures as fx

    baseline = tmp_path / "baseline"
    fx.build_hf_dir(baseline, id2label={0: "neg", 1: "pos"})
    candidate = tmp_path / "candidate"
    shutil.copytree(baseline, candidate)
    config = json.loads((candidate / "config.json").read_text(encoding="utf-8"))
    config["vocab_size"] = 10_000_000
    (candidate / "config.json").write_text(json.dumps(config), encoding="utf-8")
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(fx.VOCAB[:8])),
                    encoding="utf-8")
    args = [sys.executable, "-m", "gate", "check", str(candidate), "--baseline", str(baseline), "--data", str(data),
            "--json", str(tmp_path / "r.json")]
    errors = _measured_errors(args, tmp_path)
    assert str(candidate) in errors[0], errors
    assert f"[{config['vocab_size']}, {config['hidden_size']}] in the model" in errors[0], errors
    assert "bert.embeddings.word_embeddings.weight" in errors[0], errors
