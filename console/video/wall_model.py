"""The video wall without views: layouts, which camera on which tile, the camera list.

Layouts are cells of a square grid (row, column, rows spanned, columns spanned); the
first cell of ``1+5`` and ``1+7`` is the large one.  :class:`WallState` is what is
saved per user and per wall (``db.video_layouts``); :class:`CameraDirectory` keeps
the cameras current from the database (re-read on the ``grid_cameras`` notification).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from console.tasks import run_in_thread

log = logging.getLogger(__name__)

Cell = tuple[int, int, int, int]


def _square(n: int) -> tuple[int, list[Cell]]:
    return n, [(r, c, 1, 1) for r in range(n) for c in range(n)]


LAYOUTS: dict[str, tuple[int, list[Cell]]] = {
    "1": _square(1),
    "2x2": _square(2),
    "3x3": _square(3),
    "4x4": _square(4),
    "1+5": (3, [(0, 0, 2, 2), (0, 2, 1, 1), (1, 2, 1, 1), (2, 0, 1, 1), (2, 1, 1, 1),
                (2, 2, 1, 1)]),
    "1+7": (4, [(0, 0, 3, 3), (0, 3, 1, 1), (1, 3, 1, 1), (2, 3, 1, 1), (3, 0, 1, 1),
                (3, 1, 1, 1), (3, 2, 1, 1), (3, 3, 1, 1)]),
}
LAYOUT_LABELS = {"1": "1", "2x2": "2×2", "3x3": "3×3", "4x4": "4×4", "1+5": "1+5", "1+7": "1+7"}
MAX_TILES = 16
DEFAULT_LAYOUT = "2x2"
TOUR_CHOICES_S = (0, 10, 20, 30, 60)


def tile_count(layout: str) -> int:
    return len(LAYOUTS[layout][1])


def page_of(codes: list[str], layout: str, page: int) -> list[str | None]:
    """The cameras of page ``page`` (from 0, wrapping) of ``codes`` in ``layout``."""
    n = tile_count(layout)
    if not codes:
        return [None] * n
    pages = max(1, -(-len(codes) // n))
    start = (page % pages) * n
    chunk: list[str | None] = list(codes[start:start + n])
    return chunk + [None] * (n - len(chunk))


def page_count(codes: list[str], layout: str) -> int:
    return max(1, -(-len(codes) // tile_count(layout)))


@dataclass
class WallState:
    """What the wall shows: a layout, a camera per tile, and the group on tour (if any)."""

    layout: str = DEFAULT_LAYOUT
    tiles: list[str | None] = field(default_factory=lambda: [None] * tile_count(DEFAULT_LAYOUT))
    group: str | None = None
    tour_s: int = 0
    page: int = 0

    def to_json(self) -> dict:
        return {"v": 1, "layout": self.layout, "tiles": list(self.tiles), "group": self.group,
                "tour_s": self.tour_s, "page": self.page}

    @classmethod
    def from_json(cls, data: dict | None) -> WallState:
        """A state from what was saved; anything malformed falls back to the default."""
        state = cls()
        if not isinstance(data, dict):
            return state
        layout = data.get("layout")
        if layout in LAYOUTS:
            state.layout = layout
        n = tile_count(state.layout)
        tiles = data.get("tiles")
        if isinstance(tiles, list):
            clean = [t if isinstance(t, str) and 0 < len(t) <= 40 else None for t in tiles[:n]]
            state.tiles = clean + [None] * (n - len(clean))
        else:
            state.tiles = [None] * n
        group = data.get("group")
        state.group = group if isinstance(group, str) and group else None
        tour = data.get("tour_s")
        state.tour_s = tour if isinstance(tour, int) and 0 <= tour <= 3600 else 0
        page = data.get("page")
        state.page = page if isinstance(page, int) and page >= 0 else 0
        return state

    def with_layout(self, layout: str) -> WallState:
        """The same cameras in another layout (kept in order, cut or padded)."""
        n = tile_count(layout)
        kept = [c for c in self.tiles if c][:n] if n < len(self.tiles) else list(self.tiles)
        tiles = kept[:n] + [None] * (n - len(kept[:n]))
        return WallState(layout, tiles, self.group, self.tour_s, self.page)


def stream_for(camera: dict, focus: bool) -> str:
    """The address a tile opens: the sub-stream in the grid, the main stream in focus
    (each falling back to the other when a camera has only one)."""
    main, sub = camera.get("url") or "", camera.get("sub_url") or ""
    return (main or sub) if focus else (sub or main)


class CameraDirectory(QObject):
    """Every enabled camera, read off the GUI thread; ``loaded`` after each read."""

    loaded = Signal()
    failed = Signal(object)

    def __init__(self, engine, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.cameras: dict[str, dict] = {}
        self.is_loaded = False
        self._loading = False
        self._again = False

    def load(self) -> None:
        from db.cameras import list_cameras

        if self._loading:
            self._again = True
            return
        self._loading = True
        engine = self.engine
        run_in_thread(lambda: list_cameras(engine), self._done, self._failed, context=self)

    def _done(self, rows: list[dict]) -> None:
        self._loading = False
        self.cameras = {r["code"]: r for r in rows}
        self.is_loaded = True
        self.loaded.emit()
        if self._again:
            self._again = False
            self.load()

    def _failed(self, exc: Exception) -> None:
        self._loading = False
        self.is_loaded = True
        log.warning("cameras not read: %s", exc)
        self.failed.emit(exc)

    def on_notified(self, channel: str, _payload: str) -> None:
        """Connect ``LiveFeed.notified``: an administrator changed a camera."""
        if channel == "grid_cameras":
            self.load()

    def groups(self) -> list[str]:
        return sorted({g for c in self.cameras.values() for g in c.get("groups") or []})

    def of_group(self, group: str) -> list[str]:
        return sorted(code for code, c in self.cameras.items() if group in (c.get("groups") or []))

    def get(self, code: str | None) -> dict | None:
        return self.cameras.get(code) if code else None
