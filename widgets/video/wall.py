"""The video wall: layouts of tiles, the camera list, groups on tour, focus, nearby cameras.

Layouts 1, 2×2, 3×3, 4×4, 1+5 and 1+7 (``console.video.wall_model``).  A camera goes
on a tile by dragging it from the list (or another tile) or by clicking it on the map
(the selected tile, else the first free one).  Double-click focuses a tile: it takes
the whole wall and switches to the camera's main stream; double-click again goes back
to the grid and the sub-stream.  The large tile of 1, 1+5 and 1+7 shows the main stream
too.  A group fills the layout page by page, and with a
tour the next page comes every N seconds.  Tiles not on screen are not decoded.

The wall never reads the database itself: the window hands it the camera directory,
the nearby cameras of the selected case, and takes its snapshots and layout changes.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console.video.decoder import Frame
from console.video.demo import resolve
from console.video.wall_model import (
    LAYOUT_LABELS,
    LAYOUTS,
    MAX_TILES,
    TOUR_CHOICES_S,
    CameraDirectory,
    WallState,
    page_count,
    page_of,
    stream_for,
    tile_count,
)
from widgets.video.tile import CAMERA_MIME, VideoTile, bilingual

CODE_ROLE = Qt.ItemDataRole.UserRole
MAIN_STREAM_LAYOUTS = ("1", "1+5", "1+7")  # their first tile is large: the main stream


class CameraList(QListWidget):
    """The cameras, each draggable onto a tile (and double-click puts it on the wall)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDragEnabled(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)

    def mimeTypes(self) -> list[str]:
        return [CAMERA_MIME]

    def mimeData(self, items) -> QMimeData:
        mime = QMimeData()
        if items:
            code = items[0].data(CODE_ROLE)
            mime.setData(CAMERA_MIME, f"{code}\n-1".encode())
            mime.setText(code)
        return mime


class VideoWall(QWidget):
    """The wall; ``state_changed`` when what it shows changes (the window saves it)."""

    state_changed = Signal(object)  # WallState
    snapshot_requested = Signal(str, object)  # camera code, Frame
    message = Signal(str)

    def __init__(self, directory: CameraDirectory, lang: str = "zh",
                 parent: QWidget | None = None, resolver=resolve):
        super().__init__(parent)
        self.directory = directory
        self.lang = lang
        self.t = bilingual(lang)
        self.resolver = resolver
        self.state = WallState()
        # What the operator had before cameras were put up for them (an emergency, a
        # case's nearby cameras): 恢复原布局 brings it back.
        self.before_override: WallState | None = None
        self.focus_index: int | None = None
        self.selected: int | None = None
        self.tiles: list[VideoTile] = []
        self.nearby: list[dict] = []
        self.nearby_case: str | None = None
        self.tour = QTimer(self)
        self.tour.timeout.connect(self.next_page)
        self._build()
        directory.loaded.connect(self._cameras_loaded)
        if directory.is_loaded:
            self._cameras_loaded()
        self.apply_state(self.state, emit=False)

    # -- building -------------------------------------------------------------------------------

    def _build(self) -> None:
        t = self.t
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        self.layout_box = QComboBox()
        self.layout_box.setObjectName("videoLayout")
        for key, text in LAYOUT_LABELS.items():
            self.layout_box.addItem(text, key)
        self.layout_box.activated.connect(
            lambda i: self.set_layout(self.layout_box.itemData(i)))
        self.group_box = QComboBox()
        self.group_box.setObjectName("videoGroup")
        self.group_box.setMinimumContentsLength(8)
        self.group_box.activated.connect(self._group_chosen)
        self.tour_box = QComboBox()
        self.tour_box.setObjectName("videoTour")
        for s in TOUR_CHOICES_S:
            self.tour_box.addItem(t("不轮巡", "no tour") if s == 0 else t(f"轮巡 {s} 秒",
                                                                        f"tour {s} s"), s)
        self.tour_box.activated.connect(lambda i: self.set_tour(self.tour_box.itemData(i)))
        self.prev_button = QPushButton("◀")
        self.prev_button.clicked.connect(self.prev_page)
        self.page_label = QLabel("")
        self.next_button = QPushButton("▶")
        self.next_button.clicked.connect(self.next_page)
        self.snapshot_button = QPushButton(t("截图→案件", "Snapshot → case"))
        self.snapshot_button.setObjectName("videoSnapshot")
        self.snapshot_button.setToolTip(t("把选中画面的当前帧附加到选中的案件",
                                          "Attach the selected tile's frame to the selected case"))
        self.snapshot_button.clicked.connect(lambda: self.request_snapshot(self.selected))
        self.restore_button = QPushButton(t("恢复原布局", "Back to my layout"))
        self.restore_button.setObjectName("videoRestore")
        self.restore_button.setToolTip(t("回到上墙前的布局和画面",
                                         "The layout and cameras from before they were put up"))
        self.restore_button.clicked.connect(self.restore_layout)
        self.restore_button.hide()
        for w in (QLabel(t("布局", "Layout")), self.layout_box, self.group_box, self.tour_box,
                  self.prev_button, self.page_label, self.next_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.restore_button)
        bar.addWidget(self.snapshot_button)
        self.bar = bar
        outer.addLayout(bar)

        split = QSplitter(Qt.Orientation.Horizontal)
        side = QWidget()
        sv = QVBoxLayout(side)
        sv.setContentsMargins(0, 0, 0, 0)
        self.nearby_label = QLabel(t("附近摄像头：选中案件后显示", "Nearby: select a case"))
        self.nearby_label.setWordWrap(True)
        self.nearby_list = CameraList()
        self.nearby_list.setObjectName("nearbyCameras")
        self.nearby_list.setMaximumHeight(150)
        self.nearby_list.itemDoubleClicked.connect(
            lambda it: self.show_camera(it.data(CODE_ROLE)))
        self.nearby_button = QPushButton(t("附近摄像头全部上墙", "All nearby onto the wall"))
        self.nearby_button.clicked.connect(self.load_nearby)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText(t("搜索摄像头", "Find a camera"))
        self.filter_edit.textChanged.connect(self._fill_list)
        self.camera_list = CameraList()
        self.camera_list.setObjectName("cameraList")
        self.camera_list.itemDoubleClicked.connect(
            lambda it: self.show_camera(it.data(CODE_ROLE)))
        for w in (self.nearby_label, self.nearby_list, self.nearby_button, self.filter_edit,
                  self.camera_list):
            sv.addWidget(w)
        self.grid_host = QWidget()
        self.grid_host.setObjectName("videoGrid")
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setSpacing(2)
        split.addWidget(side)
        split.addWidget(self.grid_host)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([200, 800])
        self.split = split
        outer.addWidget(split, 1)

    def _tile(self, i: int) -> VideoTile:
        while len(self.tiles) <= i:
            tile = VideoTile(len(self.tiles), self.lang, self.grid_host)
            tile.focus_toggled.connect(self.toggle_focus)
            tile.camera_dropped.connect(self._dropped)
            tile.snapshot_requested.connect(self.request_snapshot)
            tile.clear_requested.connect(lambda k: self.set_tile(k, None))
            tile.selected.connect(self.select_tile)
            tile.hide()
            self.tiles.append(tile)
        return self.tiles[i]

    # -- layout and tiles -----------------------------------------------------------------------

    def set_layout(self, layout: str) -> None:
        if layout not in LAYOUTS:
            return
        self.focus_index = None
        self.state = self.state.with_layout(layout)
        if self.state.group:
            self.state.tiles = page_of(self.directory.of_group(self.state.group), layout,
                                       self.state.page)
        self._arrange()
        self._changed()

    def _arrange(self) -> None:
        """Place the tiles of the layout (or the focused one alone); hide the rest."""
        n_side, cells = LAYOUTS[self.state.layout]
        while self.grid.count():
            self.grid.takeAt(0)
        for r in range(4):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        shown = set()
        if self.focus_index is not None:
            tile = self._tile(self.focus_index)
            self.grid.addWidget(tile, 0, 0, 1, 1)
            self.grid.setRowStretch(0, 1)
            self.grid.setColumnStretch(0, 1)
            shown.add(self.focus_index)
        else:
            for r in range(n_side):
                self.grid.setRowStretch(r, 1)
                self.grid.setColumnStretch(r, 1)
            for i, (r, c, rs, cs) in enumerate(cells):
                self.grid.addWidget(self._tile(i), r, c, rs, cs)
                shown.add(i)
        for i in range(max(MAX_TILES, len(self.tiles))):
            if i >= len(self.tiles) and i not in shown:
                continue
            tile = self._tile(i)
            if i in shown:
                code = self.state.tiles[i] if i < len(self.state.tiles) else None
                self._assign(tile, code, focus=self.on_main(i))
                tile.wanted = True
                tile.show()
            else:
                tile.wanted = False
                tile.hide()
                if i >= len(self.state.tiles):
                    tile.set_camera(None, None)
        self.layout_box.setCurrentIndex(max(0, self.layout_box.findData(self.state.layout)))
        self._update_pager()

    def on_main(self, index: int) -> bool:
        """Whether tile ``index`` shows the main stream: the focused tile, the one tile of
        layout 1 and the large tile of 1+5 and 1+7; every other tile the sub-stream."""
        if self.focus_index is not None:
            return index == self.focus_index
        return index == 0 and self.state.layout in MAIN_STREAM_LAYOUTS

    def _assign(self, tile: VideoTile, code: str | None, focus: bool) -> None:
        camera = self.directory.get(code)
        if code and camera is None:
            camera = {"code": code, "name": self.t("（未知或已停用）", "(unknown or disabled)"),
                      "url": "", "sub_url": ""}
        url = None
        if camera is not None:
            raw = stream_for(camera, focus)
            url = self.resolver(raw) if raw else None
        tile.set_camera(camera, url, focus)

    def set_tile(self, index: int, code: str | None) -> None:
        n = tile_count(self.state.layout)
        if not 0 <= index < n:
            return
        self.state.tiles[index] = code
        self.state.group = None  # a hand-placed camera ends the group's tour
        self.tour.stop()
        self._assign(self._tile(index), code, focus=self.on_main(index))
        self._sync_group_box()
        self._changed()

    def _dropped(self, index: int, code: str, origin: int) -> None:
        if 0 <= origin < len(self.state.tiles) and origin != index:
            # Moved from another tile: swap, so nothing is lost.
            self.state.tiles[origin] = self.state.tiles[index]
            self._assign(self._tile(origin), self.state.tiles[origin], self.on_main(origin))
        self.set_tile(index, code)

    def select_tile(self, index: int | None) -> None:
        self.selected = index
        for t in self.tiles:
            t.is_selected = t.index == index
            t.update()

    def show_camera(self, code: str) -> None:
        """Put a camera on the wall: the selected tile (which it then leaves: the next goes to
        a free one), else the first free one, else the first; a camera already on screen is
        just selected."""
        if not code:
            return
        if code in self.state.tiles:
            self.select_tile(self.state.tiles.index(code))
            return
        n = tile_count(self.state.layout)
        if self.selected is not None and self.selected < n:
            index = self.selected
        elif None in self.state.tiles[:n]:
            index = self.state.tiles.index(None)
        else:
            index = 0
        self.state.group = None
        if self.focus_index is not None:
            self.focus_index = index
            self.state.tiles[index] = code
            self._arrange()
            self._changed()
        else:
            self.set_tile(index, code)
        self.select_tile(None)

    def show_cameras(self, codes: list[str], layout: str | None = None) -> None:
        """Fill the wall with ``codes`` (a case's nearby cameras, an emergency)."""
        if layout is None:
            layout = next((k for k in ("1", "2x2", "3x3", "4x4") if tile_count(k) >= len(codes)),
                          "4x4")
        self.focus_index = None
        n = tile_count(layout)
        if self.before_override is None:  # the first override keeps the operator's own
            self.before_override = WallState.from_json(self.state.to_json())
            self.restore_button.show()
        self.state = WallState(layout, list(codes[:n]) + [None] * (n - len(codes[:n])))
        self.tour.stop()
        self._arrange()
        self._sync_group_box()
        self._changed()

    def restore_layout(self) -> None:
        """恢复原布局: the wall as it was before cameras were put up (an emergency)."""
        previous, self.before_override = self.before_override, None
        self.restore_button.hide()
        if previous is not None:
            self.apply_state(previous)

    def toggle_focus(self, index: int) -> None:
        """Double-click: the tile alone, main stream; again: back to the grid, sub-stream."""
        if self.focus_index is None:
            if index >= len(self.state.tiles) or not self.state.tiles[index]:
                return
            self.focus_index = index
        else:
            self.focus_index = None
        self._arrange()

    # -- groups and tours -----------------------------------------------------------------------

    def _group_chosen(self, i: int) -> None:
        self.set_group(self.group_box.itemData(i))

    def set_group(self, group: str | None) -> None:
        self.focus_index = None
        self.state.group = group or None
        self.state.page = 0
        if group:
            self.state.tiles = page_of(self.directory.of_group(group), self.state.layout, 0)
        self._arrange()
        self._restart_tour()
        self._changed()

    def set_tour(self, seconds: int) -> None:
        self.state.tour_s = int(seconds or 0)
        self.tour_box.setCurrentIndex(max(0, self.tour_box.findData(self.state.tour_s)))
        self._restart_tour()
        self._changed()

    def _restart_tour(self) -> None:
        self.tour.stop()
        if self.state.tour_s > 0 and self._pages() > 1:
            self.tour.start(self.state.tour_s * 1000)

    def _codes(self) -> list[str]:
        return self.directory.of_group(self.state.group) if self.state.group else []

    def _pages(self) -> int:
        return page_count(self._codes(), self.state.layout) if self.state.group else 1

    def next_page(self) -> None:
        self._turn(+1)

    def prev_page(self) -> None:
        self._turn(-1)

    def _turn(self, step: int) -> None:
        if not self.state.group:
            return
        pages = self._pages()
        self.state.page = (self.state.page + step) % pages
        self.state.tiles = page_of(self._codes(), self.state.layout, self.state.page)
        self.focus_index = None
        self._arrange()
        self._changed()

    def _update_pager(self) -> None:
        grouped = bool(self.state.group)
        pages = self._pages()
        for w in (self.prev_button, self.next_button, self.page_label):
            w.setVisible(grouped and pages > 1)
        self.page_label.setText(f"{self.state.page % pages + 1}/{pages}")

    # -- the camera list ------------------------------------------------------------------------

    def _cameras_loaded(self) -> None:
        self._fill_list()
        self._sync_group_box()
        self._arrange()  # names and addresses may have changed

    def _sync_group_box(self) -> None:
        self.group_box.blockSignals(True)
        self.group_box.clear()
        self.group_box.addItem(self.t("— 分组 —", "— group —"), None)
        for g in self.directory.groups():
            self.group_box.addItem(g, g)
        self.group_box.setCurrentIndex(max(0, self.group_box.findData(self.state.group)))
        self.group_box.blockSignals(False)

    def _fill_list(self) -> None:
        text = self.filter_edit.text().strip().lower()
        self.camera_list.clear()
        for code, cam in sorted(self.directory.cameras.items()):
            label = f"{code} {cam.get('name', '')}"
            if text and text not in label.lower() and not any(
                    text in g.lower() for g in cam.get("groups") or []):
                continue
            item = QListWidgetItem(label)
            item.setData(CODE_ROLE, code)
            item.setToolTip(" · ".join(cam.get("groups") or []))
            self.camera_list.addItem(item)

    # -- the selected case's cameras ------------------------------------------------------------

    def offer_nearby(self, case_number: str | None, cameras: list[dict]) -> None:
        """The nearest cameras of the selected case, those that see it first."""
        t = self.t
        self.nearby_case = case_number
        self.nearby = cameras
        self.nearby_list.clear()
        for cam in cameras:
            mark = t("👁 ", "👁 ") if cam.get("covers") else ""
            item = QListWidgetItem(f"{mark}{cam['code']} {cam.get('name', '')} · "
                                   f"{cam.get('distance_m', 0):.0f} m")
            item.setData(CODE_ROLE, cam["code"])
            item.setToolTip(t("视野覆盖案件位置", "its view covers the case") if cam.get("covers")
                            else t("在范围内，视野未覆盖", "in range, not looking at it"))
            self.nearby_list.addItem(item)
        if case_number is None:
            self.nearby_label.setText(t("附近摄像头：选中案件后显示", "Nearby: select a case"))
        elif cameras:
            self.nearby_label.setText(t(f"案件 {case_number} 附近的摄像头（👁 视野覆盖）",
                                        f"Cameras near case {case_number} (👁 sees it)"))
        else:
            self.nearby_label.setText(t(f"案件 {case_number} 附近没有摄像头",
                                        f"No camera near case {case_number}"))
        self.nearby_button.setEnabled(bool(cameras))

    def load_nearby(self) -> None:
        if self.nearby:
            self.show_cameras([c["code"] for c in self.nearby])

    # -- snapshots, state -----------------------------------------------------------------------

    def request_snapshot(self, index: int | None) -> None:
        if index is None:
            index = self.focus_index
        if index is None or index >= len(self.tiles):
            self.message.emit(self.t("请先点选一个画面", "Select a tile first"))
            return
        tile = self.tiles[index]
        frame: Frame | None = tile.current
        if tile.camera is None or frame is None or tile.decoder is None:
            self.message.emit(self.t("该画面还没有图像", "That tile has no picture yet"))
            return
        self.snapshot_requested.emit(tile.camera["code"], tile.decoder.with_source(frame))

    def apply_state(self, state: WallState, emit: bool = True) -> None:
        self.state = state
        if state.group:
            self.state.tiles = page_of(self.directory.of_group(state.group), state.layout,
                                       state.page)
        self.focus_index = None
        self.tour_box.setCurrentIndex(max(0, self.tour_box.findData(state.tour_s)))
        self._arrange()
        self._sync_group_box()
        self._restart_tour()
        if emit:
            self._changed()

    def _changed(self) -> None:
        self._update_pager()
        self.state_changed.emit(self.state)

    def visible_tiles(self) -> list[VideoTile]:
        return [t for t in self.tiles if t.isVisible()]

    def all_live(self) -> bool:
        """Every tile with a camera on screen shows a live picture (screenshots wait for it)."""
        from console.video.decoder import TileState

        tiles = [t for t in self.visible_tiles() if t.camera is not None]
        return bool(tiles) and all(t.status is not None and t.status.state == TileState.LIVE
                                   and t.current is not None for t in tiles)

    def shutdown(self) -> None:
        self.tour.stop()
        for t in self.tiles:
            t.shutdown()
