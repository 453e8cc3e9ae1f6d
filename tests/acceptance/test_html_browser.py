"""The HTML report in a real browser: headless Chromium draws the page of a failing run, with nothing on its console.

Chromium is Debian's `chromium` package (.ci/install.sh installs it where apt is available and it runs as root).
Without it these tests are skipped, saying so.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gate.report.html import render_html
from tests.acceptance.helpers import run_cli
from tests.png import read_png, non_white_fraction
from tests.unit.report_fixtures import HOSTILE, html_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0")
# Chromium logs every console message (log, warning, error, an uncaught exception, a Content-Security-Policy
# violation such as an injected <img> or <script>) as a ":CONSOLE" line; the report has no script, so it logs none.
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught")


def _chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": profile},
        )


def screenshot(page: Path, png: Path) -> list[str]:
    """Draw `page` at 1280x2000 into `png`; return the console lines Chromium logged."""
    done = _chromium(page, f"--screenshot={png}", "--window-size=1280,2000")
    assert png.is_file(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return [line for line in done.stderr.splitlines() if CONSOLE.search(line)]


def dumped_dom(page: Path) -> str:
    done = _chromium(page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_console_detector_sees_errors_and_blocked_markup(tmp_path):
    """The check below can fail: a page with a script error and an injected image logs console lines."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"img-src data:\">"
                    "</head><body><p>x</p><img src=x><script>undefinedFunction()</script></body></html>")
    lines = screenshot(page, tmp_path / "broken.png")
    assert any("undefinedFunction" in line for line in lines)
    assert any("img-src" in line for line in lines)


def test_report_of_a_failing_run_draws_in_chromium(world, in_repo_root, tmp_path, capsys):
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    res = run_cli(capsys, "check", world.regressed, "--baseline", world.baseline, "--data", world.data,
                  "--model-factory", "tests.tiny_models:build_mlp", "--enable", "drift", "--html", page)
    assert res.code == 1, res.err
    console = screenshot(page, png)
    assert console == []
    pixels = read_png(png)
    assert pixels.shape[:2] == (2000, 1280)
    drawn = non_white_fraction(pixels)
    assert 0.03 < drawn < 0.6, f"{drawn:.1%} of the screenshot is not white"
    # The verdict banner is the first thing drawn: the top rows are the failure red (#c62828), not white.
    top = pixels[10:60, 600:700, :3].reshape(-1, 3).mean(axis=0)
    assert abs(top[0] - 0xC6) < 12 and abs(top[1] - 0x28) < 12 and abs(top[2] - 0x28) < 12, top
    dom = dumped_dom(page)
    for anchor in ("failures", "checks", "per-class", "confusion", "drift", "details"):
        assert f'id="{anchor}"' in dom
    assert "gate FAILED" in dom and "First drifting layer" in dom
    keep = os.environ.get("GATE_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)


def test_hostile_names_stay_text_in_the_browser(tmp_path):
    page, png = tmp_path / "hostile.html", tmp_path / "hostile.png"
    page.write_text(render_html(html_report(class_names=HOSTILE, layers=(HOSTILE[0], "b", HOSTILE[1], "d"),
                                            path=HOSTILE[1])))
    assert screenshot(page, png) == []          # an injected <img>/<script> would log a CSP violation
    dom = dumped_dom(page)
    assert "<script" not in dom and "<img" not in dom
    assert "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert 0.03 < non_white_fraction(read_png(png)) < 0.6


def _colour_pixels(pixels, hex_colour: str, tol: int = 10) -> int:
    want = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    rgb = pixels[..., :3].astype(int)
    return int((abs(rgb - want).max(axis=-1) <= tol).sum())


def test_score_curves_and_slices_draw_in_chromium(tmp_path):
    """The ROC / precision-recall section draws both models' curves (their colours are on the screen), and the
    slices tables are in the DOM; nothing on the console."""
    import dataclasses

    from gate.report.html import BASELINE_COLOUR, CANDIDATE_COLOUR
    from tests.unit.test_curves import checks, feed, world
    from tests.unit.test_slices import OPTIONS, check_for
    from tests.unit.test_slices import feed as feed_slices
    from tests.unit.test_slices import world as slice_world

    y, zb, zc = world(1500, 2, seed=31)
    (scores,) = checks({}, 2)
    feed(scores, y, zb, zc, batch=300)
    sy, pb, pc, group, texts = slice_world(2000, seed=0)
    slices = check_for({**OPTIONS, "by": ["group"]})
    feed_slices(slices, sy, pb, pc, group, texts, batch=500)
    report = dataclasses.replace(html_report(), checks=(scores.compute(), slices.compute()))
    page, png = tmp_path / "curves.html", tmp_path / "curves.png"
    page.write_text(render_html(report))
    done = _chromium(page, f"--screenshot={png}", "--window-size=1280,2600")
    assert png.is_file(), done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if CONSOLE.search(line)] == []
    pixels = read_png(png)
    # the latency chart (the other user of these colours) is not in this report: they are the curves' own
    assert _colour_pixels(pixels, BASELINE_COLOUR) > 300 and _colour_pixels(pixels, CANDIDATE_COLOUR) > 300
    dom = dumped_dom(page)
    assert 'id="curves"' in dom and 'id="slices"' in dom and 'data-dimension="group"' in dom
    assert dom.count('<polyline class="baseline"') == 2 and dom.count('<polyline class="candidate"') == 2
