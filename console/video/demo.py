"""The demo's cameras, live: generated scenes served as MJPEG over HTTP on loopback.

Started by the simulator behind the demo window (``Simulator(video=…)``).  Every demo
camera's address is ``demo://CODE/main`` or ``demo://CODE/sub``; the console turns it
into this server's ``http://127.0.0.1:PORT/cam/CODE/main.mjpg`` (:func:`resolve`), so
the wall decodes a network stream like any IP camera's, reconnects and all.

A camera's scene is made with PyAV the first time (:mod:`console.video.scene`; cached
under ``DATA_DIR/video-demo``), in the background: a stream asked for before its scene
exists shows a "preparing" picture meanwhile, and a background pass makes the rest.
The wall clock is burned into each frame as it is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from console.video.glyphs import stamp, text_mask
from console.video.images import JpegEncoder
from console.video.mjpeg_server import FrameSource, MjpegServer
from console.video.scene import FPS, MAIN_SIZE, SUB_SIZE, TextMask, make_scene, scene_paths

log = logging.getLogger(__name__)

SUB_FPS = FPS / 2  # the grid's streams: half the rate, a quarter of the pixels
VARIANTS = {"main": (MAIN_SIZE, float(FPS), 1), "sub": (SUB_SIZE, SUB_FPS, 2)}

_current: DemoVideo | None = None
_current_lock = threading.Lock()


def current() -> DemoVideo | None:
    """The demo video server running in this process, if any."""
    with _current_lock:
        return _current


def resolve(url: str) -> str | None:
    """The address to open for ``url``: ``demo://CODE/VARIANT`` → this process's demo
    server (None when none runs); any other address as it is."""
    if not url.startswith("demo://"):
        return url
    demo = current()
    if demo is None:
        return None
    code, _, variant = url[len("demo://"):].partition("/")
    return demo.url_for(code, variant or "main")


class _ClipPlayer:
    """Plays one camera's clip round and round, the clock burned into each frame."""

    def __init__(self, demo: DemoVideo, code: str, variant: str):
        self.demo = demo
        self.code = code
        self.variant = variant
        self.size, _fps, self.step = VARIANTS[variant]
        self.encoder = JpegEncoder(*self.size, qscale=6)
        self.container = None
        self.frames = None
        self.clock_scale = max(2, self.size[1] // 200)

    def _open(self) -> bool:
        import av

        paths = scene_paths(self.demo.root, self.code)
        path = paths.main if self.variant == "main" else paths.sub
        if not path.exists():
            self.demo.prepare(self.code)
            return False
        self.container = av.open(str(path))
        self.frames = self.container.decode(video=0)
        return True

    def _next_image(self) -> np.ndarray:
        if self.container is None and not self._open():
            return self._placeholder()
        img = None
        for _ in range(self.step):
            try:
                frame = next(self.frames)
            except StopIteration:
                self.container.close()
                self.container = None
                if not self._open():
                    return self._placeholder()
                frame = next(self.frames)
            img = frame
        return img.to_ndarray(format="rgb24")

    def _placeholder(self) -> np.ndarray:
        w, h = self.size
        img = np.full((h, w, 3), 40, np.uint8)
        stamp(img, text_mask(f"{self.code} PREPARING", scale=max(2, h // 120)), 20, h // 2 - 10)
        return img

    def __call__(self, _n: int) -> bytes:
        img = self._next_image()
        now = datetime.now().astimezone()
        clock = text_mask(now.strftime("%Y-%m-%d %H:%M:%S"), scale=self.clock_scale)
        h = img.shape[0]
        stamp(img, clock, 10, h - clock.shape[0] - 10, (255, 255, 255), (0, 0, 0))
        return self.encoder.encode(img)


class DemoVideo:
    """The MJPEG server of the demo's cameras, with their scenes made on first use."""

    def __init__(self, root: Path, cameras: Callable[[], dict[str, str]] | dict[str, str],
                 text_mask: TextMask | None = None, host: str = "127.0.0.1", port: int = 0,
                 prepare_all: bool = True):
        self.root = Path(root)
        self._cameras_arg = cameras
        self._cameras: dict[str, str] | None = cameras if isinstance(cameras, dict) else None
        self.text_mask = text_mask
        self.prepare_all = prepare_all
        self.server = MjpegServer(self._lookup, host, port)
        self._sources: dict[tuple[str, str], FrameSource] = {}
        self._lock = threading.Lock()
        self._queue: list[str] = []  # scenes to make, the asked-for first
        self._made: dict[str, threading.Event] = {}
        self._maker: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- running -------------------------------------------------------------------

    def start(self) -> DemoVideo:
        global _current
        self.server.start()
        with _current_lock:
            _current = self
        if self.prepare_all:
            threading.Thread(target=self._prepare_all, name="demo-scenes", daemon=True).start()
        return self

    def stop(self) -> None:
        global _current
        self._stop.set()
        with _current_lock:
            if _current is self:
                _current = None
        for src in list(self._sources.values()):
            src.stop()
        self.server.stop()

    def url_for(self, code: str, variant: str = "main") -> str:
        return f"{self.server.base_url}/cam/{code}/{variant}.mjpg"

    # -- cameras and scenes --------------------------------------------------------------

    def cameras(self) -> dict[str, str]:
        if self._cameras is None:
            try:
                self._cameras = dict(self._cameras_arg())
            except Exception as exc:  # the database is not there yet: try on the next ask
                log.warning("demo cameras not read: %s", exc)
                return {}
        return self._cameras

    def prepare(self, code: str) -> threading.Event:
        """Have ``code``'s scene made soon (before those nobody asked for); an event set
        once it exists.  One maker thread: scenes never crowd out the streams."""
        paths = scene_paths(self.root, code)
        with self._lock:
            done = self._made.setdefault(code, threading.Event())
            if paths.main.exists() and paths.sub.exists():
                done.set()
                return done
            if code not in self._queue:
                self._queue.insert(0, code)
            if self._maker is None or not self._maker.is_alive():
                self._maker = threading.Thread(target=self._make_queued, name="demo-scenes",
                                               daemon=True)
                self._maker.start()
            self._wake.set()
            return done

    def _make_queued(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                code = self._queue.pop(0) if self._queue else None
                if code is None:
                    self._maker = None
                    return
                done = self._made.setdefault(code, threading.Event())
            try:
                make_scene(self.root, code, self.cameras().get(code, ""), self.text_mask)
            except Exception:
                log.exception("demo scene %s not made", code)
            done.set()

    def _prepare_all(self) -> None:
        """The scenes nobody asked for yet, after the ones asked for."""
        with self._lock:
            for code in sorted(self.cameras()):
                if code not in self._queue:
                    self._queue.append(code)
        if self._queue:
            self.prepare(self._queue[0])

    def _lookup(self, path: str) -> FrameSource | None:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "cam" or not parts[2].endswith(".mjpg"):
            return None
        code, variant = parts[1], parts[2][:-5]
        if variant not in VARIANTS or code not in self.cameras():
            return None
        with self._lock:
            src = self._sources.get((code, variant))
            if src is None:
                fps = VARIANTS[variant][1]
                src = FrameSource(f"{code}-{variant}", _ClipPlayer(self, code, variant), fps)
                self._sources[(code, variant)] = src
        return src


def wait_until_prepared(demo: DemoVideo, codes, timeout_s: float) -> bool:
    """Have the scenes of ``codes`` made first and wait for them; True when all are."""
    deadline = time.monotonic() + timeout_s
    events = [demo.prepare(code) for code in reversed(list(codes))]
    return all(e.wait(max(0.0, deadline - time.monotonic())) for e in events)


def demo_cameras(engine) -> dict[str, str]:
    """Code → name of the cameras whose streams are the demo's (``demo://``)."""
    from db.cameras import list_cameras

    return {c["code"]: c["name"] for c in list_cameras(engine, include_disabled=True)
            if c["url"].startswith("demo://") or c["sub_url"].startswith("demo://")}


def for_database(engine, data_dir: Path, text: TextMask | None = None) -> DemoVideo:
    """The demo video server of an embedded demo database (scenes under ``DATA_DIR``)."""
    return DemoVideo(Path(data_dir) / "video-demo", lambda: demo_cameras(engine), text)
