"""One tile of the video wall: a camera's picture and what state its stream is in.

The tile owns its :class:`console.video.decoder.Decoder` and only paints: the
decoder's worker scales each frame to the tile's size, so painting is a blit of a
QImage wrapped around the numpy array (no copy, no scaling on the GUI thread).
A tile not visible (another dock tab in front, the window minimised) stops its
decoder; the last frame stays, dimmed, with the state written over it.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QMimeData, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QDrag, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from console.video.decoder import Decoder, Frame, Status, TileState

CAMERA_MIME = "application/x-grid-camera"
BACKGROUND = QColor("#0b0f14")
STATE_COLOURS = {TileState.LIVE: "#7ee787", TileState.ERROR: "#ff7b72",
                 TileState.OFFLINE: "#ffa657", TileState.RECONNECTING: "#e3b341"}


def bilingual(lang: str):
    """``t(zh, en)``: the wall's own short texts in the console's language."""
    return (lambda zh, _en: zh) if lang == "zh" else (lambda _zh, en: en)


def frame_image(frame: Frame) -> QImage:
    """A QImage over the frame's pixels (no copy; the frame keeps the memory alive)."""
    img = frame.image
    h, w = img.shape[:2]
    if img.shape[2] == 4:  # B, G, R, A bytes: the raster engine's own format, a plain copy
        return QImage(img.data, w, h, img.strides[0], QImage.Format.Format_RGB32)
    return QImage(img.data, w, h, img.strides[0], QImage.Format.Format_RGB888)


def state_text(status: Status | None, t) -> str:
    if status is None:
        return ""
    s = status.state
    retry = "" if status.retry_in_s is None else f"{int(status.retry_in_s + 0.999)}"
    if s == TileState.IDLE:
        return t("拖入摄像头", "drop a camera here")
    if s == TileState.CONNECTING:
        return t("连接中…", "connecting…")
    if s == TileState.LIVE:
        age = 0.0 if status.age_s is None else status.age_s
        return t(f"直播 {status.fps:.0f} fps · {age:.1f} s", f"live {status.fps:.0f} fps · "
                 f"{age:.1f} s")
    if s == TileState.RECONNECTING:
        return t(f"重连中（{retry} 秒后）", f"reconnecting in {retry} s") if retry else \
            t("重连中…", "reconnecting…")
    if s == TileState.OFFLINE:
        why = f"：{status.reason}" if status.reason else ""
        why_en = f": {status.reason}" if status.reason else ""
        return t(f"离线{why}，{retry} 秒后重试", f"offline{why_en}, retry in {retry} s") \
            if retry else t(f"离线{why}", f"offline{why_en}")
    if s == TileState.ERROR:
        return t(f"错误：{status.reason}", f"error: {status.reason}")
    if s == TileState.PAUSED:
        return t("已暂停（不可见）", "paused (not visible)")
    return str(s)


class VideoTile(QWidget):
    """A tile; its signals name the tile by its index in the wall."""

    focus_toggled = Signal(int)
    camera_dropped = Signal(int, str, int)  # tile, camera code, tile it came from (-1: list)
    snapshot_requested = Signal(int)
    clear_requested = Signal(int)
    selected = Signal(int)

    def __init__(self, index: int, lang: str = "zh", parent: QWidget | None = None):
        super().__init__(parent)
        self.index = index
        self.lang = lang
        self.t = bilingual(lang)
        self.camera: dict | None = None
        self.url: str | None = None
        self.focus = False
        self.decoder: Decoder | None = None
        self.current: Frame | None = None
        self._image: QImage | None = None
        self.status: Status | None = Status(TileState.IDLE)
        self.shown_times: deque[float] = deque(maxlen=64)
        self.shown = 0  # frames painted
        self.last_shown_at: float | None = None
        self.is_selected = False
        self.wanted = True  # the wall wants this tile decoded (its page is on screen)
        self.on_frame = None  # a hook: called with each frame as it is shown (bench, tests)
        self._painted_seq: int | None = None
        self._live_text = ""
        self._overlay_for: tuple | None = None
        self._overlay_cache: list[tuple[QPoint, QImage]] | None = None
        self.setAcceptDrops(True)
        self.setMinimumSize(120, 68)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setObjectName(f"videoTile{index}")
        self._press: QPoint | None = None
        self._visibility = QTimer(self, interval=500)
        self._visibility.timeout.connect(self.update_activity)
        self._visibility.start()

    # -- the camera ---------------------------------------------------------------------

    def set_camera(self, camera: dict | None, url: str | None, focus: bool = False) -> None:
        """Show ``camera`` from ``url`` (None: an empty tile)."""
        same = (camera or {}).get("code") == (self.camera or {}).get("code") and url == self.url
        self.focus = focus
        if same and self.decoder is not None:
            return
        self._drop_decoder()
        self.camera, self.url = camera, url
        self.current, self._image = None, None
        self.shown_times.clear()
        if camera is None:
            self.status = Status(TileState.IDLE)
        elif not url:
            self.status = Status(TileState.ERROR, self.t("没有视频地址（或演示视频服务未运行）",
                                                         "no stream address (or the demo's "
                                                         "video server is not running)"))
        else:
            self.decoder = Decoder(url, label=camera.get("code", ""), lang=self.lang,
                                   target_size=self._target(), parent=self,
                                   threads=2 if focus else 1)
            self.decoder.frame_ready.connect(self._take)
            self.decoder.status_changed.connect(self._on_status)
            self.status = Status(TileState.CONNECTING)
            self.update_activity()
        self.update()

    def _drop_decoder(self) -> None:
        if self.decoder is not None:
            self.decoder.shutdown()
            self.decoder.frame_ready.disconnect(self._take)
            self.decoder.status_changed.disconnect(self._on_status)
            self.decoder.deleteLater()
            self.decoder = None

    def _target(self) -> tuple[int, int]:
        ratio = self.devicePixelRatioF()
        return max(2, int(self.width() * ratio)), max(2, int(self.height() * ratio))

    def update_activity(self) -> None:
        """Decode only while the tile can be seen (visible, window not minimised)."""
        if self.decoder is None:
            return
        win = self.window()
        visible = (self.wanted and self.isVisible() and not self.visibleRegion().isEmpty()
                   and not (win is not None and win.isMinimized()))
        self.decoder.set_active(visible)

    # -- frames ---------------------------------------------------------------------------

    def _take(self) -> None:
        decoder = self.decoder
        if decoder is None:
            return
        frame = decoder.mailbox.take()
        if frame is None:
            return
        self.current = frame
        self._image = frame_image(frame)
        self.update()

    def _on_status(self, status: Status) -> None:
        self.status = status
        if status.state == TileState.LIVE:
            fps, age = self.shown_fps(), status.age_s or 0.0
            self._live_text = self.t(f"直播 {fps:.0f} fps · {age:.1f} s",
                                     f"live {fps:.0f} fps · {age:.1f} s")
        self.update()

    def shown_fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self.shown_times if now - t <= 2.0]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, _event) -> None:
        """Few Qt calls a frame: the picture (a blit), then the overlay from its cache.

        A wall paints hundreds of frames a second while the decoders' threads run; every
        call into Qt from Python is a chance to wait for the interpreter, so the text
        (which changes about once a second) is drawn once into an image and reused.
        """
        p = QPainter(self)
        r = self.rect()
        img = self._image
        if img is None:
            p.fillRect(r, BACKGROUND)
        else:
            ratio = self.devicePixelRatioF()
            w, h = int(img.width() / ratio), int(img.height() / ratio)
            x, y = (r.width() - w) // 2, (r.height() - h) // 2
            if x > 0 or y > 0:  # letterbox bars, only where the picture is not
                if x > 0:
                    p.fillRect(0, 0, x, r.height(), BACKGROUND)
                    p.fillRect(x + w, 0, r.width() - x - w, r.height(), BACKGROUND)
                if y > 0:
                    p.fillRect(0, 0, r.width(), y, BACKGROUND)
                    p.fillRect(0, y + h, r.width(), r.height() - y - h, BACKGROUND)
            # At the worker's size: a blit (after a resize, until the next frame catches up).
            p.drawImage(QRect(x, y, w, h), img)
            frame = self.current
            if frame is not None and frame.seq != self._painted_seq:
                self._painted_seq = frame.seq
                now = time.monotonic()
                self.shown += 1
                self.shown_times.append(now)
                self.last_shown_at = now
                if self.on_frame is not None:
                    self.on_frame(self, frame, now)
        for point, piece in self._overlay_pieces(img is not None):
            p.drawImage(point, piece)
        p.end()

    def _overlay_key(self, has_image: bool) -> tuple:
        state = self.status.state if self.status else TileState.IDLE
        if state == TileState.LIVE:
            text = self._live_text  # written once a second, with the decoder's status
        else:
            text = state_text(self.status, self.t)
        title = ""
        if self.camera:
            title = f"{self.camera.get('code', '')} {self.camera.get('name', '')}"
            if self.focus:
                title += self.t("（主码流）", " (main stream)")
        return (self.width(), self.height(), state, text, title, self.is_selected, has_image)

    def _overlay_pieces(self, has_image: bool) -> list[tuple[QPoint, QImage]]:
        """The overlay as the few small images it is made of (a live tile: its two
        labels), so a frame composites a few hundred pixels, not a tile of them."""
        key = self._overlay_key(has_image)
        if key == self._overlay_for and self._overlay_cache is not None:
            return self._overlay_cache
        width, height, state, text, title, selected, _ = key
        ratio = self.devicePixelRatioF()
        image = QImage(max(1, int(width * ratio)), max(1, int(height * ratio)),
                       QImage.Format.Format_ARGB32_Premultiplied)
        image.setDevicePixelRatio(ratio)
        image.fill(Qt.GlobalColor.transparent)
        p = QPainter(image)
        r = QRect(0, 0, width, height)
        if has_image and state != TileState.LIVE:
            p.fillRect(r, QColor(0, 0, 0, 140))  # the last frame, dimmed
        font = QFont(self.font())
        font.setPixelSize(max(10, min(14, height // 14)))
        p.setFont(font)
        line = p.fontMetrics().height() + 4
        used: list[QRect] = []
        if title:
            used.append(self._label(p, QRect(4, 4, width - 8, line), title, QColor("#ffffff")))
        color = QColor(STATE_COLOURS.get(state, "#c9d1d9"))
        whole = (has_image and state != TileState.LIVE) or selected
        if state == TileState.LIVE:
            used.append(self._label(p, QRect(4, height - line - 4, width - 8, line), text,
                                    color, right=True))
        else:
            whole = True
            box = QRect(8, height // 2 - line, width - 16, line * 2)
            p.setPen(color)
            p.drawText(box, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
        if selected:
            p.setPen(QPen(QColor("#4da3ff"), 2))
            p.drawRect(r.adjusted(1, 1, -2, -2))
        p.end()
        if whole:
            pieces = [(QPoint(0, 0), image)]
        else:
            pieces = []
            for rect in used:
                piece = image.copy(QRect(int(rect.x() * ratio), int(rect.y() * ratio),
                                         int(rect.width() * ratio),
                                         int(rect.height() * ratio)))
                piece.setDevicePixelRatio(ratio)
                pieces.append((rect.topLeft(), piece))
        self._overlay_for, self._overlay_cache = key, pieces
        return pieces

    def _label(self, p: QPainter, box: QRect, text: str, color: QColor,
               right: bool = False) -> QRect:
        fm = p.fontMetrics()
        text = fm.elidedText(text, Qt.TextElideMode.ElideRight, box.width() - 8)
        w = fm.horizontalAdvance(text) + 8
        x = box.right() - w if right else box.left()
        rect = QRect(x, box.top(), w, box.height())
        p.fillRect(rect, QColor(0, 0, 0, 150))
        p.setPen(color)
        p.drawText(QRect(x + 4, box.top(), w - 4, box.height()),
                   Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        return rect

    # -- size, visibility ----------------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.decoder is not None:
            self.decoder.set_target_size(*self._target())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.update_activity()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        if self.decoder is not None:
            self.decoder.set_active(False)

    # -- mouse: select, focus, drag, menu ---------------------------------------------------------

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position().toPoint()
            self.selected.emit(self.index)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if (self._press is not None and self.camera
                and (event.position().toPoint() - self._press).manhattanLength() > 12):
            drag = QDrag(self)
            mime = QMimeData()
            mime.setData(CAMERA_MIME, f"{self.camera['code']}\n{self.index}".encode())
            mime.setText(self.camera["code"])
            drag.setMimeData(mime)
            self._press = None
            drag.exec(Qt.DropAction.MoveAction)

    def mouseReleaseEvent(self, event) -> None:
        self._press = None
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:
        if self.camera:
            self.focus_toggled.emit(self.index)

    def contextMenuEvent(self, event) -> None:
        t = self.t
        menu = QMenu(self)
        snap = menu.addAction(t("截图附加到当前案件", "Snapshot to the selected case"))
        snap.setEnabled(self.current is not None)
        snap.triggered.connect(lambda: self.snapshot_requested.emit(self.index))
        focus = menu.addAction(
            t("返回分屏（子码流）", "Back to the grid (sub-stream)") if self.focus
            else t("放大（主码流）", "Focus (main stream)"))
        focus.setEnabled(self.camera is not None)
        focus.triggered.connect(lambda: self.focus_toggled.emit(self.index))
        clear = menu.addAction(t("移除摄像头", "Remove the camera"))
        clear.setEnabled(self.camera is not None)
        clear.triggered.connect(lambda: self.clear_requested.emit(self.index))
        menu.exec(event.globalPos())

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(CAMERA_MIME):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasFormat(CAMERA_MIME):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        data = bytes(event.mimeData().data(CAMERA_MIME)).decode("utf-8", "replace").split("\n")
        code = data[0].strip()
        origin = int(data[1]) if len(data) > 1 and data[1].strip().lstrip("-").isdigit() else -1
        if code:
            self.camera_dropped.emit(self.index, code, origin)
            event.acceptProposedAction()

    def shutdown(self) -> None:
        self._visibility.stop()
        self._drop_decoder()
