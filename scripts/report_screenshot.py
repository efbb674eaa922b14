"""Screenshot a closed-loop report with headless Chromium.

    python scripts/report_screenshot.py RUN_DIR [--out RUN_DIR/report/screenshot.png] [--width 1400]

Opens ``RUN_DIR/report/index.html`` as a ``file://`` page (no server), waits for it to
load, and writes a full-height PNG. Needs a Chromium binary (Debian: ``apt-get install
chromium chromium-driver``; found as ``chromium``, ``chromium-browser`` or
``google-chrome``, or given with ``--browser``). Exits 1 with a message when the page or
the browser is missing, or when Chromium wrote no image. Before the screenshot it checks
that every ``<img src>`` of the page exists beside it, so a blank picture cannot pass.
Prints one line: the PNG path and its size in pixels.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(explicit: str | None = None) -> str | None:
    """Path of a Chromium-like browser, or None."""
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).exists() else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_images(page: Path) -> list[str]:
    """``<img src=...>`` targets of ``page`` that do not exist beside it."""
    html = page.read_text(encoding="utf-8")
    srcs = re.findall(r"<img[^>]+src=[\"']([^\"']+)[\"']", html)
    return [s for s in srcs if not s.startswith(("data:", "http")) and not (page.parent / s).exists()]


def screenshot(run_dir: Path, out: Path | None = None, width: int = 1400, height: int | None = None,
               browser: str | None = None) -> Path:
    """Write a PNG of ``run_dir/report/index.html``; returns its path."""
    page = (run_dir / "report" / "index.html").absolute()
    if not page.exists():
        raise SystemExit(f"error: {page}: no report (run 'rarefy report {run_dir}')")
    missing = missing_images(page)
    if missing:
        raise SystemExit(f"error: {page}: images missing beside the page: {', '.join(missing)}")
    exe = find_browser(browser)
    if exe is None:
        raise SystemExit("error: no Chromium found (apt-get install chromium chromium-driver, or --browser PATH)")
    out = (out or page.parent / "screenshot.png").absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    height = height or 6500  # CSS pixels: taller than the report (about 6000); the rest is blank page
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={out}",
               "--virtual-time-budget=5000", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not out.exists() or out.stat().st_size == 0:
        raise SystemExit(f"error: Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=None, help="window height in pixels (default 6500)")
    ap.add_argument("--browser", default=None)
    args = ap.parse_args()
    path = screenshot(args.run_dir, args.out, args.width, args.height, args.browser)
    from PIL import Image

    with Image.open(path) as im:
        print(f"{path} {im.size[0]}x{im.size[1]}")


if __name__ == "__main__":
    sys.exit(main())
