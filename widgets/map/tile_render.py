"""Render a basemap from the territory into an MBTiles file (``python main.py tiles build``).

An air-gapped hall has no tile server, yet a map without ground under it is
hard to read.  This draws one from what the database holds: the district
outline, the streets (街道) filled in soft colours that differ between
neighbours, the communities' boundaries, and their names at the zooms where
they fit (district at 11–12, streets 12–15, communities from 14).  The scene
(projection, datum, label anchors, tile lists) is plain data from
``maps.tiles.basemap``; here it is painted with QPainter on QImage, which Qt
allows off the GUI thread, on a small thread pool; the file is written by
``maps.tiles.mbtiles.MBTilesWriter`` and read back through ``open_source`` as
the map will read it.

Labels are placed once per zoom in global pixel coordinates (greedy, larger
areas first, nothing overlapping) and each tile draws every label that
touches it at the same global position, so a name across a tile seam joins
up exactly.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QTransform,
)

from maps.tiles import open_source
from maps.tiles.basemap import BasemapScene
from maps.tiles.mbtiles import MBTilesWriter
from maps.tiles.xyz import ORIGIN_SHIFT, mercator_to_lonlat

TILE = 256
BACKGROUND = QColor("#e9e7e1")  # outside the territory
STREET_FILLS = [
    QColor(c) for c in ("#f4ead3", "#e1edd7", "#dde7f1", "#f1e0dd", "#e8e1f0", "#eef0d8")
]
COMMUNITY_LINE = QColor("#b9ae9c")
STREET_LINE = QColor("#8f7c63")
DISTRICT_LINE = QColor("#6a4a35")
DISTRICT_HALO = QColor(106, 74, 53, 60)
TEXT_COLOURS = {
    "district": QColor("#4a3322"),
    "street": QColor("#5a4630"),
    "community": QColor("#6f675c"),
}
HALO = QColor(255, 255, 255, 220)

# which names show at which zooms, their pixel size, weight and priority
LABEL_ZOOMS = {"district": (0, 12), "street": (12, 15), "community": (14, 22)}
LABEL_SIZES = {"district": 20.0, "street": 14.0, "community": 11.5}
LABEL_BOLD = {"district": True, "street": True, "community": False}
LABEL_PRIORITY = {"district": 0, "street": 1, "community": 2}
LABEL_PAD = 3.0  # pixels kept free around each name


def cjk_family() -> str | None:
    """An installed font family with Chinese glyphs, sans-serif preferred, or None."""
    families = QFontDatabase.families()
    for wanted in (
        "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Noto Sans SC",
        "Microsoft YaHei", "PingFang SC", "Noto Serif CJK SC",
    ):
        if wanted in families:
            return wanted
    for family in families:
        if QFontDatabase.WritingSystem.SimplifiedChinese in QFontDatabase.writingSystems(family):
            return family
    return None


@dataclass
class _Label:
    level: str
    text: str
    gx: float  # centre, global pixels at the label's zoom
    gy: float
    rect: QRectF  # global pixels, with padding


class TileRenderer:
    """Paints tiles of a :class:`BasemapScene`; ``render_png`` is thread-safe."""

    def __init__(self, scene: BasemapScene, font_family: str | None = None):
        self.scene = scene
        self.family = font_family if font_family is not None else cjk_family()
        self._districts = [self._path(a) for a in scene.districts]
        self._streets = [self._path(a) for a in scene.streets]
        self._communities = [self._path(a) for a in scene.communities]
        # the territory as one path: what lies outside is painted as background
        land = QPainterPath()
        land.setFillRule(Qt.FillRule.OddEvenFill)
        for path, _rect, _a in self._districts:
            land.addPath(path)
        self._land = land
        self._fonts = {level: self._font(level) for level in LABEL_SIZES}
        self._labels: dict[int, list[_Label]] = {}
        self._lock = threading.Lock()

    # --- preparation ---------------------------------------------------------------

    @staticmethod
    def _path(area) -> tuple[QPainterPath, QRectF, object]:
        path = QPainterPath()
        path.setFillRule(Qt.FillRule.OddEvenFill)
        for ring in area.rings:
            path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in ring]))
            path.closeSubpath()
        x0, y0, x1, y1 = area.bbox
        return path, QRectF(x0, y0, x1 - x0, y1 - y0), area

    def _font(self, level: str) -> QFont:
        font = QFont(self.family) if self.family else QFont()
        font.setPixelSize(round(LABEL_SIZES[level]))
        font.setBold(LABEL_BOLD[level])
        font.setStyleStrategy(QFont.StyleStrategy.PreferAntialias)
        return font

    def labels(self, z: int) -> list[_Label]:
        """The names shown at zoom ``z``, placed so that none overlaps another."""
        with self._lock:
            placed = self._labels.get(z)
            if placed is not None:
                return placed
            placed = self._place(z)
            self._labels[z] = placed
            return placed

    def _place(self, z: int) -> list[_Label]:
        scale = TILE * (1 << z) / (2 * ORIGIN_SHIFT)
        candidates = []
        for level, areas in (
            ("district", self.scene.districts),
            ("street", self.scene.streets),
            ("community", self.scene.communities),
        ):
            lo, hi = LABEL_ZOOMS[level]
            if not (lo <= z <= hi):
                continue
            for a in areas:
                width_px = (a.bbox[2] - a.bbox[0]) * scale
                candidates.append((LABEL_PRIORITY[level], -a.area_m2, level, a, width_px))
        candidates.sort(key=lambda c: (c[0], c[1]))
        placed: list[_Label] = []
        for _prio, _neg, level, a, width_px in candidates:
            metrics = QFontMetricsF(self._fonts[level])
            w = metrics.horizontalAdvance(a.name)
            h = metrics.height()
            if level == "community" and w > width_px * 1.6:
                continue  # the name would cover its neighbours more than itself
            gx = (a.anchor[0] + ORIGIN_SHIFT) * scale
            gy = (ORIGIN_SHIFT - a.anchor[1]) * scale
            rect = QRectF(gx - w / 2 - LABEL_PAD, gy - h / 2 - LABEL_PAD,
                          w + 2 * LABEL_PAD, h + 2 * LABEL_PAD)
            if any(rect.intersects(p.rect) for p in placed):
                continue
            placed.append(_Label(level, a.name, gx, gy, rect))
        return placed

    # --- painting ------------------------------------------------------------------

    def render(self, z: int, x: int, y: int) -> QImage:
        """Tile (z, x, y) as an RGB image."""
        image = QImage(TILE, TILE, QImage.Format.Format_RGB32)
        image.fill(BACKGROUND)
        scale = TILE * (1 << z) / (2 * ORIGIN_SHIFT)
        # mercator metres → this tile's pixels (y flips: mercator grows north)
        to_px = QTransform(scale, 0, 0, -scale, ORIGIN_SHIFT * scale - x * TILE,
                           ORIGIN_SHIFT * scale - y * TILE)
        span = 2 * ORIGIN_SHIFT / (1 << z)
        min_x = -ORIGIN_SHIFT + x * span
        max_y = ORIGIN_SHIFT - y * span
        margin = span * 0.05
        view = QRectF(min_x - margin, max_y - span - margin, span + 2 * margin,
                      span + 2 * margin)

        painter = QPainter(image)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
            painter.setTransform(to_px)
            painter.setPen(Qt.PenStyle.NoPen)
            for path, rect, area in self._streets:
                if rect.intersects(view):
                    painter.setBrush(STREET_FILLS[area.colour % len(STREET_FILLS)])
                    painter.drawPath(path)
            if not self._streets:
                painter.setBrush(STREET_FILLS[0])
                for path, rect, _a in self._districts:
                    if rect.intersects(view):
                        painter.drawPath(path)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            if z >= 13:
                pen = QPen(COMMUNITY_LINE, 0.6 if z == 13 else 1.0 if z < 16 else 1.3)
                pen.setCosmetic(True)
                if z < 15:
                    pen.setStyle(Qt.PenStyle.DashLine)
                painter.setPen(pen)
                for path, rect, _a in self._communities:
                    if rect.intersects(view):
                        painter.drawPath(path)
            pen = QPen(STREET_LINE, 1.0 if z <= 12 else 1.6 if z < 15 else 2.2)
            pen.setCosmetic(True)
            painter.setPen(pen)
            for path, rect, _a in self._streets:
                if rect.intersects(view):
                    painter.drawPath(path)
            halo = QPen(DISTRICT_HALO, 7.0 if z >= 14 else 5.0)
            halo.setCosmetic(True)
            line = QPen(DISTRICT_LINE, 2.6 if z >= 14 else 2.0)
            line.setCosmetic(True)
            line.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            for pen in (halo, line):
                painter.setPen(pen)
                for path, rect, _a in self._districts:
                    if rect.intersects(view):
                        painter.drawPath(path)
            self._draw_labels(painter, z, x, y)
        finally:
            painter.end()
        return image

    def _draw_labels(self, painter: QPainter, z: int, x: int, y: int) -> None:
        tile_rect = QRectF(x * TILE, y * TILE, TILE, TILE)
        painter.setTransform(QTransform.fromTranslate(-x * TILE, -y * TILE))
        outline = QPen(HALO, 3.0)
        outline.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        for label in self.labels(z):
            if not label.rect.intersects(tile_rect):
                continue
            font = self._fonts[label.level]
            metrics = QFontMetricsF(font)
            w = metrics.horizontalAdvance(label.text)
            base = QPointF(label.gx - w / 2, label.gy + (metrics.ascent() - metrics.descent()) / 2)
            path = QPainterPath()
            path.addText(base, font, label.text)
            painter.strokePath(path, outline)
            painter.fillPath(path, QBrush(TEXT_COLOURS[label.level]))

    def render_png(self, z: int, x: int, y: int) -> bytes:
        """Tile (z, x, y) encoded as PNG."""
        image = self.render(z, x, y)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        return bytes(data.data())


def ensure_gui() -> QGuiApplication:
    """A Qt GUI application (fonts need one); offscreen unless a platform was chosen."""
    from widgets.app import pin_none

    pin_none()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QGuiApplication.instance()
    if app is None:
        app = QGuiApplication([sys.argv[0]])
    return app  # type: ignore[return-value]


def write_basemap(
    scene: BasemapScene,
    out: Path,
    workers: int = 2,
    progress=None,
) -> dict:
    """Render every tile of ``scene`` into the MBTiles file ``out``; a summary dict.

    ``progress(done, total, z)`` is called now and then from this thread.
    The file is written under a temporary name and moved into place only when
    complete, so a build that fails or is interrupted leaves no half basemap.
    """
    ensure_gui()
    started = time.monotonic()
    renderer = TileRenderer(scene)
    for z in scene.tiles:
        renderer.labels(z)  # place names once, before the threads start
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")  # two builders never share one
    total = scene.tile_count
    zooms = sorted(scene.tiles)
    west, south, east, north = scene.lonlat_bbox
    cx, cy = (scene.bbox[0] + scene.bbox[2]) / 2, (scene.bbox[1] + scene.bbox[3]) / 2
    clon, clat = mercator_to_lonlat(cx, cy)
    done = 0
    try:
        with MBTilesWriter(tmp) as writer:
            writer.set_metadata(
                name=scene.name,
                format="png",
                type="baselayer",
                version="1.0",
                description="Territory basemap built by the Grid Command Console (tiles build)",
                attribution="网格指挥调度台 territory",
                bounds=f"{west:.6f},{south:.6f},{east:.6f},{north:.6f}",
                center=f"{clon:.6f},{clat:.6f},{min(zooms) + 2 if len(zooms) > 2 else zooms[0]}",
                minzoom=min(zooms),
                maxzoom=max(zooms),
                scheme="tms",
                datum=scene.datum,
            )
            jobs = [t for z in zooms for t in scene.tiles[z]]
            pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
            try:
                # bounded in flight, so memory stays flat on a county-sized build
                step = max(64, workers * 32)
                for start in range(0, len(jobs), step):
                    chunk = jobs[start : start + step]
                    for (z, x, y), png in zip(
                        chunk, pool.map(lambda t: renderer.render_png(*t), chunk), strict=True
                    ):
                        writer.add(z, x, y, png)
                        done += 1
                    if progress is not None:
                        progress(done, total, chunk[-1][0])
            except BaseException:
                # Ctrl-C or an error: the tiles queued behind the running ones are not
                # rendered (the executor's own exit would render the whole chunk first,
                # minutes at z19 on a loaded machine) and the old basemap stays.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
            distinct = writer.unique_images
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "path": str(out),
        "tiles": done,
        "distinct_images": distinct,
        "zooms": (min(zooms), max(zooms)),
        "datum": scene.datum,
        "bytes": out.stat().st_size,
        "seconds": time.monotonic() - started,
        "font": renderer.family,
    }


def build_demo_basemap(engine, data_dir: Path, threads: int = 1) -> Path:
    """The embedded demo's own basemap, ``DATA_DIR/demo-basemap.mbtiles``, built if missing.

    Called by the console window on a worker thread at the demo's first start
    (one rendering thread, so the window keeps the other core); the map picks
    the file up when it is there (``console.config.basemap_spec``).  Raises
    ``BadInput`` when there is no territory yet.
    """
    from console.config import DEMO_BASEMAP
    from db.basemap_source import basemap_territory
    from maps.tiles.basemap import build_scene

    target = Path(data_dir) / DEMO_BASEMAP
    if target.is_file():
        return target
    scene = build_scene(basemap_territory(engine))
    write_basemap(scene, target, workers=threads)
    return target


def build_tiles(
    settings,
    out: str,
    min_zoom: int = 11,
    max_zoom: int = 16,
    datum: str = "gcj02",
    adcode: str | None = None,
    workers: int | None = None,
) -> int:
    """The window command behind ``python main.py tiles build``: read, render, write, check.

    Prints progress with the elapsed time and a summary line; raises
    ``TileError``/``BadInput`` for bad input (the CLI turns them into exit 2).
    """
    from console.bootstrap import open_database
    from db.basemap_source import basemap_territory
    from maps.tiles import TileError
    from maps.tiles.basemap import build_scene

    target = Path(out)
    if target.suffix.lower() != ".mbtiles":
        raise TileError(
            f"输出文件须以 .mbtiles 结尾：{out}。", f"The output must end in .mbtiles: {out}."
        )
    if target.is_dir():
        raise TileError(f"{out} 是一个目录。", f"{out} is a folder.")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise TileError(f"目录不存在：{parent}。", f"No such folder: {parent}.")
    started = time.monotonic()
    engine = open_database(settings)
    territory = basemap_territory(engine, adcode)
    engine.dispose()
    scene = build_scene(territory, datum=datum, zooms=(min_zoom, max_zoom))
    n_workers = workers or min(4, os.cpu_count() or 1)
    print(
        f"tiles build: {scene.name}, z{min_zoom}–{max_zoom}, {scene.tile_count} tiles, "
        f"datum {datum}, {n_workers} threads",
        flush=True,
    )
    last = [0.0]

    def progress(done: int, total: int, z: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            print(f"  z{z}: {done}/{total} tiles, {now - started:.1f} s", flush=True)

    summary = write_basemap(scene, target, n_workers, progress)
    # read it back as the map will, so a broken file is found here and not in the hall
    source = open_source(str(target), memory_tiles=0)
    try:
        z0 = summary["zooms"][0]
        first = scene.tiles[z0][len(scene.tiles[z0]) // 2]
        if source is None or source.fetch(*first) is None:
            raise TileError(
                f"写出的 {out} 读不回瓦片 {first}。", f"{out} was written but tile {first} "
                "does not read back."
            )
    finally:
        if source is not None:
            source.close()
    font = summary["font"] or "default font (no CJK font found: names may show as boxes)"
    print(
        f"wrote {out}: {summary['tiles']} tiles ({summary['distinct_images']} distinct), "
        f"z{summary['zooms'][0]}–{summary['zooms'][1]}, datum {summary['datum']}, "
        f"{summary['bytes'] / 1e6:.1f} MB, font {font}, in {time.monotonic() - started:.1f} s"
    )
    return 0
