"""One self-contained HTML page per report: images embedded, provenance and the resolved config included.

A report page links to nothing: every figure is embedded as a base64 PNG (``data:`` URI),
so ``RUN_DIR/report/index.html`` alone can be mailed, attached or archived. Each page
states the rarefy version, the seed and the config hash that made the result (the
``provenance`` record of ``result.json``, see :mod:`rarefy.provenance`) and shows the run
directory's resolved ``config.yaml`` in a collapsible ``<details>`` block.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..config import RunConfig
from ..data.rundir import CONFIG, read_config
from ..errors import InputError
from ..provenance import config_hash

__all__ = ["embed_png", "html_table", "report_page", "run_config", "unit_label", "with_unit"]

STYLE = """body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
details{margin:1em 0}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:85%}
.provenance td,.provenance th{font-size:90%}code{font-size:90%}.warn{color:#a40}"""


def unit_label(unit: str) -> str:
    """`` [unit]`` for an axis label or a table header, nothing for an empty unit."""
    return f" [{unit}]" if unit else ""


def with_unit(name: str, unit: str) -> str:
    """``name [unit]`` (just ``name`` without a unit)."""
    return f"{name}{unit_label(unit)}"


def run_config(run_dir: Path) -> RunConfig | None:
    """The run directory's resolved config, or None when it has none or it cannot be read."""
    try:
        return read_config(run_dir)
    except InputError:
        return None


def embed_png(path: Path, alt: str) -> str:
    """An ``<img>`` holding the PNG at ``path`` as a base64 ``data:`` URI (the page links to no file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None, *,
               numeric: Sequence[int] = ()) -> str:
    """A table of already formatted cells (escaped here); without ``header`` the first cell of a row is its
    heading; columns in ``numeric`` are right-aligned."""
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = []
    for row in rows:
        cells = []
        for j, cell in enumerate(row):
            tag = "th" if header is None and j == 0 else "td"
            cls = ' class="num"' if j in numeric else ""
            cells.append(f"<{tag}{cls}>{html.escape(str(cell))}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _provenance(run_dir: Path, result: dict[str, Any], cfg: RunConfig | None) -> str:
    prov = dict(result.get("provenance") or {})
    now_hash = config_hash(cfg) if cfg is not None else None
    rows = [
        ("rarefy version", prov.get("rarefy_version", "unknown (result written without provenance)")),
        ("seed", str(prov.get("seed", cfg.seed if cfg is not None else "unknown"))),
        ("config sha256", prov.get("config_sha256") or now_hash or "unknown"),
        ("result written (UTC)", prov.get("created_utc", "unknown")),
        ("report written by", f"rarefy {__version__}"),
    ]
    out = '<div class="provenance">' + html_table(rows) + "</div>"
    if prov.get("config_sha256") and now_hash and prov["config_sha256"] != now_hash:
        out += (f'<p class="warn">{html.escape(CONFIG)} has changed since the result was written '
                f"(its sha256 is now {html.escape(now_hash)}).</p>")
    path = run_dir / CONFIG
    text = path.read_text(encoding="utf-8") if path.exists() else f"(no {CONFIG} in the run directory)"
    out += (f"<details><summary>Resolved config ({html.escape(CONFIG)})</summary>"
            f"<pre>{html.escape(text)}</pre></details>")
    return out


def report_page(title: str, body: str, run_dir: Path, result: dict[str, Any], cfg: RunConfig | None) -> str:
    """The whole HTML document: ``title``, the provenance of ``result``, then ``body`` (HTML)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Provenance</h2>
{_provenance(run_dir, result, cfg)}
{body}
</body></html>
"""
