"""The closed-loop report renders in headless Chromium (slow: a tiny loop, then a browser screenshot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import rarefy

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "scripts" / "report_screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    shot = _script()
    if shot.find_browser() is None:
        pytest.skip("no Chromium (apt-get install chromium chromium-driver)")
    from test_loop import tiny_config

    out = tmp_path / "run"
    rarefy.run(tiny_config(tmp_path), out, progress=False)
    png = shot.screenshot(out, tmp_path / "shot.png", width=1200, height=3000)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert img.shape == (3000, 1200)
    top = img[:1500]  # the page's upper half holds tables and plots: far from a blank page
    assert top.std() > 20 and (top < 128).mean() > 0.01


def test_screenshot_script_refuses_a_missing_report(tmp_path):
    shot = _script()
    with pytest.raises(SystemExit, match="no report"):
        shot.screenshot(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text('<html><img src="missing.png"></html>')
    with pytest.raises(SystemExit, match="images missing"):
        shot.screenshot(tmp_path)
