"""Test helpers for the video wall: streams made here, real servers on loopback.

Nothing here is a stand-in for a decoder: the files are H.264 written with PyAV, the
MJPEG streams are real HTTP (``http.server``, ``multipart/x-mixed-replace``) with the
faults a camera has (the connection killed, garbage, a frame cut off and silence),
and the silent server is a TCP listener that accepts and never says a word.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, QTimer

from console.video.images import JpegEncoder

BOUNDARY = "testframe"


def colour_frame(n: int, size: tuple[int, int] = (320, 180)) -> np.ndarray:
    """Frame ``n``: a flat colour that says which frame it is (8 colours round)."""
    w, h = size
    palette = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30),
               (30, 200, 200), (200, 30, 200), (230, 230, 230), (90, 90, 90)]
    img = np.empty((h, w, 3), np.uint8)
    img[:] = palette[n % len(palette)]
    return img


def make_h264_file(path: Path, frames: int = 50, size: tuple[int, int] = (320, 180),
                   fps: int = 25) -> list[np.ndarray]:
    """An MP4 of H.264 frames (:func:`colour_frame`), made with PyAV; the frames."""
    import av

    out = av.open(str(path), "w")
    st = out.add_stream("libx264", rate=fps)
    st.width, st.height = size
    st.pix_fmt = "yuv420p"
    st.options = {"preset": "ultrafast", "crf": "18"}
    made = []
    for n in range(frames):
        img = colour_frame(n // 5, size)  # a colour lasts 5 frames: survives the codec
        made.append(img)
        for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in st.encode():
        out.mux(p)
    out.close()
    return made


class MjpegTestServer:
    """A camera serving MJPEG over HTTP on loopback, and its faults.

    ``mode``: ``normal`` frames at ``fps``; ``garbage`` a 200 with bytes that are no
    image; ``stall`` ``frames_before_stall`` frames, then half a frame and silence.
    ``kill()`` drops every connection and stops listening; ``revive()`` listens again
    on the same port.
    """

    def __init__(self, mode: str = "normal", fps: float = 25.0, size=(320, 180),
                 frames_before_stall: int = 10, first_frame_delay_s: float = 0.0):
        self.mode = mode
        self.first_frame_delay_s = first_frame_delay_s  # a camera slow to send its first
        self.fps = fps
        self.size = size
        self.frames_before_stall = frames_before_stall
        self.encoder = JpegEncoder(*size, qscale=3)
        self.sent = 0
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._alive = threading.Event()
        self.port = 0
        self._start(0)

    def _start(self, port: int) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                outer._serve(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self._alive.set()
        # A short poll: kill() (on the test's GUI thread) must not hold the event loop up.
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                         daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._socks.append(req.connection)
            self.connections += 1
        if self.mode == "garbage":
            req.send_response(200)
            req.send_header("Content-Type", "application/octet-stream")
            req.end_headers()
            rng = np.random.default_rng(7)
            try:
                while self._alive.is_set():
                    req.wfile.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                    time.sleep(0.02)
            except OSError:
                return
            return
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.end_headers()
        time.sleep(self.first_frame_delay_s)
        n = 0
        try:
            while self._alive.is_set():
                jpeg = self.encoder.encode(colour_frame(n, self.size))
                part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
                if self.mode == "stall" and n >= self.frames_before_stall:
                    req.wfile.write(part[: len(part) // 2])  # cut off mid-frame …
                    req.wfile.flush()
                    while self._alive.is_set():  # … and nothing more, the line kept open
                        time.sleep(0.05)
                    return
                req.wfile.write(part)
                req.wfile.flush()
                self.sent += 1
                n += 1
                time.sleep(1.0 / self.fps)
        except OSError:
            return

    def kill(self) -> None:
        """The camera goes away: connections dropped, nothing listening."""
        self._alive.clear()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def revive(self) -> None:
        """The camera is back, on the same address."""
        self._start(self.port)

    def stop(self) -> None:
        if self._alive.is_set():
            self.kill()


class SilentServer:
    """Accepts TCP connections on loopback and never answers (a hung camera)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        for c in self.held:
            c.close()
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_delay_ms() -> float | None:
    """How long this thread has waited for a CPU in all (Linux schedstat), in ms."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


class TickRecorder:
    """A QTimer ticking every 5 ms on the GUI thread; the longest gap between ticks is how
    long the event loop stood still.

    On a machine busy with other work the GUI thread also stands still while it waits for
    a CPU, which is no fault of the window's: that wait (the kernel's per-thread
    ``schedstat`` run delay) is taken out of each gap; ``max_raw_gap_ms`` keeps the gap as
    the wall clock saw it.
    """

    def __init__(self, interval_ms: int = 5):
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last: int | None = None
        self.last_delay: float | None = None
        self.max_gap_ms = 0.0
        self.max_raw_gap_ms = 0
        self.ticks = 0

    def _tick(self) -> None:
        now = self.clock.elapsed()
        delay = _run_delay_ms()
        if self.last is not None:
            gap = now - self.last
            self.max_raw_gap_ms = max(self.max_raw_gap_ms, gap)
            waited = (delay - self.last_delay) if delay is not None and \
                self.last_delay is not None else 0.0
            self.max_gap_ms = max(self.max_gap_ms, gap - waited)
        self.last, self.last_delay = now, delay
        self.ticks += 1

    def start(self) -> TickRecorder:
        self.clock.start()
        self.timer.start()
        return self

    def stop(self) -> float:
        self.timer.stop()
        return self.max_gap_ms
