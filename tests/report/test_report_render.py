"""The closed-loop report: one self-contained HTML file with provenance and units, rendered by headless Chromium.

The browser tests drive the system Chromium (/usr/bin/chromium, Debian's ``chromium``)
through Playwright; they are skipped where either is missing.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

import rarefy
from rarefy.config import load_config
from rarefy.provenance import config_hash
from rarefy.report import calibration, loop_report as loop_report_module, surrogate_plots
from rarefy.report.loop_report import loop_report
from rarefy.report.page import report_page, run_config
from report_run import SEED, UNITS, VALUE_UNIT, make_run_dir

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FIGURES = ("convergence", "slices", "map", "calibration", "acquisition", "cost", "designs")
# axes whose quantity has no unit: iteration numbers, a multiple of σ, a fraction, an arbitrary scale
DIMENSIONLESS = {"iteration (last: final)", "k (interval ±kσ)", "coverage", "after iteration",
                 "iteration (batch order left to right)", "acquisition value [a.u.]"}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[str]]:
    """A hand-made run directory with its report, and every axis label of the report's figures."""
    run_dir = make_run_dir(tmp_path_factory.mktemp("report") / "run")
    labels: list[str] = []

    def recording(save):
        def save_figure(fig, path, **kw):
            for ax in fig.axes:  # colour bars are axes too
                labels.extend(label for label in (ax.get_xlabel(), ax.get_ylabel()) if label)
            return save(fig, path, **kw)
        return save_figure

    with pytest.MonkeyPatch.context() as mp:
        for module in (loop_report_module, surrogate_plots, calibration):
            mp.setattr(module, "save_figure", recording(module.save_figure))
        loop_report(run_dir)
    return run_dir, labels


def test_the_report_is_one_file(report):
    run_dir, _ = report
    page = (run_dir / "report" / "index.html").read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == len(FIGURES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    links = re.findall(r'\s(?:src|href)="([^"]*)"', page)
    assert all(link.startswith("data:") for link in links), [x[:40] for x in links if not x.startswith("data:")]
    assert ".png" not in page.replace("image/png", "")
    for name in FIGURES:  # the figures are also kept beside the page
        assert (run_dir / "report" / f"{name}.png").stat().st_size > 5_000


def test_the_report_states_version_seed_config_and_its_hash(report):
    run_dir, _ = report
    page = (run_dir / "report" / "index.html").read_text()
    cfg = load_config(run_dir / "config.yaml")
    assert f"<td>{rarefy.__version__}</td>" in page
    assert f"<th>seed</th><td>{SEED}</td>" in page
    assert f"<td>{config_hash(cfg)}</td>" in page
    details = re.search(r"<details><summary>[^<]*config[^<]*</summary><pre>(.*?)</pre></details>", page, re.S)
    assert details is not None
    assert html.unescape(details.group(1)) == (run_dir / "config.yaml").read_text()
    assert "has changed since" not in page


def test_a_changed_config_is_flagged(report, tmp_path):
    run_dir, _ = report
    result = json.loads((run_dir / "result.json").read_text())
    (tmp_path / "config.yaml").write_text((run_dir / "config.yaml").read_text().replace("seed: 5", "seed: 6"))
    page = report_page("t", "", tmp_path, result, run_config(tmp_path))
    assert "config.yaml has changed since the result was written" in page
    assert f"<td>{result['provenance']['config_sha256']}</td>" in page  # the hash of the config that made it


def test_plot_axes_and_tables_carry_units(report):
    run_dir, labels = report
    assert labels
    for name, unit in UNITS.items():
        mine = [label for label in labels if label.split(" [")[0] == name]
        assert mine and set(mine) == {f"{name} [{unit}]" if unit else name}, (name, mine)
    rates = [label for label in labels if "rate" in label or label.startswith(("predicted", "observed", "σ"))]
    assert rates and all(label.endswith(f"[{VALUE_UNIT}]") for label in rates), rates
    cost = [label for label in labels if "cost" in label]
    assert cost and all(label.endswith("[CPU-h]") for label in cost), cost
    unexplained = [label for label in labels if label not in DIMENSIONLESS and not re.search(r"\[[^\]]+\]$", label)
                   and label not in UNITS]
    assert unexplained == []  # every other axis names its unit
    page = (run_dir / "report" / "index.html").read_text()
    theta = re.search(r"<h2>Optimum θ\*</h2>\s*<table>(.*?)</table>", page, re.S).group(1)
    assert "<th>parameter</th><th>value</th><th>unit</th>" in theta
    assert '<tr><td>radius</td><td class="num">31.7</td><td>cm</td></tr>' in theta
    assert '<tr><td>npanels</td><td class="num">3</td><td></td></tr>' in theta  # an integer, shown as one
    assert '<tr><td>angle</td><td class="num">84.2</td><td>deg</td></tr>' in theta
    assert f"<td>{VALUE_UNIT}</td>" in page and "<td>CPU-h</td>" in page
    assert f"<th>predicted optimum [{VALUE_UNIT}]</th>" in page


# ------------------------------------------------------------------ headless Chromium
def render(page: Path) -> dict:
    """Open ``page`` in headless Chromium: console messages, page errors, requests and every image's state."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    seen: dict = {"console": [], "errors": [], "requests": [], "failed": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 1400})
            tab.on("console", lambda m: seen["console"].append((m.type, m.text)))
            tab.on("pageerror", lambda e: seen["errors"].append(str(e)))
            tab.on("request", lambda r: seen["requests"].append(r.url))
            tab.on("requestfailed", lambda r: seen["failed"].append(r.url))
            tab.goto(page.as_uri(), wait_until="load")
            seen["images"] = tab.evaluate(
                "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,"
                " height: i.naturalHeight}))")
            seen["title"] = tab.title()
        finally:
            browser.close()
    return seen


def test_the_report_renders_alone_in_headless_chromium(report, tmp_path):
    run_dir, _ = report
    alone = tmp_path / "mailed" / "index.html"  # the page without the folder around it
    alone.parent.mkdir()
    shutil.copy(run_dir / "report" / "index.html", alone)
    seen = render(alone)
    errors = [text for kind, text in seen["console"] if kind in ("error", "warning")]
    assert errors == [] and seen["errors"] == [] and seen["failed"] == []
    assert len(seen["images"]) == len(FIGURES)
    for img in seen["images"]:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert [u for u in seen["requests"] if not u.startswith("data:")] == [alone.as_uri()]
    assert seen["title"] == "Closed loop: run"


def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<!doctype html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png" alt="x"><script>console.error("boom")</script></body></html>')
    seen = render(page)
    assert ("error", "boom") in seen["console"]
    assert seen["images"][0]["width"] == 0
    assert any(u.endswith("missing.png") for u in seen["failed"])


# ------------------------------------------------------------------ the screenshot script
def _script():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "scripts" / "report_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_screenshot_script_writes_a_small_png(report, tmp_path):
    pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    run_dir, _ = report
    png = _script().screenshot(run_dir, tmp_path / "shot.png", width=900, height=1200)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (900, 1200)
        gray = im.convert("L")
        assert gray.getextrema()[0] < 60  # text and plots, not a blank page
    assert png.stat().st_size < 400_000


def test_screenshot_script_refuses_a_missing_or_linking_report(tmp_path):
    shot = _script()
    with pytest.raises(SystemExit, match="no report"):
        shot.screenshot(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text('<html><img src="missing.png"></html>')
    with pytest.raises(SystemExit, match="links to files"):
        shot.screenshot(tmp_path)


@pytest.mark.slow
def test_a_closed_loop_report_renders_in_headless_chromium(tmp_path):
    spec = importlib.util.spec_from_file_location("loop_tests", ROOT / "tests" / "jobs" / "test_loop.py")
    loop_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop_tests)
    out = tmp_path / "run"
    rarefy.run(loop_tests.tiny_config(tmp_path), out, progress=False)
    seen = render(out / "report" / "index.html")
    assert [m for m in seen["console"] if m[0] == "error"] == [] and seen["errors"] == []
    assert len(seen["images"]) == len(FIGURES) and all(i["width"] > 0 for i in seen["images"])
