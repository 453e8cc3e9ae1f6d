"""Report writing: a path that cannot be written is one ConfigError `cannot write PATH: reason`, and no report of
the run is left behind (neither a temp file nor one already renamed into place)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import ConfigError
from gate.report.write import write_reports


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_full_device_is_one_error_and_the_other_reports_are_rolled_back(tmp_path):
    with pytest.raises(ConfigError) as err:
        write_reports({str(tmp_path / "r.json"): "{}", "/dev/full": "x" * 100_000})
    assert str(err.value) == "cannot write /dev/full: No space left on device"
    assert _leftovers(tmp_path) == []


def test_a_folder_that_is_a_file_is_one_error_and_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(ConfigError, match=r"^cannot write .*file/r\.md: "):
        write_reports({str(tmp_path / "ok.json"): "{}", str(tmp_path / "file" / "r.md"): "# r"})
    assert _leftovers(tmp_path) == ["file"]
    assert (tmp_path / "file").read_text() == "keep"


def test_a_symlink_loop_is_one_error(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError, match=r"^cannot write .*/a: "):
        write_reports({str(tmp_path / "a"): "{}"})


def test_a_failed_write_of_the_temp_file_leaves_no_temp_file(tmp_path, monkeypatch):
    import os

    real = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):     # what a full disk does to write()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    with pytest.raises(ConfigError, match=r"^cannot write .*r\.json: No space left on device$"):
        write_reports({str(tmp_path / "r.json"): "{}"})
    assert _leftovers(tmp_path) == []


def test_check_writable_says_cannot_write_and_why(tmp_path):
    from gate.report.write import check_writable

    with pytest.raises(ConfigError) as err:
        check_writable(tmp_path)
    assert str(err.value) == f"cannot write {tmp_path}: it is a directory"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as err:
        check_writable(tmp_path / "file" / "r.md")
    assert str(err.value) == f"cannot write {tmp_path}/file/r.md: {tmp_path}/file is not a writable directory"
    check_writable(tmp_path / "new" / "deeper" / "r.json")      # folders that do not exist yet are made
