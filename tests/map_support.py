"""Helpers for the live-map tests: a small district, workers with terminals, pixels.

The district is the real Dongcheng boundary divided coarsely (a few streets,
communities and grids), so an import takes a second or two; workers and
devices are inserted as the demo seed does, positions stored through the
same ingest function the gateway uses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import numpy as np
from PySide6.QtGui import QColor
from sqlalchemy import Engine, text

from db.positions import PositionReport, store_positions
from db.territory import import_district

DONGCHENG = resources.files("resources").joinpath("districts/110101.geojson")
INSIDE = (116.4100, 39.9200)  # WGS-84, inside Dongcheng (the flows' report point)


def small_district(engine: Engine):
    return import_district(engine, DONGCHENG, cell_m=200, streets=2, communities=4, grids=8)


def add_workers(engine: Engine, n: int, status: str = "on_duty") -> list[tuple[int, str]]:
    """``n`` workers in the first grid, each with a terminal T-k: [(device id, identifier)]."""
    with engine.begin() as conn:
        grid = conn.execute(text("SELECT id FROM grid ORDER BY code LIMIT 1")).scalar_one()
        out = []
        for k in range(n):
            wid = conn.execute(text(
                "INSERT INTO worker (code, name, grid_id, roster_role, status) "
                "VALUES (:c, :n, :g, 'full_time', :s) RETURNING id"),
                {"c": f"MW{k:03d}", "n": f"测试员{k}", "g": grid, "s": status}).scalar_one()
            did = conn.execute(text(
                "INSERT INTO device (identifier, worker_id) VALUES (:i, :w) RETURNING id"),
                {"i": f"T-{k}", "w": wid}).scalar_one()
            out.append((did, f"T-{k}"))
    return out


def report_at(engine: Engine, device: str, lon: float, lat: float,
              ts: datetime | None = None, course: float | None = None) -> None:
    store_positions(engine, [PositionReport(device, ts or datetime.now(UTC), lon, lat,
                                            course=course)])


def canvas_pixel(live_map, x_m: float, y_m: float) -> QColor:
    """The colour the map shows at a canvas point (the canvas grabbed as an operator sees it)."""
    image = live_map.canvas.grab().toImage()
    vb = live_map.canvas.vb
    scene = vb.mapViewToScene(_pt(x_m, y_m))
    view_pt = live_map.canvas.mapFromScene(scene)
    dpr = image.devicePixelRatio()
    return image.pixelColor(int(view_pt.x() * dpr), int(view_pt.y() * dpr))


def screen_pos(live_map, x_m: float, y_m: float):
    """Viewport pixel (QPoint) of a canvas point, for mouse clicks."""
    scene = live_map.canvas.vb.mapViewToScene(_pt(x_m, y_m))
    return live_map.canvas.mapFromScene(scene)


def _pt(x: float, y: float):
    from PySide6.QtCore import QPointF

    return QPointF(float(x), float(y))


def is_border(colour: QColor) -> bool:
    """The district border's colour (near white, bluish: README's map), over anything."""
    return colour.red() > 200 and colour.green() > 200 and colour.blue() > 220


def outline_share(live_map, image=None, outside=None, samples: int = 60) -> float:
    """Share of points along the district's outline where the map shows the border colour
    within 3 pixels.

    Looked for where the outline is, not anywhere: the scale bar, the north
    arrow and the notes are near white too, and counting white pixels over the
    whole map would find them whether or not a boundary is drawn.  ``outside``
    (a QRectF of image pixels) leaves out the points inside it.
    """
    image = image if image is not None else live_map.canvas.grab().toImage()
    ring = live_map.data.territory.layer.features["district"][0].polygons[0][0]
    dpr = image.devicePixelRatio()
    hits = total = 0
    for x, y in ring[np.linspace(0, len(ring) - 1, samples).astype(int)]:
        p = screen_pos(live_map, x, y)
        px, py = int(p.x() * dpr), int(p.y() * dpr)
        if not (3 <= px < image.width() - 3 and 3 <= py < image.height() - 3):
            continue
        if outside is not None and outside.contains(px, py):
            continue
        total += 1
        if any(is_border(image.pixelColor(px + dx, py + dy))
               for dx in range(-3, 4) for dy in range(-3, 4)):
            hits += 1
    return hits / total if total else 0.0


def near(colour: QColor, hex_colour: str, tol: int = 40) -> bool:
    want = QColor(hex_colour)
    return all(abs(a - b) <= tol for a, b in zip(
        (colour.red(), colour.green(), colour.blue()),
        (want.red(), want.green(), want.blue()), strict=True))


def finite(values) -> bool:
    return bool(np.all(np.isfinite(values)))
