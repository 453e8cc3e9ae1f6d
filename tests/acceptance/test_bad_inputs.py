"""Every bad input ends in exit 2, one `error: ...` line on stderr that says what and where, no traceback, and no
report file left behind."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny_models as tm
from tests.acceptance.helpers import run_cli

CASES = Path(__file__).resolve().parents[1] / "cases" / "invalid"
FACTORY = "tests.tiny_models:build_mlp"


def _assert_clean_error(res, reports: list[Path], *needles: str) -> None:
    assert res.code == 2, (res.code, res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err + res.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    for path in reports:
        assert not path.exists(), f"{path} was written"
        assert not list(path.parent.glob(f".{path.name}.*")), "temp report left behind"


@pytest.fixture
def reports(tmp_path):
    return [tmp_path / "out" / "r.json", tmp_path / "out" / "r.md", tmp_path / "out" / "r.xml"]


def _run(capsys, reports, candidate, *, baseline, data, extra=()):
    return run_cli(capsys, "check", candidate, "--baseline", baseline, "--data", data, "--model-factory", FACTORY,
                   "--json", reports[0], "--markdown", reports[1], "--junit", reports[2], *extra)


@pytest.mark.parametrize("case", sorted(CASES.iterdir()), ids=lambda p: p.name)
def test_invalid_configs(case, world, in_repo_root, reports, capsys):
    res = _run(capsys, reports, world.good, baseline=world.baseline, data=world.data, extra=("--config", case))
    _assert_clean_error(res, reports, case.name)


def _truncated(src: Path, dst: Path) -> Path:
    blob = src.read_bytes()
    dst.write_bytes(blob[: len(blob) // 2])
    return dst


def _corrupt(dst: Path) -> Path:
    dst.write_bytes(np.random.default_rng(0).bytes(4096))
    return dst


def _zip_with_garbage(dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")
    return dst


def _flipped_byte(src: Path, dst: Path) -> Path:
    """A copy of a torch.save zip with one byte of its first tensor's data flipped: the archive still opens, and
    torch.load (which checks no CRC) would read other numbers."""
    blob = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 8)
    name_len, extra_len = int.from_bytes(blob[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(blob[info.header_offset + 28:info.header_offset + 30], "little")
    blob[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x40
    dst.write_bytes(bytes(blob))
    with zipfile.ZipFile(dst) as archive:
        assert archive.testzip() == info.filename           # the flip is where it was meant to be
    return dst


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/gate-test-evil-marker")


def bad_file_cases(world, tmp: Path):
    """name -> (candidate, baseline, data, needles in the error line)."""
    four = tm.build_mlp(num_classes=4)
    torch.save(four.state_dict(), tmp / "four.pt")
    x, y = tm.make_data(50)
    np.savez(tmp / "label_out_of_range.npz", x=x, labels=np.where(np.arange(50) == 17, 7, y))
    np.savez(tmp / "empty.npz", x=x[:0], labels=y[:0])
    (tmp / "empty.jsonl").write_text("")
    (tmp / "malformed.jsonl").write_text('{"text": "a", "label": 0}\n{"text": oops\n')
    np.savez(tmp / "mismatched.npz", x=x, labels=y[:10])
    (tmp / "eval.csv").write_text("a,b\n1,2\n")
    torch.save({"weights": _Evil()}, tmp / "evil.pt")
    torch.save({"x": torch.from_numpy(x), "labels": torch.from_numpy(y)}, tmp / "eval_data.pt")
    torch.save({"x": torch.from_numpy(x).to_sparse(), "labels": torch.from_numpy(y)}, tmp / "sparse_data.pt")
    return {
        "missing_candidate": (tmp / "nope.pt", world.baseline, world.data, ["nope.pt"]),
        "missing_baseline": (world.good, tmp / "gone.safetensors", world.data, ["gone.safetensors"]),
        "missing_data": (world.good, world.baseline, tmp / "nodata.npz", ["nodata.npz"]),
        "truncated_checkpoint": (_truncated(world.good, tmp / "trunc.pt"), world.baseline, world.data, ["trunc.pt"]),
        "corrupt_checkpoint": (_corrupt(tmp / "corrupt.pt"), world.baseline, world.data, ["corrupt.pt"]),
        "zip_that_is_no_checkpoint": (_zip_with_garbage(tmp / "z.pt"), world.baseline, world.data, ["z.pt"]),
        "csv_as_checkpoint": (tmp / "eval.csv", world.baseline, world.data, ["eval.csv"]),
        "mismatched_classes": (tmp / "four.pt", world.baseline, world.data, ["4", "3"]),
        "label_out_of_range": (world.good, world.baseline, tmp / "label_out_of_range.npz", ["label 7", "sample 17"]),
        "empty_npz": (world.good, world.baseline, tmp / "empty.npz", ["empty.npz"]),
        "empty_jsonl": (world.good, world.baseline, tmp / "empty.jsonl", ["empty.jsonl"]),
        "malformed_jsonl": (world.good, world.baseline, tmp / "malformed.jsonl", ["malformed.jsonl"]),
        "inputs_labels_length_mismatch": (world.good, world.baseline, tmp / "mismatched.npz", ["mismatched.npz"]),
        "malicious_pickle": (tmp / "evil.pt", world.baseline, world.data, ["evil.pt"]),
        "flipped_byte_checkpoint": (_flipped_byte(world.good, tmp / "flipped.pt"), world.baseline, world.data,
                                    ["flipped.pt", "CRC-32"]),
        "flipped_byte_data": (world.good, world.baseline, _flipped_byte(tmp / "eval_data.pt", tmp / "flipped_data.pt"),
                              ["flipped_data.pt", "CRC-32"]),
        "sparse_data_tensor": (world.good, world.baseline, tmp / "sparse_data.pt",
                               ["sparse_data.pt", "tensor 'x' is sparse_coo, not a dense tensor"]),
    }


CASE_NAMES = [
    "missing_candidate", "missing_baseline", "missing_data", "truncated_checkpoint", "corrupt_checkpoint",
    "zip_that_is_no_checkpoint", "csv_as_checkpoint", "mismatched_classes", "label_out_of_range", "empty_npz",
    "empty_jsonl", "malformed_jsonl", "inputs_labels_length_mismatch", "malicious_pickle", "flipped_byte_checkpoint",
    "flipped_byte_data", "sparse_data_tensor",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_files(name, world, in_repo_root, tmp_path, reports, capsys):
    MARKER.unlink(missing_ok=True)
    candidate, baseline, data, needles = bad_file_cases(world, tmp_path)[name]
    res = _run(capsys, reports, candidate, baseline=baseline, data=data)
    _assert_clean_error(res, reports, *needles)
    assert not MARKER.exists(), "a checkpoint ran code"


@pytest.mark.parametrize("role", ["candidate", "data"])
def test_a_pipe_given_as_a_file_is_refused_without_reading_it(role, world, tmp_path):
    """A FIFO blocks its reader until a writer comes: the gate must refuse it, not hang (a subprocess with a
    timeout, so that a hang fails the test instead of stopping the suite)."""
    fifo = tmp_path / ("cand.pt" if role == "candidate" else "eval.npz")
    os.mkfifo(fifo)
    candidate, data = (fifo, world.data) if role == "candidate" else (world.good, fifo)
    res = subprocess.run([sys.executable, "-m", "gate", "check", str(candidate), "--baseline", str(world.baseline),
                          "--data", str(data), "--model-factory", FACTORY], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a regular file" in lines[0] and str(fifo) in lines[0], res.stderr


def test_usage_errors_are_one_line(capsys, world):
    res = run_cli(capsys, "check", world.good, "--data", world.data)
    _assert_clean_error(res, [], "--baseline")
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data, "--enable", "nonsense")
    _assert_clean_error(res, [], "nonsense")


def test_state_dict_without_factory_says_how(world, tmp_path, reports, capsys):
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data, "--json", reports[0])
    _assert_clean_error(res, reports[:1], "--model-factory")


def test_unwritable_report_path_fails_before_running(world, in_repo_root, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", tmp_path)
    _assert_clean_error(res, [], "directory")


def test_installed_entry_point_prints_one_line(world, tmp_path):
    """The real console script, as CI calls it: exit 2 and no traceback."""
    exe = Path(sys.executable).with_name("gate")
    proc = subprocess.run([str(exe), "check", str(tmp_path / "missing.pt"), "--baseline", str(world.baseline),
                           "--data", str(world.data)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "missing.pt" in proc.stderr


def test_stale_report_is_removed_when_the_gate_cannot_run(world, in_repo_root, tmp_path, capsys):
    old = tmp_path / "r.json"
    old.write_text('{"verdict": "pass"}')
    res = run_cli(capsys, "check", tmp_path / "missing.pt", "--baseline", world.baseline, "--data", world.data,
                  "--json", old)
    _assert_clean_error(res, [old], "missing.pt")


def test_two_reports_on_one_path_is_a_usage_error(world, tmp_path, capsys):
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--json", tmp_path / "r", "--markdown", tmp_path / "r")
    _assert_clean_error(res, [tmp_path / "r"], "different files")


def test_report_under_a_file_fails_before_running_and_writes_nothing(world, in_repo_root, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    good = tmp_path / "ok.json"
    res = run_cli(capsys, "check", world.good, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--json", good, "--markdown", tmp_path / "file" / "r.md")
    _assert_clean_error(res, [good], "file")


class ReturnsIndices(torch.nn.Module):
    def forward(self, x):
        return x.argmax(1)


def test_model_returning_class_indices_is_refused(world, in_repo_root, tmp_path, capsys):
    torch.save(ReturnsIndices(), tmp_path / "idx.pt")
    res = run_cli(capsys, "check", tmp_path / "idx.pt", "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", FACTORY, "--trust-checkpoint", "candidate")
    _assert_clean_error(res, [], "class scores")
