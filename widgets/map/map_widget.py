"""The live grid map as the console shows it: canvas, layers, panel, search, worker card.

It observes ``console.map_stores.MapData`` (territory, cases from the queue's
store, the field force from the gateway, cameras) and talks to the window
only by signals:

- ``case_clicked(int)``: the operator clicked a case (the window selects it
  in the queue and the detail); ``focus_case`` does the opposite direction;
- ``camera_chosen(str)``: a camera's code, for the video panel;
- ``report_here(dict)``: right-click "report a case here" with lon/lat
  (WGS-84), grid and an address made of the territory's names;
- ``dispatch_worker(str)``: a highlighted nearest worker was clicked while a
  filed case is selected (the window opens the dispatch dialog with them);
- ``exported(object)`` / ``export_failed(str)``: "export the current view" (the
  **导出** button) wrote a folium situation map of what the map shows
  (``console.situation_export.export_view``, on a worker thread), or could not.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollArea,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from console.tasks import run_in_thread
from maps.layers import WORKER_NO_FIX, WORKER_STATUSES
from widgets.map import style
from widgets.map.basemap_item import BasemapItem
from widgets.map.canvas import MapCanvas
from widgets.map.panel import LayerPanel
from widgets.map.point_items import CameraItem, CaseItems, ClusterItem, OverlayItem, WorkerItem
from widgets.map.static_layers import BoundaryItem, ChoroplethItem, SvgPaths
from widgets.map.trail_item import LIVE_REFRESH_MS, TrailItem

HIT_PX = 9.0
PANEL_MIN_MAP_WIDTH = 900  # narrower maps start with the layer panel folded
FOCUS_M_PER_PX = 1.5  # zoom to a case or worker: about street level
SEVERITY_TEXT = {"normal": "一般", "urgent": "紧急", "emergency": "特急"}


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return tr("无定位")
    if seconds < 90:
        return f"{seconds:.0f} {tr('秒前')}"
    if seconds < 5400:
        return f"{seconds / 60:.0f} {tr('分钟前')}"
    return f"{seconds / 3600:.1f} {tr('小时前')}"


class WorkerCard(QFrame):
    """Name, grid, status and age of the last fix of one worker; follow or dispatch."""

    follow = Signal(int)
    dispatch = Signal(str)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("workerCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.device_id: int | None = None
        self.code: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        top = QHBoxLayout()
        self.title = QLabel("")
        self.title.setObjectName("workerCardTitle")
        close = QToolButton()
        close.setText("×")
        close.clicked.connect(self.hide)
        top.addWidget(self.title, 1)
        top.addWidget(close)
        layout.addLayout(top)
        self.body = QLabel("")
        self.body.setObjectName("workerCardBody")
        layout.addWidget(self.body)
        buttons = QHBoxLayout()
        self.follow_button = QPushButton(tr("跟随"))
        self.follow_button.clicked.connect(lambda: self.follow.emit(self.device_id or 0))
        self.dispatch_button = QPushButton(tr("派遣给他"))
        self.dispatch_button.setObjectName("dispatchToWorker")
        self.dispatch_button.clicked.connect(lambda: self.dispatch.emit(self.code or ""))
        buttons.addWidget(self.follow_button)
        buttons.addWidget(self.dispatch_button)
        layout.addLayout(buttons)
        self.hide()

    def show_worker(self, device_id: int, meta: dict, status: str, age_s: float | None,
                    can_dispatch: bool) -> None:
        self.device_id = device_id
        self.code = meta.get("code")
        name = meta.get("name") or meta.get("identifier") or "?"
        self.title.setText(f"<b>{name}</b>  {meta.get('code') or ''}")
        grid = meta.get("grid_code") or "—"
        lines = [
            f"{tr('网格')}：{grid} {meta.get('grid_name') or ''}",
            f"{tr('状态')}：{tr(style.WORKER_STATUS_LABELS.get(status, status))}",
            f"{tr('最近定位')}：{_age_text(age_s)}",
            f"{tr('终端')}：{meta.get('identifier') or ''}",
        ]
        self.body.setText("\n".join(lines))
        self.dispatch_button.setVisible(can_dispatch)
        self.adjustSize()
        self.show()
        self.raise_()


class MapWidget(QWidget):
    """The map with its tool row; see the module doc for the signals."""

    case_clicked = Signal(int)
    camera_chosen = Signal(str)
    report_here = Signal(dict)
    dispatch_worker = Signal(str)
    exported = Signal(object)  # console.situation_export.ExportSummary
    export_failed = Signal(str)

    def __init__(self, data, lang: str = "zh", basemap: str | None = None, cache_dir=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("liveMap")
        self.data = data
        self.lang = lang
        self.cache_dir = cache_dir
        self.exporting = False
        self.export_dialog: QFileDialog | None = None
        self._export_dir = Path.home()
        self.selected_case: int | None = None
        self.follow: tuple[str, int] | None = None
        self.dispatch_codes: dict[str, int] = {}  # worker code → device id (candidates)
        self._clicked_case: int | None = None
        self._fitted = False
        self._candidates_case: dict | None = None
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(1)  # static layers render one at a time, off the GUI thread
        self._build(basemap, cache_dir)
        self._wire()

    # -- building ----------------------------------------------------------------------------------

    def _build(self, basemap, cache_dir) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        bar = QWidget()
        bar.setObjectName("mapToolbar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(6, 4, 6, 4)
        self.search = QLineEdit()
        self.search.setObjectName("mapSearch")
        self.search.setPlaceholderText(tr("搜索案件编号、网格员、网格编码、地址"))
        self.search.setClearButtonEnabled(True)
        self.zoom_combo = QComboBox()
        self.zoom_combo.setObjectName("mapZoomTo")
        self.zoom_combo.setMinimumWidth(150)
        self.cluster_check = QCheckBox(tr("聚合"))
        self.cluster_check.setChecked(True)
        self.layers_button = QToolButton()
        self.layers_button.setText(tr("图层"))
        self.layers_button.setCheckable(True)
        self.layers_button.setChecked(True)
        row.addWidget(self.search, 3)
        row.addWidget(QLabel(tr("缩放到")))
        row.addWidget(self.zoom_combo, 2)
        self.export_button = QToolButton()
        self.export_button.setObjectName("mapExport")
        self.export_button.setText(tr("导出"))
        self.export_button.setToolTip(tr("把当前视图导出为可分享的网页地图"))
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QMenu(self.export_button)
        export_menu.addAction(tr("导出当前视图为网页…")).triggered.connect(
            lambda: self.ask_export(offline=False))
        export_menu.addAction(tr("导出当前视图为离线网页…")).triggered.connect(
            lambda: self.ask_export(offline=True))
        self.export_button.setMenu(export_menu)
        self.export_menu = export_menu
        self.replay_button = QToolButton()
        self.replay_button.setObjectName("mapReplay")
        self.replay_button.setText(tr("回放"))
        self.replay_button.setToolTip(tr("轨迹回放：任一时刻所有人在哪、案件处于何状态"))
        self.replay_button.setCheckable(True)
        self.replay: object | None = None  # widgets.map.replay_mode.ReplayMode, made on first use
        row.addWidget(self.cluster_check)
        row.addWidget(self.replay_button)
        row.addWidget(self.export_button)
        row.addWidget(self.layers_button)
        layout.addWidget(bar)
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        self.canvas = MapCanvas(self)
        self.canvas.vb.drag_start_hook = self._drag_camera  # a camera onto the video wall
        body.addWidget(self.canvas, 1)
        layout.addLayout(body, 1)
        vb = self.canvas.vb
        d = self.data
        self.basemap = BasemapItem(self.canvas, cache_dir, self.lang)
        paths = SvgPaths()  # the outlines' path strings, shared by both static layers
        self.choropleth = ChoroplethItem(self.canvas, d.territory.layer, self.pool, paths)
        self.boundaries = BoundaryItem(self.canvas, d.territory.layer, self.pool, paths)
        self.cameras = CameraItem(self.canvas, d.cameras.layer)
        self.workers = WorkerItem(self.canvas, d.positions.layer)
        self.trails = TrailItem(d.trails.layer, refresh_ms=LIVE_REFRESH_MS)  # one item
        self.cases = CaseItems(self.canvas, d.cases.layer)
        self.overlay = OverlayItem()
        for item in (self.basemap, self.choropleth, self.boundaries, self.cameras, self.trails,
                     self.workers, *self.cases.items(), self.overlay):
            vb.addItem(item, ignoreBounds=True)
        # The layer panel is a column beside the canvas, not a widget over it: Qt repaints
        # every sibling over a repainted viewport, and the panel's styled list and legend
        # cost more per frame than all the workers together.
        self.panel = LayerPanel()
        column = QWidget()  # the panel at its own height, at the top of the column
        stack = QVBoxLayout(column)
        stack.setContentsMargins(0, 0, 0, 0)
        stack.addWidget(self.panel)
        stack.addStretch(1)
        self.panel_column = QScrollArea()
        self.panel_column.setObjectName("mapPanelColumn")
        self.panel_column.setWidget(column)
        self.panel_column.setWidgetResizable(True)
        self.panel_column.setFrameShape(QFrame.Shape.NoFrame)
        self.panel_column.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.panel_column.setFixedWidth(self.panel.sizeHint().width() + 14)
        body.addWidget(self.panel_column)
        self._body, self._layout = body, layout  # the replay adds its side and bar here
        self.card = WorkerCard(self.canvas)
        self.canvas.opaque_cover = lambda: (self.choropleth.covers_view()
                                            or self.boundaries.covers_view())
        self.basemap.set_spec(basemap)
        self._merge_static()

    def _wire(self) -> None:
        d = self.data
        c = self.canvas
        c.clicked.connect(self._clicked)
        c.hovered.connect(self._hovered)
        c.left.connect(lambda: c.set_readout(""))
        c.user_moved.connect(self._stop_follow)
        c.view_changed.connect(self._view_changed)
        self.search.returnPressed.connect(self.run_search)
        self.zoom_combo.activated.connect(self._zoom_chosen)
        self.cluster_check.toggled.connect(self.set_clustering)
        self.layers_button.toggled.connect(self._panel_toggled)
        self.replay_button.toggled.connect(self.set_replay)
        self.panel.visibility.connect(self.set_layer_visible)
        self.panel.order.connect(self.set_order)
        self.panel.level_visibility.connect(d.territory.layer.set_level_visible)
        self.panel.metric.connect(d.set_metric)
        self.panel.clustering.connect(self.set_clustering)
        self.panel.trail_minutes.connect(lambda m: d.trails.set_window(m * 60.0))
        self.panel.trail_selected_only.connect(lambda _on: self._trail_selection())
        self.choropleth.rendered.connect(self._update_scale)
        d.territory.loaded.connect(self._territory_loaded)
        d.positions.layer.changed.connect(lambda _ids: self._follow_tick())
        d.cases.layer.changed.connect(lambda _ids: self._follow_tick())
        self.card.follow.connect(lambda did: self.start_follow("worker", did))
        self.card.dispatch.connect(self.dispatch_worker.emit)
        self.basemap.signals.note_changed.connect(c.set_note)
        self.basemap.signals.datum_known.connect(d.set_datum)
        self.basemap.signals.datum_known.connect(lambda _datum: self._merge_static())
        self._card_timer = QTimer(self, interval=1000)
        self._card_timer.timeout.connect(self._refresh_card)
        self._card_timer.start()
        self._hover_timer = QTimer(self, singleShot=True, interval=60)
        self._hover_timer.timeout.connect(self._hover_now)
        self._hover_at = None
        if d.territory.is_loaded:
            self._territory_loaded()

    # -- layers ------------------------------------------------------------------------------------

    def _items_of(self, key: str) -> list:
        return {"cases": self.cases.items(), "workers": [self.workers], "trails": [self.trails],
                "cameras": [self.cameras], "boundaries": [self.boundaries],
                "choropleth": [self.choropleth], "basemap": [self.basemap]}[key]

    def set_layer_visible(self, key: str, visible: bool) -> None:
        """Show or hide one layer (the panel's check boxes call this)."""
        layer = {"cases": self.data.cases.layer, "workers": self.data.positions.layer,
                 "cameras": self.data.cameras.layer, "trails": self.data.trails.layer}.get(key)
        if layer is not None:
            layer.set_visible(visible)
        elif key == "choropleth":
            self.data.territory.layer.set_choropleth_visible(visible)
        for item in self._items_of(key):
            item.setVisible(visible)
            if visible and hasattr(item, "invalidate"):
                item.invalidate()
        self._merge_static()
        self.panel.set_checked(key, visible)

    def layer_visible(self, key: str) -> bool:
        return all(item.isVisible() for item in self._items_of(key))

    def set_order(self, keys_top_first: list[str]) -> None:
        """Stack the layers as listed, the first on top."""
        base = {"basemap": -100}
        for rank, key in enumerate(reversed(keys_top_first)):
            z = base.get(key, rank * 10)
            for k, item in enumerate(self._items_of(key)):
                item.setZValue(z + k)
        self.overlay.setZValue(1000)
        self._merge_static()

    def _merge_static(self) -> None:
        """One image for the choropleth and the boundaries when nothing shown lies between.

        In the default order they are neighbours; drawn into the boundaries'
        image, a frame blits one image instead of two.  Reordered apart (or
        one hidden), each draws its own again.
        """
        low, high = self.choropleth, self.boundaries
        between = [item for key in ("cases", "workers", "trails", "cameras", "basemap")
                   for item in self._items_of(key)
                   if item.isVisible() and low.zValue() < item.zValue() < high.zValue()]
        together = (low.isVisible() and high.isVisible() and low.zValue() < high.zValue()
                    and not between)
        high.merge(low if together else None)
        # The lowest static image over no basemap is made opaque (copied, not blended).
        basemap_shows = self.basemap.isVisible() and self.basemap.source is not None
        shown = [item for item in (low, high) if item.isVisible() and item.host is None]
        bottom = min(shown, key=lambda item: item.zValue()) if shown else None
        under = bottom is not None and any(
            item.isVisible() and item.zValue() < bottom.zValue()
            for key in ("cases", "workers", "trails", "cameras") for item in self._items_of(key))
        for item in (low, high):
            lowest = item is bottom and not basemap_shows and not under
            item.set_backdrop(style.BACKGROUND if lowest else None)

    def set_clustering(self, on: bool) -> None:
        for box in (self.cluster_check, self.panel.cluster_box):
            if box.isChecked() != on:
                box.blockSignals(True)
                box.setChecked(on)
                box.blockSignals(False)
        self.cases.set_clustering(on)

    def _update_scale(self) -> None:
        title = style.CHOROPLETH_TITLES.get(self.data.metric, "")
        self.panel.set_scale(title, self.choropleth.breaks)

    # -- the view ----------------------------------------------------------------------------------

    def _territory_loaded(self) -> None:
        layer = self.data.territory.layer
        self.zoom_combo.clear()
        for level in ("district", "street"):
            for f in sorted(layer.features[level], key=lambda f: f.code):
                prefix = "" if level == "district" else "　"
                self.zoom_combo.addItem(prefix + f.name, f.code)
        if not self._fitted:
            self.zoom_home()

    def zoom_home(self) -> None:
        """Show the whole territory (or the cases and workers when there is none)."""
        bounds = self.data.territory.layer.bounds() or self.data.positions.layer.bounds() or (
            self.data.cases.layer.bounds())
        if bounds is not None:
            self.canvas.fit(bounds, padding=0.03)
            self._fitted = True

    def zoom_to_code(self, code: str) -> bool:
        """District, street, community or grid by code."""
        f = self.data.territory.layer.feature(code)
        if f is None:
            return False
        self.canvas.fit(f.bbox)
        self._fitted = True
        return True

    def _zoom_chosen(self, index: int) -> None:
        code = self.zoom_combo.itemData(index)
        if code:
            self.zoom_to_code(code)

    def zoom_to_case(self, case_id: int) -> bool:
        pos = self.data.cases.layer.position(case_id)
        if pos is None:
            return False
        self.canvas.set_view(pos[0], pos[1], min(self.canvas.m_per_px(), FOCUS_M_PER_PX))
        self._fitted = True
        return True

    def zoom_to_worker(self, device_id: int) -> bool:
        pos = self.data.positions.layer.position(device_id)
        if pos is None or not np.isfinite(pos[0]):
            return False
        self.canvas.set_view(pos[0], pos[1], min(self.canvas.m_per_px(), FOCUS_M_PER_PX))
        self._fitted = True
        return True

    def set_center_zoom(self, lon: float, lat: float, zoom: float) -> None:
        x, y = self.data.projector.forward(lon, lat)
        self.canvas.set_zoom(x, y, zoom)
        self._fitted = True

    def centre_lonlat(self) -> tuple[float, float]:
        """WGS-84 lon/lat of the view's centre."""
        return self.data.projector.inverse(*self.canvas.centre())

    def _view_changed(self) -> None:
        """Nothing to do here yet: every item follows the view by itself."""

    # -- selection both ways -----------------------------------------------------------------------

    def focus_case(self, case_id: int) -> None:
        """The queue selected a case: highlight it and centre on it (not when it was our click)."""
        self.selected_case = case_id
        pos = self.data.cases.layer.position(case_id)
        self.overlay.set_selected(pos)
        if self._clicked_case == case_id:
            self._clicked_case = None
            return
        if pos is not None:
            _x0, _y0, _x1, _y1 = self.canvas.view_rect()
            m = self.canvas.m_per_px()
            if m > 6.0:
                self.canvas.set_view(pos[0], pos[1], 3.0)
            else:
                self.canvas.pan_to(*pos)

    def show_case_context(self, case: dict | None, may_dispatch: bool) -> None:
        """Dispatch on the map: for a filed case, the nearest available workers with lines."""
        self.dispatch_codes = {}
        candidates = []
        if case and may_dispatch and case.get("status") == "filed":
            by_worker = {m.get("worker_id"): did for did, m in self.data.positions.meta.items()}
            for w in case.get("workers", []):
                if not w.get("online"):
                    continue
                did = by_worker.get(w.get("id"))
                pos = self.data.positions.layer.position(did) if did is not None else None
                if pos is None or not np.isfinite(pos[0]):
                    continue
                self.dispatch_codes[w["code"]] = did
                candidates.append((pos[0], pos[1], f"{w['name']} {w['metres']:.0f} m"))
        self._candidates_case = case
        self.overlay.set_candidates(candidates)
        if case and case.get("id") == self.selected_case:
            self.overlay.set_selected(self.data.cases.layer.position(case["id"]))

    def clear_selection(self) -> None:
        self.selected_case = None
        self.dispatch_codes = {}
        self.overlay.set_selected(None)
        self.overlay.set_candidates([])

    # -- hit tests ---------------------------------------------------------------------------------

    def hit(self, x: float, y: float) -> tuple[str, object] | None:
        """What lies under a canvas point: ("case", id), ("cluster", rows), ("worker", device id)
        or ("camera", camera id); None for nothing within a few pixels."""
        m = self.canvas.m_per_px()
        tol = HIT_PX * m
        cases = self.data.cases.layer
        if self.cases.scatter.isVisible() and len(self.cases.rows_shown):
            rows = self.cases.rows_shown
            rows = rows[rows < len(cases)]
            d2 = (cases.x[rows] - x) ** 2 + (cases.y[rows] - y) ** 2
            if len(d2) and d2.min() <= (tol * 1.2) ** 2:
                return "case", int(cases.ids[rows[int(np.argmin(d2))]])
        cl = self.cases.clusters
        if self.cases.cluster_item.isVisible() and cl is not None and len(cl):
            d2 = (cl.x - x) ** 2 + (cl.y - y) ** 2
            k = int(np.argmin(d2))
            if d2[k] <= (ClusterItem.radius(int(cl.counts[k])) * m) ** 2:
                return "cluster", k
        workers = self.data.positions.layer
        if self.workers.isVisible() and len(workers):
            ok = (workers.flags & WORKER_NO_FIX) == 0
            d2 = np.where(ok, (workers.x - x) ** 2 + (workers.y - y) ** 2, np.inf)
            k = int(np.argmin(d2))
            if d2[k] <= tol**2:
                return "worker", int(workers.ids[k])
        cams = self.data.cameras.layer
        if (self.cameras.isVisible() and len(cams)
                and m <= CameraItem.SHOW_BELOW_M_PER_PX):
            d2 = (cams.x - x) ** 2 + (cams.y - y) ** 2
            k = int(np.argmin(d2))
            if d2[k] <= (tol * 1.3) ** 2:
                return "camera", int(cams.ids[k])
        return None

    def _clicked(self, pos, button, screen_pos) -> None:
        self.canvas.setFocus()
        x, y = pos.x(), pos.y()
        found = self.hit(x, y)
        if button == Qt.MouseButton.RightButton:
            self._context_menu(x, y, found, QPoint(int(screen_pos.x()), int(screen_pos.y())))
            return
        if button == Qt.MouseButton.LeftButton and self.in_replay:
            self.replay.click(x, y)  # a replayed point: its time and attributes
            return
        if button != Qt.MouseButton.LeftButton or found is None:
            return
        self.click_item(found)

    def click_item(self, found: tuple[str, object]) -> None:
        """Act as a left click on a hit (tests call it with ``hit``'s answer)."""
        kind, key = found
        if kind == "case":
            self._clicked_case = int(key)
            self.focus_case(int(key))
            self.case_clicked.emit(int(key))
        elif kind == "cluster":
            cl = self.cases.clusters
            self.canvas.set_view(float(cl.x[key]), float(cl.y[key]),
                                 self.canvas.m_per_px() / 3.0)
        elif kind == "worker":
            self.show_worker(int(key))
            meta = self.data.positions.meta.get(int(key), {})
            if meta.get("code") in self.dispatch_codes:
                self.dispatch_worker.emit(meta["code"])
        elif kind == "camera":
            meta = self.data.cameras.meta.get(int(key), {})
            if meta.get("code"):
                self.camera_chosen.emit(meta["code"])

    def camera_drag_mime(self, x: float, y: float):
        """The drag payload of the camera under a canvas point (the video wall's), or None."""
        from PySide6.QtCore import QMimeData

        from widgets.video.tile import CAMERA_MIME

        found = self.hit(x, y)
        if found is None or found[0] != "camera":
            return None
        code = self.data.cameras.meta.get(int(found[1]), {}).get("code")
        if not code:
            return None
        mime = QMimeData()
        mime.setData(CAMERA_MIME, f"{code}\n-1".encode())
        mime.setText(code)
        return mime

    def _drag_camera(self, pos) -> bool:
        """A left drag that starts on a camera drags it (onto a tile of the video wall)."""
        from PySide6.QtGui import QDrag

        mime = self.camera_drag_mime(pos.x(), pos.y())
        if mime is None:
            return False
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.DropAction.CopyAction | Qt.DropAction.MoveAction)
        return True

    def show_worker(self, device_id: int) -> None:
        meta = self.data.positions.meta.get(device_id, {})
        layer = self.data.positions.layer
        row = layer.row_of(device_id)
        status = WORKER_STATUSES[int(layer.status[row])] if row >= 0 else "offline"
        self.card.show_worker(device_id, meta, status, self.data.positions.fix_age_s(device_id),
                              meta.get("code") in self.dispatch_codes)
        self.card.move(12, max(12, self.canvas.height() - self.card.height() - 48))
        self._trail_selection()

    def selected_workers(self) -> list[int]:
        """The workers the operator picked on the map: the one in the card, the followed one."""
        out = []
        if self.card.isVisible() and self.card.device_id is not None:
            out.append(int(self.card.device_id))
        if self.follow is not None and self.follow[0] == "worker":
            out.append(int(self.follow[1]))
        return out

    def _trail_selection(self) -> None:
        """Trails of every worker, or (\"仅所选\") only of the selected ones."""
        layer = self.data.trails.layer
        wanted = sorted(set(self.selected_workers())) if self.panel.trail_only.isChecked() \
            else None
        held = None if layer.selected is None else layer.selected.tolist()
        if wanted != held:
            layer.set_selected(wanted)

    def _refresh_card(self) -> None:
        if self.card.isVisible() and self.card.device_id is not None:
            self.show_worker(self.card.device_id)

    # -- context menu, follow ----------------------------------------------------------------------

    def _context_menu(self, x: float, y: float, found, at: QPoint) -> None:
        menu = QMenu(self)
        lon, lat = self.data.projector.inverse(x, y)
        report = menu.addAction(tr("在此上报案件"))
        report.triggered.connect(lambda: self.report_here.emit(self.place_at(x, y)))
        if found and found[0] == "worker":
            name = self.data.positions.meta.get(found[1], {}).get("name") or ""
            menu.addAction(f"{tr('跟随')} {name}").triggered.connect(
                lambda: self.start_follow("worker", int(found[1])))
        if found and found[0] == "case":
            menu.addAction(tr("跟随此案件")).triggered.connect(
                lambda: self.start_follow("case", int(found[1])))
        if self.follow is not None:
            menu.addAction(tr("停止跟随")).triggered.connect(self._stop_follow)
        menu.addAction(f"{lon:.6f}, {lat:.6f}").setEnabled(False)
        menu.popup(at)
        self._menu = menu

    def place_at(self, x: float, y: float) -> dict:
        """What the report dialog is filled with for a canvas point."""
        lon, lat = self.data.projector.inverse(x, y)
        layer = self.data.territory.layer
        grid = layer.grid_at(x, y)
        names = []
        grid_code = None
        if grid is not None:
            grid_code = grid.code
            community = layer.feature(grid.parent or "")
            street = layer.feature(community.parent) if community and community.parent else None
            district = layer.feature(street.parent) if street and street.parent else None
            names = [f.name for f in (district, street, community) if f is not None]
            names.append(grid.name)
        return {"lon": float(lon), "lat": float(lat), "grid": grid_code,
                "address": " ".join(names) + (f"（{tr('网格')} {grid_code}）" if grid_code else "")}

    def start_follow(self, kind: str, key: int) -> None:
        self.follow = (kind, int(key))
        self._follow_tick()
        self._trail_selection()

    def _stop_follow(self) -> None:
        self.follow = None
        self._trail_selection()

    def _follow_tick(self) -> None:
        if self.follow is None or self.in_replay:
            return
        kind, key = self.follow
        layer = self.data.positions.layer if kind == "worker" else self.data.cases.layer
        pos = layer.position(key)
        if pos is not None and np.isfinite(pos[0]):
            self.canvas.pan_to(*pos)

    # -- hover -------------------------------------------------------------------------------------

    def _hovered(self, pos) -> None:
        self._hover_at = (pos.x(), pos.y(), QCursor.pos())
        if not self._hover_timer.isActive():
            self._hover_timer.start()

    def _hover_now(self) -> None:
        if self._hover_at is None:
            return
        x, y, screen = self._hover_at
        lon, lat = self.data.projector.inverse(x, y)
        grid = self.data.territory.layer.grid_at(x, y)
        text = f"{lon:.5f}°E  {lat:.5f}°N  WGS-84"
        if grid is not None:
            text += f"   {tr('网格')} {grid.code} {grid.name}"
        self.canvas.set_readout(text)
        tip = self.tooltip_for(self.hit(x, y))
        if tip:
            QToolTip.showText(screen, tip, self.canvas)
        else:
            QToolTip.hideText()

    def tooltip_for(self, found) -> str:
        if found is None:
            return ""
        kind, key = found
        if kind == "case":
            row = self.data.cases.store.get(int(key))
            if row is None:
                return ""
            sev = tr(SEVERITY_TEXT.get(row.severity, row.severity))
            status = tr(style.CASE_STATUS_LABELS.get(row.status, row.status))
            return (f"{row.number}  {row.category_name}\n{status} · {sev}"
                    f"{' · ' + tr('超期') if row.overdue(time.time()) else ''}\n"
                    f"{row.address or ''}")
        if kind == "cluster":
            cl = self.cases.clusters
            rows = cl.members[int(key)]
            cases = self.data.cases
            lines = []
            for r in rows[:12]:
                row = cases.store.get(int(cases.layer.ids[r]))
                if row is not None:
                    lines.append(f"{row.number} {row.category_name}")
            more = len(rows) - len(lines)
            if more > 0:
                lines.append(f"… {tr('另有')} {more}")
            return f"{len(rows)} {tr('件案件')}\n" + "\n".join(lines)
        if kind == "worker":
            meta = self.data.positions.meta.get(int(key), {})
            age = _age_text(self.data.positions.fix_age_s(int(key)))
            name = meta.get("name") or meta.get("identifier")
            return f"{name}  {meta.get('grid_code') or ''}\n{age}"
        if kind == "camera":
            meta = self.data.cameras.meta.get(int(key), {})
            return f"{meta.get('code')} {meta.get('name')}\n{tr('点击在视频面板打开')}"
        return ""

    # -- search ------------------------------------------------------------------------------------

    def search_results(self, text: str) -> list[tuple[str, tuple[str, object]]]:
        """(label, target) for a case number, worker name or code, grid/unit code or address."""
        text = text.strip()
        if not text:
            return []
        out: list[tuple[str, tuple[str, object]]] = []
        store = self.data.cases.store
        for row in store.rows.values():
            if row.number == text or (len(text) >= 4 and text in row.number):
                out.append((f"{tr('案件')} {row.number} {row.category_name}", ("case", row.id)))
        for did in self.data.positions.find(text):
            meta = self.data.positions.meta[did]
            out.append((f"{tr('网格员')} {meta.get('name')} {meta.get('code') or ''}",
                        ("worker", did)))
        for f in self.data.territory.layer.search(text):
            out.append((f"{tr(style.LEVEL_LABELS[f.level])} {f.code} {f.name}", ("code", f.code)))
        if len(out) < 12:
            for row in store.rows.values():
                if row.address and text in row.address:
                    out.append((f"{row.address} — {row.number}", ("case", row.id)))
                    if len(out) >= 20:
                        break
        return out[:20]

    def go_to(self, target: tuple[str, object]) -> None:
        kind, key = target
        if kind == "case":
            self.zoom_to_case(int(key))
            self._clicked_case = int(key)
            self.focus_case(int(key))
            self.case_clicked.emit(int(key))
        elif kind == "worker":
            self.zoom_to_worker(int(key))
            self.show_worker(int(key))
        elif kind == "code":
            self.zoom_to_code(str(key))

    def run_search(self) -> None:
        results = self.search_results(self.search.text())
        if not results:
            self.canvas.set_note(tr("未找到") + f"：{self.search.text().strip()}")
            QTimer.singleShot(3000, self.canvas,
                              lambda: self.canvas.set_note(self.basemap.note))
            return
        if len(results) == 1:
            self.go_to(results[0][1])
            return
        menu = QMenu(self)
        for text, target in results:
            menu.addAction(text).triggered.connect(lambda _=False, t=target: self.go_to(t))
        menu.popup(self.search.mapToGlobal(self.search.rect().bottomLeft()))
        self._menu = menu

    # -- export the current view --------------------------------------------------------------

    def view_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) WGS-84 degrees of what the map shows.

        The view is a rectangle in the basemap's datum; its corners are taken
        back to WGS-84 (the database's), and the box is what contains them all,
        kept inside the world a web map can show.
        """
        x0, y0, x1, y1 = self.canvas.view_rect()
        lon, lat = self.data.projector.inverse(np.array([x0, x1, x0, x1]),
                                               np.array([y0, y0, y1, y1]))
        west, east = max(-180.0, float(np.min(lon))), min(180.0, float(np.max(lon)))
        south, north = max(-85.0, float(np.min(lat))), min(85.0, float(np.max(lat)))
        return west, south, east, north

    def ask_export(self, offline: bool) -> None:
        """Ask where to write the page (a file dialog, not blocking), then export there."""
        if self.exporting:
            return
        stamp = time.strftime("%Y%m%d-%H%M")
        suggested = self._export_dir / f"situation-{stamp}.html"
        dialog = QFileDialog(self, tr("导出当前视图"), str(suggested), tr("网页") + " (*.html)")
        dialog.setObjectName("mapExportDialog")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.setDefaultSuffix("html")
        dialog.fileSelected.connect(lambda path: self.export_current_view(path, offline))
        dialog.finished.connect(dialog.deleteLater)
        self.export_dialog = dialog
        dialog.open()

    def export_current_view(self, path: str, offline: bool = False) -> None:
        """Write the situation inside the current view to ``path`` (folium, on a worker thread).

        What is exported is read from the database, not from this screen: the
        page holds the boundaries, open cases, workers and cameras inside the
        view's box as they are when it is written, over the map's own basemap.
        Ends with ``exported(summary)`` or ``export_failed(message)``, and a note.
        """
        if self.exporting:
            return
        from console.situation_export import export_view
        from db.errors import GridError

        engine, bounds, lang = self.data.engine, self.view_bounds(), self.lang
        basemap, cache_dir = self.basemap.spec, self.cache_dir
        self.exporting = True
        self.export_button.setEnabled(False)
        self.canvas.set_note(tr("正在导出当前视图…"))
        self._export_dir = Path(path).expanduser().resolve().parent

        def failed(exc: Exception) -> None:
            text = exc.message(lang) if isinstance(exc, GridError) else str(exc)
            self._export_finished(f"{tr('导出失败')}：{text}")
            self.export_failed.emit(text)

        def done(summary) -> None:
            self._export_finished(f"{tr('已导出')}：{summary.path}")
            self.exported.emit(summary)

        run_in_thread(lambda: export_view(engine, path, bounds, basemap=basemap, offline=offline,
                                          lang=lang, cache_dir=cache_dir),
                      done, failed, context=self)

    def _export_finished(self, note: str) -> None:
        self.exporting = False
        self.export_button.setEnabled(True)
        self.canvas.set_note(note)
        # with the canvas as context: dropped if the map is closed before it fires
        QTimer.singleShot(6000, self.canvas, lambda: self.canvas.set_note(self.basemap.note))

    # -- state -------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Everything loaded and drawn for the current view (screenshots and tests wait on it)."""
        return (self.data.is_loaded and self.boundaries.ready and self.choropleth.ready
                and not self.cases.pending and self.basemap.ready
                and self.data.trails.is_loaded and not self.trails.pending)

    def _panel_toggled(self, on: bool) -> None:
        self._panel_chosen = True
        self.panel_column.setVisible(on)

    def _place_panel(self) -> None:
        """The panel is a column on the right; a narrow map starts with it folded (the 图层
        button opens it), so the map itself keeps at least ``PANEL_MIN_MAP_WIDTH``."""
        if not getattr(self, "_panel_chosen", False) and not self.in_replay:
            wide = self.width() - self.panel_column.width() >= PANEL_MIN_MAP_WIDTH
            self.layers_button.blockSignals(True)
            self.layers_button.setChecked(wide)
            self.layers_button.blockSignals(False)
            self.panel_column.setVisible(wide)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._place_panel()

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self._place_panel()
        if not self._fitted:
            QTimer.singleShot(0, self.zoom_home)

    # -- replay ------------------------------------------------------------------------------

    @property
    def in_replay(self) -> bool:
        return self.replay is not None and self.replay.active

    def set_replay(self, on: bool, **window) -> None:
        """Enter the replay (``window``: t0, t1, at, who, value; default today so far,
        everyone) or return to live."""
        if on:
            if self.replay is None:
                from widgets.map.replay_mode import ReplayMode

                self.replay = ReplayMode(self)
                self._body.addWidget(self.replay.side)
                self._layout.addWidget(self.replay.bar)
            self.panel_column.setVisible(False)
            self.layers_button.setEnabled(False)
            self.replay.enter(**window)
        elif self.replay is not None:
            self.replay.leave()
            self.layers_button.setEnabled(True)
            self.panel_column.setVisible(self.layers_button.isChecked())
        if self.replay_button.isChecked() != on:
            self.replay_button.blockSignals(True)
            self.replay_button.setChecked(on)
            self.replay_button.blockSignals(False)

    def shutdown(self) -> None:
        if self.replay is not None:
            self.replay.shutdown()
        self._card_timer.stop()
        self.basemap.shutdown()
        for item in (self.choropleth, self.boundaries):
            item.close_renders()
        self.pool.clear()  # renders not yet started are not wanted any more
        self.pool.waitForDone(3000)
        self.data.stop()
