"""Map layer models: numpy columns with added/changed/removed events, no Qt.

Following napari's split, a layer here is plain data that knows nothing about
drawing; one visual per layer type (``widgets/map``) observes it and
schedules a repaint when it changes.  Updates are whole-array: a store hands
in the ids and new columns of everything that moved since the last update,
and the layer applies them with a few numpy operations (10,000 or 50,000
points cost the same handful of calls, never a Python loop per point).

Positions are canvas metres (Web Mercator in the basemap's datum, see
``maps.mercator.Projector``); the store that feeds a layer projects once.

Status codes and flag bits are the layer's own small integers so that a
visual can map them to a fixed palette (pyqtgraph's symbol atlas keys on the
brush object: one brush per status, never one per point).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

# -- events -----------------------------------------------------------------------


class Event:
    """A tiny callback list: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``.

    Enough for layer models (psygnal would do too; this keeps ``maps/`` free of
    another dependency).  Callbacks run synchronously in the emitting thread:
    stores update layers on the GUI thread, so visuals may touch Qt at once.
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, fn: Callable) -> Callable:
        self._callbacks.append(fn)
        return fn

    def disconnect(self, fn: Callable) -> None:
        try:
            self._callbacks.remove(fn)
        except ValueError:
            pass

    def emit(self, *args) -> None:
        for fn in list(self._callbacks):
            fn(*args)


# -- codes --------------------------------------------------------------------------

# Cases: status codes (the lifecycle, docs/DOMAIN.md) and flags.
CASE_STATUSES = (
    "reported",
    "accepted",
    "filed",
    "dispatched",
    "in_progress",
    "awaiting_verification",
)
CASE_STATUS_CODE = {s: i for i, s in enumerate(CASE_STATUSES)}
CASE_COMPONENT = 1 << 0  # 部件 (else 事件): drawn as a square
CASE_URGENT = 1 << 1
CASE_EMERGENCY = 1 << 2
CASE_OVERDUE = 1 << 3
CASE_WARNING = 1 << 4  # 80 % of the stage's limit used
CASE_ESCALATED = 1 << 5  # 督办 (yellow card)
CASE_ESCALATED_RED = 1 << 6  # 挂牌督办 (red card)
NEVER_CLUSTERED = CASE_URGENT | CASE_EMERGENCY | CASE_OVERDUE

# Workers: status codes and flags.
WORKER_STATUSES = ("on_duty", "patrolling", "handling", "off_duty", "offline")
WORKER_STATUS_CODE = {s: i for i, s in enumerate(WORKER_STATUSES)}
WORKER_OFFLINE = WORKER_STATUS_CODE["offline"]
WORKER_STALE = 1 << 0  # the last fix is old: the marker is hollow
WORKER_NO_FIX = 1 << 1  # never reported: not drawn at all
WORKER_HIGHLIGHT = 1 << 2  # one of the nearest available workers to the selected case


# -- point layers ---------------------------------------------------------------------


class PointLayer:
    """Points by id with columns ``x``, ``y`` (metres), ``status``, ``flags``, ``heading``.

    ``labels`` holds one display string per point (a name, a case number);
    ``extra`` per-point Python objects a visual may show (tooltips).  Rows are
    kept sorted by id, so ids map to rows by ``np.searchsorted``.

    Events: ``added(ids)``, ``changed(ids)``, ``removed(ids)`` (numpy id arrays),
    ``style_changed()`` (visibility, clustering …).
    """

    def __init__(self, name: str, title: str = ""):
        self.name = name
        self.title = title or name
        self.visible = True
        self.ids = np.zeros(0, dtype=np.int64)
        self.x = np.zeros(0, dtype=np.float64)
        self.y = np.zeros(0, dtype=np.float64)
        self.status = np.zeros(0, dtype=np.int16)
        self.flags = np.zeros(0, dtype=np.uint16)
        self.heading = np.zeros(0, dtype=np.float32)  # degrees from north, NaN: none
        self.labels = np.zeros(0, dtype=object)
        self.version = 0
        self.added = Event()
        self.changed = Event()
        self.removed = Event()
        self.style_changed = Event()

    def __len__(self) -> int:
        return len(self.ids)

    # -- reading --------------------------------------------------------------------

    def rows_of(self, ids) -> np.ndarray:
        """Row of each id, -1 where the layer does not hold it."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
        hit = (pos < len(self.ids)) & (self.ids[pos_c] == ids) if len(self.ids) else np.zeros(
            len(ids), dtype=bool
        )
        return np.where(hit, pos_c, -1)

    def row_of(self, item_id: int) -> int:
        return int(self.rows_of([item_id])[0])

    def position(self, item_id: int) -> tuple[float, float] | None:
        row = self.row_of(item_id)
        if row < 0:
            return None
        return float(self.x[row]), float(self.y[row])

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(min_x, min_y, max_x, max_y) of the finite points, None when there are none."""
        ok = np.isfinite(self.x) & np.isfinite(self.y)
        if not ok.any():
            return None
        return (float(self.x[ok].min()), float(self.y[ok].min()),
                float(self.x[ok].max()), float(self.y[ok].max()))

    # -- writing (whole arrays) ------------------------------------------------------------

    _COLUMNS = ("x", "y", "status", "flags", "heading", "labels")

    def upsert(self, ids, **columns) -> None:
        """Insert or update these ids; columns not given keep their values (0 for new rows).

        Emits ``changed`` with the ids that existed and ``added`` with the new ones.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        unknown = set(columns) - set(self._COLUMNS)
        if unknown:
            raise TypeError(f"unknown layer columns: {sorted(unknown)}")
        columns = {k: (np.asarray(v) if np.ndim(v) else v) for k, v in columns.items()}
        # The last occurrence of a repeated id wins (later in the batch = newer).  Ids in
        # increasing order (what a store sorted) cannot repeat: no sort needed to know.
        ordered = len(ids) < 2 or bool((ids[1:] > ids[:-1]).all())
        if not ordered and len(np.unique(ids)) != len(ids):
            _, last = np.unique(ids[::-1], return_index=True)
            keep = np.sort(len(ids) - 1 - last)
            ids = ids[keep]
            columns = {k: v[keep] if np.ndim(v) else v for k, v in columns.items()}
        rows = self.rows_of(ids)
        old = rows >= 0
        if old.any():
            r = rows[old]
            for name, values in columns.items():
                col = getattr(self, name)
                col[r] = values[old] if np.ndim(values) else values
        new = ~old
        new_ids = ids[new]
        if len(new_ids):
            merged_ids = np.concatenate([self.ids, new_ids])
            order = np.argsort(merged_ids, kind="stable")
            self.ids = merged_ids[order]
            for name in self._COLUMNS:
                col = getattr(self, name)
                values = columns.get(name)
                if values is None:
                    fill = np.full(len(new_ids), np.nan if name == "heading" else 0,
                                   dtype=col.dtype) if name != "labels" else np.full(
                        len(new_ids), "", dtype=object)
                elif np.ndim(values):
                    fill = np.asarray(values)[new].astype(col.dtype, copy=False)
                else:
                    fill = np.full(len(new_ids), values, dtype=col.dtype)
                setattr(self, name, np.concatenate([col, fill])[order])
        self.version += 1
        if old.any():
            self.changed.emit(ids[old])
        if len(new_ids):
            self.added.emit(new_ids)

    def remove(self, ids) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.rows_of(ids)
        rows = rows[rows >= 0]
        if not len(rows):
            return
        keep = np.ones(len(self.ids), dtype=bool)
        keep[rows] = False
        gone = self.ids[rows]
        self.ids = self.ids[keep]
        for name in self._COLUMNS:
            setattr(self, name, getattr(self, name)[keep])
        self.version += 1
        self.removed.emit(gone)

    def replace(self, ids, **columns) -> None:
        """Make the layer hold exactly these ids (a reload): removes the rest, upserts these."""
        ids = np.asarray(ids, dtype=np.int64)
        gone = np.setdiff1d(self.ids, ids)
        if len(gone):
            self.remove(gone)
        self.upsert(ids, **columns)

    def set_visible(self, visible: bool) -> None:
        if visible != self.visible:
            self.visible = bool(visible)
            self.style_changed.emit()


# -- territory: polygons with labels and one value each -------------------------------------

LEVELS = ("district", "street", "community", "grid")


@dataclass
class Feature:
    """One district, street, community or grid as the map draws it (canvas metres)."""

    level: str
    id: int
    code: str
    name: str
    polygons: list[list[np.ndarray]]  # polygons of rings, each (n, 2) metres
    label_x: float
    label_y: float
    bbox: tuple[float, float, float, float]  # min_x, min_y, max_x, max_y (metres)
    parent: str | None = None  # code of the containing unit


@dataclass
class TerritoryLayer:
    """The boundaries of every level, and a per-grid value for the choropleth.

    Boundaries change only when a district is imported again (``replace``);
    the choropleth values change with the cases (``set_values``).  Events:
    ``changed()`` (geometry), ``values_changed()``, ``style_changed()``.
    """

    features: dict[str, list[Feature]] = field(default_factory=lambda: {k: [] for k in LEVELS})
    grid_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metric: str = "open"
    visible_levels: dict[str, bool] = field(
        default_factory=lambda: {"district": True, "street": True, "community": True,
                                 "grid": True})
    choropleth_visible: bool = True
    version: int = 0
    values_version: int = 0

    def __post_init__(self) -> None:
        self.changed = Event()
        self.values_changed = Event()
        self.style_changed = Event()
        self._by_code: dict[str, Feature] = {}
        self._grid_row: dict[str, int] = {}
        self._tree = None

    def replace(self, features: Iterable[Feature]) -> None:
        self.features = {k: [] for k in LEVELS}
        for f in features:
            self.features[f.level].append(f)
        self._by_code = {f.code: f for level in LEVELS for f in self.features[level]}
        self._grid_row = {f.code: i for i, f in enumerate(self.features["grid"])}
        self.grid_values = np.zeros(len(self.features["grid"]))
        self._tree = None
        self.version += 1
        self.changed.emit()

    def feature(self, code: str) -> Feature | None:
        return self._by_code.get(code)

    def search(self, text: str, limit: int = 20) -> list[Feature]:
        """Features whose code starts with, or whose name contains, ``text``."""
        text = text.strip()
        if not text:
            return []
        found = []
        for level in LEVELS:
            for f in self.features[level]:
                if f.code.startswith(text) or text in f.name:
                    found.append(f)
                    if len(found) >= limit:
                        return found
        return found

    def bounds(self) -> tuple[float, float, float, float] | None:
        boxes = [f.bbox for level in ("district", "street") for f in self.features[level]]
        if not boxes:
            boxes = [f.bbox for f in self.features["grid"]]
        if not boxes:
            return None
        a = np.asarray(boxes)
        return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(
            a[:, 3].max())

    def grid_at(self, x: float, y: float) -> Feature | None:
        """The grid containing a canvas point (shapely STRtree, built on first use)."""
        import shapely
        from shapely.geometry import Polygon

        grids = self.features["grid"]
        if not grids:
            return None
        if self._tree is None:
            shapes = []
            for f in grids:
                parts = [Polygon(rings[0], rings[1:]) for rings in f.polygons if len(rings[0]) > 2]
                shapes.append(shapely.union_all(parts) if len(parts) > 1 else parts[0])
            self._shapes = shapes
            self._tree = shapely.STRtree(shapes)
        hits = self._tree.query(shapely.points(x, y), predicate="intersects")
        return grids[int(hits[0])] if len(hits) else None

    def set_values(self, metric: str, values_by_grid_code: dict[str, float]) -> None:
        """The choropleth: one value per grid code (missing grids are 0)."""
        values = np.zeros(len(self.features["grid"]))
        for code, v in values_by_grid_code.items():
            row = self._grid_row.get(code)
            if row is not None:
                values[row] = v
        changed = metric != self.metric or not np.array_equal(values, self.grid_values)
        self.metric = metric
        self.grid_values = values
        if changed:
            self.values_version += 1
            self.values_changed.emit()

    def set_level_visible(self, level: str, visible: bool) -> None:
        if self.visible_levels.get(level) != visible:
            self.visible_levels[level] = bool(visible)
            self.style_changed.emit()

    def set_choropleth_visible(self, visible: bool) -> None:
        if self.choropleth_visible != visible:
            self.choropleth_visible = bool(visible)
            self.style_changed.emit()


def label_point(polygons: list[list[np.ndarray]]) -> tuple[float, float]:
    """A point inside the largest polygon (shapely's representative point), for its label."""
    from shapely.geometry import Polygon

    best = None
    for rings in polygons:
        poly = Polygon(rings[0], rings[1:])
        if best is None or poly.area > best.area:
            best = poly
    if best is None or best.is_empty:
        return float("nan"), float("nan")
    p = best.representative_point()
    return float(p.x), float(p.y)


def make_feature(level: str, fid: int, code: str, name: str, polygons, parent=None) -> Feature:
    """A :class:`Feature` with its bounding box and label point computed."""
    allpts = np.concatenate([r for poly in polygons for r in poly]) if polygons else np.zeros(
        (0, 2))
    if len(allpts):
        bbox = (float(allpts[:, 0].min()), float(allpts[:, 1].min()),
                float(allpts[:, 0].max()), float(allpts[:, 1].max()))
    else:
        bbox = (0.0, 0.0, 0.0, 0.0)
    lx, ly = label_point(polygons) if polygons else (float("nan"), float("nan"))
    return Feature(level, fid, code, name, polygons, lx, ly, bbox, parent)
