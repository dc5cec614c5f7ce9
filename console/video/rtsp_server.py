"""A small RTSP server on loopback: H.264 over RTP, interleaved on the RTSP connection.

Most street cameras speak RTSP; the wall reads them over TCP (``rtsp_transport=tcp``).
This server gives the tests and ``bench/video.py`` a real RTSP source of their own
(no camera and no ``ffmpeg`` program needed): OPTIONS, DESCRIBE (SDP with the
parameter sets), SETUP (``RTP/AVP/TCP;interleaved``), PLAY, TEARDOWN, and RTP
packets per RFC 6184 (single NAL units and FU-A fragments).  A path maps to an
:class:`H264Broadcast`, which sends one clip round and round in real time to every
client watching (each starts at the next key frame), like a camera does.
"""

from __future__ import annotations

import base64
import logging
import random
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MAX_PAYLOAD = 1400
CLOCK = 90_000


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes removed)."""
    out = []
    i, n = 0, len(data)
    starts = []
    while i < n - 2:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            starts.append(i + 3)
            i += 3
        else:
            i += 1
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:end]
        while nal.endswith(b"\x00") and k + 1 < len(starts):
            nal = nal[:-1]
        if nal:
            out.append(nal)
    return out


@dataclass(frozen=True)
class AccessUnit:
    nals: tuple[bytes, ...]
    key: bool


def encode_clip(frames: Iterable[np.ndarray], fps: int = 25, gop: int | None = None,
                crf: int = 23, bitrate: int | None = None,
                preset: str = "ultrafast") -> list[AccessUnit]:
    """H.264 access units of RGB frames (x264 ``preset``, ``zerolatency``, no B-frames,
    parameter sets before every key frame); constant quality ``crf``, or about
    ``bitrate`` bits a second (a camera's setting) when given.  ``ultrafast`` has no
    CABAC and no deblocking: quick to make, quicker to decode than a camera's stream;
    ``veryfast`` decodes as a camera's Main-profile stream does."""
    import fractions

    import av

    ctx = None
    units: list[AccessUnit] = []
    for n, img in enumerate(frames):
        if ctx is None:
            h, w = img.shape[:2]
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height = w, h
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = fractions.Fraction(1, fps)
            ctx.framerate = fractions.Fraction(fps, 1)
            ctx.options = {"preset": preset, "tune": "zerolatency", "g": str(gop or fps),
                           "bf": "0",
                           "x264-params": "repeat-headers=1:keyint-min=" + str(gop or fps)}
            if bitrate:
                ctx.bit_rate = bitrate
            else:
                ctx.options = {**ctx.options, "crf": str(crf)}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        frame.pts = n
        for p in ctx.encode(frame):
            units.append(AccessUnit(tuple(split_annexb(bytes(p))), bool(p.is_keyframe)))
    if ctx is not None:
        for p in ctx.encode(None):
            units.append(AccessUnit(tuple(split_annexb(bytes(p))), bool(p.is_keyframe)))
    return units


def rtp_packets(au: AccessUnit, seq: int, ts: int, ssrc: int) -> tuple[list[bytes], int]:
    """RTP packets of one access unit (the marker on its last); the next sequence number."""
    out = []
    payloads: list[bytes] = []
    for nal in au.nals:
        if len(nal) <= MAX_PAYLOAD:
            payloads.append(nal)
            continue
        head, body = nal[0], nal[1:]
        indicator = (head & 0xE0) | 28
        kind = head & 0x1F
        chunks = [body[i:i + MAX_PAYLOAD - 2] for i in range(0, len(body), MAX_PAYLOAD - 2)]
        for k, chunk in enumerate(chunks):
            fu = kind | (0x80 if k == 0 else 0) | (0x40 if k == len(chunks) - 1 else 0)
            payloads.append(bytes([indicator, fu]) + chunk)
    for k, payload in enumerate(payloads):
        marker = 0x80 if k == len(payloads) - 1 else 0
        header = struct.pack("!BBHII", 0x80, marker | 96, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        out.append(header + payload)
        seq += 1
    return out, seq


class H264Broadcast:
    """One clip sent round and round at ``fps`` to every client; ``sent`` records when
    each clip frame last went out (``bench/video.py`` reads latency from it)."""

    def __init__(self, name: str, units: list[AccessUnit], fps: float = 25.0):
        if not units or not units[0].key:
            raise ValueError("a clip starts with a key frame")
        self.name = name
        self.units = units
        self.fps = fps
        self.sps = next(n for u in units for n in u.nals if n[0] & 0x1F == 7)
        self.pps = next(n for u in units for n in u.nals if n[0] & 0x1F == 8)
        self.sent = [0.0] * len(units)  # time.time() a clip frame was last sent
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.paused = threading.Event()  # set: send nothing (a stalled camera)

    def sdp(self, url: str) -> str:
        sets = ",".join(base64.b64encode(x).decode() for x in (self.sps, self.pps))
        profile = self.sps[1:4].hex()
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=grid\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            f"a=fmtp:96 packetization-mode=1;profile-level-id={profile};"
            f"sprop-parameter-sets={sets}\r\na=control:trackID=0\r\n"
        )

    def add(self, client: _Client) -> None:
        with self._lock:
            self._clients.append(client)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"rtsp-{self.name}",
                                                daemon=True)
                self._thread.start()

    def remove(self, client: _Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def stop(self) -> None:
        self._stop.set()

    def drop_clients(self) -> None:
        """Close every client's connection (a camera that reboots)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()

    def _run(self) -> None:
        period = 1.0 / self.fps
        k = 0
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            with self._lock:
                clients = list(self._clients)
            if not clients:
                self._thread = None
                return
            if not self.paused.is_set():
                au = self.units[k]
                ts = int(n * CLOCK / self.fps)
                self.sent[k] = time.time()
                for c in clients:
                    c.send_unit(au, ts)
            k = (k + 1) % len(self.units)
            n += 1
            delay = start + n * period - time.monotonic()
            if delay < -1.0:  # far behind: start the clock again rather than burst
                start, n = time.monotonic(), 0
            self._stop.wait(max(0.0, delay))


class _Client:
    """One RTSP connection: requests in, interleaved RTP out."""

    def __init__(self, sock: socket.socket, server: RtspServer):
        self.sock = sock
        self.server = server
        self.session = f"{random.randrange(1 << 30):08X}"
        self.source: H264Broadcast | None = None
        self.playing = False
        self.waiting_key = True
        self.seq = random.randrange(1 << 16)
        self.ssrc = random.randrange(1 << 31)
        self.channel = 0
        self._send_lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def send_unit(self, au: AccessUnit, ts: int) -> None:
        if not self.playing or self.closed:
            return
        if self.waiting_key:
            if not au.key:
                return
            self.waiting_key = False
        packets, self.seq = rtp_packets(au, self.seq, ts, self.ssrc)
        data = b"".join(b"$" + bytes([self.channel]) + struct.pack("!H", len(p)) + p
                        for p in packets)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError:
            self.closed = True
            if self.source is not None:
                self.source.remove(self)

    def _reply(self, cseq: str, status: str = "200 OK", headers: dict | None = None,
               body: str = "") -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body:
            lines.append("Content-Type: application/sdp")
            lines.append(f"Content-Length: {len(body.encode())}")
        data = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
        with self._send_lock:
            self.sock.sendall(data)

    def serve(self) -> None:
        f = self.sock.makefile("rb")
        try:
            while not self.closed:
                first = f.read(1)
                if not first:
                    return
                if first == b"$":  # RTCP from the client: skip it
                    head = f.read(3)
                    if len(head) < 3:
                        return
                    f.read(struct.unpack("!H", head[1:])[0])
                    continue
                line = first + f.readline()
                if not line.strip():
                    continue
                headers = {}
                while True:
                    h = f.readline()
                    if not h or not h.strip():
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "content-length" in headers:
                    f.read(int(headers["content-length"]))
                self._handle(line.decode("latin-1").split(), headers)
        except OSError:
            return
        finally:
            if self.source is not None:
                self.source.remove(self)
            self.closed = True

    def _handle(self, request: list[str], headers: dict) -> None:
        method, url = [*request, "", ""][:2]
        cseq = headers.get("cseq", "0")
        if method == "OPTIONS":
            self._reply(cseq, headers={
                "Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"})
        elif method == "DESCRIBE":
            src = self.server.find(url)
            if src is None:
                self._reply(cseq, "404 Not Found")
                return
            self.source = src
            base = url if url.endswith("/") else url + "/"
            self._reply(cseq, headers={"Content-Base": base}, body=src.sdp(url))
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "TCP" not in transport.upper() or self.source is None:
                self._reply(cseq, "461 Unsupported Transport")
                return
            self._reply(cseq, headers={
                "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1",
                "Session": f"{self.session};timeout=60"})
        elif method == "PLAY":
            if self.source is None:
                self._reply(cseq, "455 Method Not Valid in This State")
                return
            self._reply(cseq, headers={"Session": self.session, "Range": "npt=0.000-"})
            self.playing = True
            self.source.add(self)
        elif method == "TEARDOWN":
            self._reply(cseq, headers={"Session": self.session})
            self.closed = True
        else:  # GET_PARAMETER keep-alives and the rest
            self._reply(cseq, headers={"Session": self.session})


class RtspServer:
    """``rtsp://127.0.0.1:PORT/PATH`` serves ``lookup(PATH)``; threads of its own."""

    def __init__(self, lookup: Callable[[str], H264Broadcast | None], host: str = "127.0.0.1",
                 port: int = 0):
        self.lookup = lookup
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _Client(self.request, outer).serve()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.tcp = Server((host, port), Handler)
        self.host, self.port = self.tcp.server_address[:2]

    def url(self, path: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{path.lstrip('/')}"

    def find(self, url: str) -> H264Broadcast | None:
        path = url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else url
        return self.lookup(path.rstrip("/").split("/trackID", 1)[0])

    def start(self) -> RtspServer:
        threading.Thread(target=self.tcp.serve_forever, name="rtsp-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()
