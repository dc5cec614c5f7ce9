"""MJPEG over HTTP on loopback (``multipart/x-mixed-replace``), as many IP cameras serve it.

The demo's cameras are served this way (:mod:`console.video.demo`), so the video wall
works on the demo exactly as on a hall's network: a TCP connection per tile, frames
as they come, a connection that drops and is made again.  A path maps to a
:class:`FrameSource`; one producer per source feeds every client watching it, and
stops when the last one leaves, so a stream nobody watches costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

BOUNDARY = "gridframe"
IDLE_STOP_S = 3.0  # a producer nobody watched for this long stops


class FrameSource:
    """Produces JPEG frames at a rate while watched; clients wait for the next one."""

    def __init__(self, name: str, make_frame: Callable[[int], bytes], fps: float):
        self.name = name
        self.make_frame = make_frame
        self.fps = fps
        self._cond = threading.Condition()
        self._seq = 0
        self._jpeg = b""
        self._clients = 0
        self._last_client = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def attach(self) -> None:
        with self._cond:
            self._clients += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"mjpeg-{self.name}",
                                                daemon=True)
                self._thread.start()

    def detach(self) -> None:
        with self._cond:
            self._clients -= 1
            self._last_client = time.monotonic()

    def next_frame(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The first frame newer than ``after`` (waiting up to ``timeout``), or None."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > after or self._stop.is_set(),
                                       timeout):
                return None
            if self._stop.is_set():
                return None
            return self._seq, self._jpeg

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set():
            with self._cond:
                if self._clients <= 0 and time.monotonic() - self._last_client > IDLE_STOP_S:
                    self._thread = None
                    return
            try:
                jpeg = self.make_frame(n)
            except Exception:  # a broken scene must not take the server down
                log.exception("mjpeg source %s failed", self.name)
                self._stop.wait(1.0)
                continue
            n += 1
            with self._cond:
                self._seq += 1
                self._jpeg = jpeg
                self._cond.notify_all()
            next_at += period
            delay = next_at - time.monotonic()
            if delay < -period:  # fell behind (a busy machine): do not try to catch up
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(max(0.0, delay))


class MjpegServer:
    """A threaded HTTP server: ``GET /PATH`` streams the source ``lookup(PATH)`` returns."""

    def __init__(self, lookup: Callable[[str], FrameSource | None], host: str = "127.0.0.1",
                 port: int = 0):
        self.lookup = lookup
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt, *args) -> None:  # quiet: the console has its own log
                log.debug("mjpeg %s", fmt % args)

            def do_GET(self) -> None:
                server._serve(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None
        self.clients = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MjpegServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        source = self.lookup(req.path.split("?", 1)[0])
        if source is None:
            req.send_error(404, "no such camera")
            return
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-cache")
        req.send_header("Connection", "close")
        req.end_headers()
        source.attach()
        self.clients += 1
        seq = 0
        try:
            while True:
                got = source.next_frame(seq, timeout=5.0)
                if got is None:
                    if source._stop.is_set():
                        return
                    continue
                seq, jpeg = got
                req.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii") + jpeg + b"\r\n")
                req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client went away
        finally:
            self.clients -= 1
            source.detach()
