"""Report writing: a path that cannot be written is one ConfigError `cannot write PATH: reason`, and no report of
the run is left behind (neither a temp file nor one already renamed into place)."""
from __future__ import annotations

import os
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


def test_a_symlink_loop_on_the_way_is_one_error(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError) as err:
        write_reports({str(tmp_path / "a" / "r.json"): "{}"}, options={str(tmp_path / "a" / "r.json"): "--json"})
    assert str(err.value) == f"--json: cannot write {tmp_path}/a/r.json: Too many levels of symbolic links"


def test_a_symlink_loop_at_the_path_itself_is_replaced_by_the_report(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    write_reports({str(tmp_path / "a"): "{}"})
    assert (tmp_path / "a").read_text() == "{}" and (tmp_path / "b").is_symlink()


def test_a_name_of_255_bytes_is_written(tmp_path):
    """The temp file beside the report has a short name of its own, so the longest name a folder takes still works."""
    target = tmp_path / ("r" * 250 + ".json")
    write_reports({str(target): "{}"})
    assert target.read_text() == "{}" and _leftovers(tmp_path) == [target.name]


@pytest.mark.parametrize("function", ["check_writable", "remove_stale", "write_reports"])
def test_a_name_too_long_is_one_error_naming_the_option(function, tmp_path):
    from gate.report import write

    target = str(tmp_path / ("r" * 256 + ".json"))
    call = {"check_writable": lambda: write.check_writable(target, option="--html"),
            "remove_stale": lambda: write.remove_stale(target, option="--html"),
            "write_reports": lambda: write.write_reports({target: "x"}, options={target: "--html"})}[function]
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value) == f"--html: cannot write {target}: File name too long"
    assert _leftovers(tmp_path) == []


def test_remove_stale_removes_a_link_never_its_target_and_leaves_folders_and_devices(tmp_path):
    from gate.report.write import remove_stale

    target = tmp_path / "target.json"
    target.write_text("kept")
    for name, to in (("link", target), ("dangling", tmp_path / "nowhere"), ("to_folder", tmp_path)):
        (tmp_path / name).symlink_to(to)
        remove_stale(tmp_path / name)
        assert not (tmp_path / name).is_symlink()
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "plain").write_text("a file where a folder should be")
    for kept in ("folder", "fifo", "missing", "plain/r.json"):
        remove_stale(tmp_path / kept)
    remove_stale("/dev/null")
    assert _leftovers(tmp_path) == ["fifo", "folder", "plain", "target.json"] and target.read_text() == "kept"


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
