"""Screenshot a run directory's report with headless Chromium (through Playwright).

    python scripts/report_screenshot.py RUN_DIR [--out RUN_DIR/report/screenshot.png] [--width 1000]
                                                [--height 1400] [--full-page] [--browser /usr/bin/chromium]

Opens ``RUN_DIR/report/index.html`` as a ``file://`` page (no server) in the system
Chromium (Debian: ``apt-get install chromium``; ``pip install playwright``, no
``playwright install`` needed), waits for it to load and writes a PNG of the top of the
page (``--full-page``: all of it), reduced to a 256-colour palette so that it stays small
enough to commit (docs/img/report.png is made this way). Exits with a message when the
page is missing, links to files instead of embedding them, logs console errors, or has
an image that did not load. Prints one line: the PNG path, its size in pixels and bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

BROWSER = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def linked_files(page: Path) -> list[str]:
    """``src`` / ``href`` targets of ``page`` that are files rather than embedded ``data:`` URIs."""
    text = page.read_text(encoding="utf-8")
    return [t for t in re.findall(r"\s(?:src|href)=[\"']([^\"']*)[\"']", text) if not t.startswith(("data:", "#"))]


def screenshot(run_dir: Path, out: Path | None = None, width: int = 1000, height: int = 1400,
               full_page: bool = False, browser: str = BROWSER) -> Path:
    """Write a palette PNG of ``run_dir/report/index.html``; returns its path."""
    page = (Path(run_dir) / "report" / "index.html").absolute()
    if not page.exists():
        raise SystemExit(f"error: {page}: no report (run 'rarefy report {run_dir}')")
    links = linked_files(page)
    if links:
        raise SystemExit(f"error: {page}: the page links to files instead of embedding them: {', '.join(links)}")
    if not Path(browser).exists():
        raise SystemExit(f"error: no Chromium at {browser} (apt-get install chromium, or --browser PATH)")
    from playwright.sync_api import sync_playwright

    out = (out or page.parent / "screenshot.png").absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser, args=ARGS)
        try:
            tab = chromium.new_page(viewport={"width": width, "height": height})
            tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.goto(page.as_uri(), wait_until="load")
            broken = tab.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                  ".map(i => i.alt)")
            problems += [f"image not loaded: {alt}" for alt in broken]
            png = tab.screenshot(full_page=full_page)
        finally:
            chromium.close()
    if problems:
        raise SystemExit(f"error: {page}: " + "; ".join(problems))
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--width", type=int, default=1000, help="viewport width in CSS pixels")
    ap.add_argument("--height", type=int, default=1400, help="viewport height in CSS pixels")
    ap.add_argument("--full-page", action="store_true", help="the whole page, not only the top")
    ap.add_argument("--browser", default=BROWSER)
    args = ap.parse_args()
    path = screenshot(args.run_dir, args.out, args.width, args.height, args.full_page, args.browser)
    from PIL import Image

    with Image.open(path) as im:
        print(f"{path} {im.size[0]}x{im.size[1]} {path.stat().st_size} bytes")


if __name__ == "__main__":
    sys.exit(main())
