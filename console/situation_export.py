"""Export a situation map: ``main.py export-map`` and the console's "export the current view".

Reads the situation (``db.situation``), opens the basemap (``maps.tiles``) and
builds the page (``maps.folium_export``); blocking, so the console calls
:func:`export_view` through ``console.tasks.run_in_thread``.  Every failure a
person can cause is a ``BadInput`` with one line in Chinese and English.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from db.errors import BadInput
from db.situation import check_bounds, situation
from maps.folium_export import situation_map
from maps.tiles import TileError, open_source

LEAFLET_URL_ENV = "GRID_LEAFLET_URL"


@dataclass
class ExportSummary:
    path: str
    counts: dict[str, int]
    datum: str
    offline: bool
    bytes: int
    notes: list[str]

    def line(self) -> str:
        """One line for a person: what the file holds."""
        c = self.counts
        parts = [f"{c[k]} {k}" for k in ("district", "street", "community", "grid", "cases",
                                          "workers", "cameras", "tiles") if c.get(k)]
        mode = "offline" if self.offline else "online"
        return (f"wrote {self.path}: {', '.join(parts) or 'nothing to show'}; datum {self.datum}, "
                f"{mode}, {self.bytes / 1e6:.1f} MB")


def _check_out(out: str | Path) -> Path:
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise BadInput(f"输出文件须以 .html 结尾：{out}。", f"The output must end in .html: {out}.")
    if path.is_dir():
        raise BadInput(f"{out} 是一个目录。", f"{out} is a folder.")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BadInput(f"目录不存在：{parent}。", f"No such folder: {parent}.")
    return path


def export_situation(
    engine: Engine,
    out: str | Path,
    *,
    street: str | None = None,
    grid: str | None = None,
    case: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    offline: bool = False,
    basemap: str | None = None,
    leaflet_url: str | None = None,
    lang: str = "zh",
    cluster: bool = True,
    cache_dir: Path | None = None,
) -> ExportSummary:
    """Write the situation map of one scope to ``out`` (see ``db.situation.situation``).

    ``basemap`` is a tile spec (``maps.tiles.open_source``); ``leaflet_url`` where
    Leaflet's files are when not ``offline`` (else ``GRID_LEAFLET_URL``, else
    folium's public addresses).  The file is written whole or not at all.
    """
    path = _check_out(out)
    try:
        source = open_source(basemap, cache_dir)
    except TileError as exc:
        raise BadInput(exc.zh, exc.en) from None
    data = situation(engine, street=street, grid=grid, case=case, bounds=bounds)
    try:
        page = situation_map(
            data,
            basemap=source,
            offline=offline,
            leaflet_url=leaflet_url or os.environ.get(LEAFLET_URL_ENV) or None,
            lang=lang,
            cluster=cluster,
        )
    except TileError as exc:
        raise BadInput(exc.zh, exc.en) from None
    finally:
        if source is not None:
            source.close()
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(page.html, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"无法写入 {out}（{exc.strerror}）。",
                       f"Cannot write {out} ({exc.strerror}).") from None
    return ExportSummary(str(path), page.counts, page.datum, offline, path.stat().st_size,
                         page.notes)


def export_view(
    engine: Engine,
    out: str | Path,
    bounds: tuple[float, float, float, float],
    *,
    basemap: str | None = None,
    offline: bool = False,
    lang: str = "zh",
    leaflet_url: str | None = None,
    cache_dir: Path | None = None,
) -> ExportSummary:
    """"Export the current view": the situation inside ``bounds`` (west, south, east,
    north in WGS-84 degrees), drawn over the console's own basemap spec.

    The map gets its view in canvas metres of the basemap's datum; convert with
    ``maps.mercator.Projector(datum).inverse`` (which returns WGS-84) first.
    """
    return export_situation(
        engine, out, bounds=check_bounds(bounds), offline=offline, basemap=basemap,
        leaflet_url=leaflet_url, lang=lang, cache_dir=cache_dir,
    )
