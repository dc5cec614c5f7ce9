"""One decoder per visible tile: PyAV in a thread of its own, the newest frame in a mailbox.

Why it is built this way (README: Video wall; the issue's anchors):

* **A dead source cannot block.**  Every open and read has a timeout (PyAV's
  ``timeout=(open, read)`` interrupt, and FFmpeg's own ``rw_timeout`` / RTSP
  ``timeout``), and nothing the worker does runs on the GUI thread.  A worker that
  wedges anyway (a resolver that never answers) is abandoned by the watchdog and a
  fresh one started; whatever the old one delivers later is dropped by generation.
* **Newest frame wins.**  The worker converts each frame at the tile's size
  (one kept ``VideoReformatter`` per worker: ``format='bgra'``, scaled in the worker) and puts
  it in a one-frame :class:`Mailbox`; a frame the window had no time to take is
  replaced and counted as dropped, so a slow window never builds up latency.
* **Low latency.**  No input buffering (``fflags=nobuffer``, ``flags=low_delay``), a
  small probe, RTSP over TCP, one decoding thread per stream (frame threads would add a
  frame of delay each).
* **Keep retrying.**  Failures back off in tiers (:data:`BACKOFF_S`) and never give up;
  a stream live for :data:`STABLE_S` resets the tiers.  The tile says which state it is
  in: connecting, live, reconnecting in N s (last frame dimmed), offline, or error with
  the reason.
* **Hidden tiles are not decoded**: ``set_active(False)`` stops the worker and keeps
  the last frame.

Only QtCore here (``console/``): the frame is a numpy array; ``widgets/video`` makes
the QImage.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import shiboken6
from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
# A stream that delivers packets but no picture for this long is restarted.
NO_FRAME_S = 6.0
# A worker whose loop has not turned for this long is abandoned (stuck outside PyAV).
WEDGED_S = OPEN_TIMEOUT_S + READ_TIMEOUT_S + 5.0
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
STABLE_S = 10.0  # live this long: the next failure starts the tiers again
OFFLINE_AFTER_S = 30.0  # reconnecting this long since the last frame: offline
WATCHDOG_MS = 250
KEEP_SOURCES = 4  # full-resolution frames kept for a snapshot (the shown one is among them)


class TileState(StrEnum):
    IDLE = "idle"  # no camera on the tile
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    ERROR = "error"
    PAUSED = "paused"  # hidden: not decoded


@dataclass(frozen=True)
class Frame:
    """One decoded picture, already at the tile's size: ``image[h, w, 4]`` in B, G, R, A
    byte order, which is a QImage ``Format_RGB32`` as it is (painting it is a plain copy,
    no conversion on the GUI thread)."""

    image: np.ndarray
    seq: int  # pictures decoded by this decoder so far
    decoded_at: float  # time.monotonic()
    wall_time: float  # time.time(), the snapshot's time
    source_size: tuple[int, int]
    # The decoded av.VideoFrame at full resolution, for a snapshot: set by
    # ``Decoder.with_source`` when one is asked for, never carried to the window with every
    # frame (freeing a decoder's frame waits for its thread: the worker frees its own).
    source: object = None

    def rgb(self) -> np.ndarray:
        """The picture as RGB (h, w, 3)."""
        return self.image[..., 2::-1] if self.image.shape[-1] == 4 else self.image


class Mailbox:
    """A one-frame slot between the worker and the window: the newest frame wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self.dropped = 0
        self.delivered = 0

    def put(self, frame: Frame) -> bool:
        """Leave ``frame``; True when the slot was empty (the window must be told)."""
        with self._lock:
            was_empty = self._frame is None
            if not was_empty:
                self.dropped += 1
            self._frame = frame
            return was_empty

    def take(self) -> Frame | None:
        with self._lock:
            frame, self._frame = self._frame, None
            if frame is not None:
                self.delivered += 1
            return frame

    def clear(self) -> None:
        with self._lock:
            self._frame = None


@dataclass(frozen=True)
class Status:
    """What a tile shows about its stream."""

    state: TileState
    reason: str = ""  # offline/error: why, in the language of the console
    retry_in_s: float | None = None
    fps: float = 0.0  # pictures decoded per second (last 2 s)
    age_s: float | None = None  # since the last picture
    frames: int = 0
    dropped: int = 0
    restarts: int = 0
    hw: str = "software"
    source_size: tuple[int, int] | None = None


# --- what a failure means ------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    kind: str  # "network" (try again), "content" (the source is not usable video)
    zh: str
    en: str


class Stalled(Exception):
    """Packets came but no picture for ``NO_FRAME_S``, or the stream ended."""


def classify(exc: BaseException) -> Failure:
    """Turn what PyAV raised into a tile state and a reason a person reads."""
    import av

    e = av.error
    if isinstance(exc, Stalled):
        return Failure("network", "画面中断", str(exc) or "the stream stalled")
    if isinstance(exc, e.ExitError | e.TimeoutError | TimeoutError):
        return Failure("network", "连接超时，无响应", "no answer (timed out)")
    if isinstance(exc, e.ConnectionRefusedError | ConnectionRefusedError):
        return Failure("network", "连接被拒绝", "connection refused")
    if isinstance(exc, e.ConnectionResetError | e.BrokenPipeError | e.EOFError
                   | ConnectionResetError | BrokenPipeError | EOFError):
        return Failure("network", "连接中断", "the connection broke")
    if isinstance(exc, e.HTTPNotFoundError):
        return Failure("content", "地址不存在（HTTP 404）", "no such stream (HTTP 404)")
    if isinstance(exc, e.HTTPUnauthorizedError | e.HTTPForbiddenError):
        return Failure("content", "无权访问（用户名或密码错误）", "access refused (credentials)")
    if isinstance(exc, e.HTTPServerError):
        return Failure("network", "视频服务器出错（HTTP 5xx）",
                       "the video server failed (HTTP 5xx)")
    if isinstance(exc, e.HTTPError):
        return Failure("content", f"HTTP 错误：{exc}", f"HTTP error: {exc}")
    if isinstance(exc, e.InvalidDataError):
        return Failure("content", "不是可识别的视频流", "not a video stream this console reads")
    if isinstance(exc, e.FileNotFoundError | FileNotFoundError):
        return Failure("content", "文件不存在", "no such file")
    if isinstance(exc, e.ProtocolNotFoundError | e.DemuxerNotFoundError
                   | e.DecoderNotFoundError):
        return Failure("content", "不支持的视频格式", "unsupported stream format")
    if isinstance(exc, LookupError):
        return Failure("content", str(exc.args[0]) if exc.args else "无视频", "no video in it")
    if isinstance(exc, e.FFmpegError | OSError):
        text = str(getattr(exc, "strerror", "") or exc)[:120]
        return Failure("network", f"读取失败：{text}", f"read failed: {text}")
    return Failure("content", f"{type(exc).__name__}", f"{type(exc).__name__}: {exc}"[:160])


# --- how to open an address ----------------------------------------------------------


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def is_live(url: str) -> bool:
    """A network stream (paced by its source) rather than a file (paced by its clock)."""
    return scheme_of(url) not in ("file",)


def open_options(url: str, read_timeout_s: float = READ_TIMEOUT_S) -> dict[str, str]:
    """FFmpeg options for low latency and bounded waits, by kind of address."""
    us = str(int(read_timeout_s * 1_000_000))
    scheme = scheme_of(url)
    if scheme == "file":
        return {}
    # A small probe: a picture sooner, and a source that sends no video is told apart
    # from a silent one before the open timeout.
    opts = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "65536",
            "formatprobesize": "65536", "analyzeduration": "500000"}
    if scheme in ("rtsp", "rtsps"):
        opts.update(rtsp_transport="tcp", timeout=us)
    elif scheme in ("http", "https"):
        opts.update(rw_timeout=us, reconnect="0", multiple_requests="0")
    elif scheme in ("udp", "rtp", "srt", "tcp"):
        opts.update(rw_timeout=us)
    return opts


def fit_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest even size with the source's shape inside the box (at least 2×2)."""
    if src_w <= 0 or src_h <= 0:
        return max(2, box_w & ~1), max(2, box_h & ~1)
    scale = min(box_w / src_w, box_h / src_h)
    w = max(2, int(src_w * scale) & ~1)
    h = max(2, int(src_h * scale) & ~1)
    return w, h


# Hardware decoding where PyAV offers a device that works; software otherwise.  Whether
# one works is found out once per process, in the background, by decoding a small clip
# through it (a machine whose FFmpeg knows CUDA but has no GPU says so once, not per
# tile); until then, and wherever it fails, tiles decode in software.
HW_PREFERENCE = ("vaapi", "cuda", "qsv", "videotoolbox", "d3d11va", "dxva2")
_hw_lock = threading.Lock()
_hw_state: dict[str, object] = {"started": False, "kind": None, "done": False}


def _hw_wanted() -> tuple[str, ...]:
    want = os.environ.get("GRID_VIDEO_HWACCEL", "auto").strip().lower()
    if want in ("none", "off", "software", "0", ""):
        return ()
    try:
        from av.codec.hwaccel import hwdevices_available
    except ImportError:
        return ()
    available = set(hwdevices_available())
    order = HW_PREFERENCE if want == "auto" else (want,)
    return tuple(k for k in order if k in available)


def _hw_sample() -> bytes:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 128, 96, "yuv420p"
        for n in range(3):
            img = np.full((96, 128, 3), 40 * n, np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return buf.getvalue()


def _hw_works(kind: str, sample: bytes) -> bool:
    import io

    import av
    from av.codec.hwaccel import HWAccel

    try:
        with av.open(io.BytesIO(sample), timeout=(3, 3),
                     hwaccel=HWAccel(device_type=kind, allow_software_fallback=False)) as c:
            for frame in c.decode(video=0):
                frame.to_ndarray(format="rgb24")
                return True
    except Exception as exc:  # no such device here
        log.info("hardware decoding %s unavailable: %s", kind, exc)
    return False


def probe_hardware() -> None:
    """Find the hardware decoder that works, once per process (blocking; call it off the
    GUI thread — :class:`Decoder` starts it in the background)."""
    with _hw_lock:
        if _hw_state["started"]:
            return
        _hw_state["started"] = True
    kind = None
    wanted = _hw_wanted()
    if wanted:
        try:
            sample = _hw_sample()
            kind = next((k for k in wanted if _hw_works(k, sample)), None)
        except Exception as exc:
            log.info("hardware decoding not probed: %s", exc)
    with _hw_lock:
        _hw_state["kind"] = kind
        _hw_state["done"] = True


def hardware_choice() -> str | None:
    """The device type decoders use (None: software, also while the probe runs)."""
    with _hw_lock:
        if not _hw_state["started"]:
            threading.Thread(target=probe_hardware, name="video-hw-probe", daemon=True).start()
            return None
        return _hw_state["kind"]  # type: ignore[return-value]


def _hw_failed(kind: str) -> None:
    with _hw_lock:
        if _hw_state["kind"] == kind:
            _hw_state["kind"] = None


# --- the worker ----------------------------------------------------------------------


@dataclass
class _Shared:
    """What the worker tells the window, under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    state: TileState = TileState.CONNECTING
    reason: str = ""
    retry_at: float | None = None
    heartbeat: float = field(default_factory=time.monotonic)
    last_frame_at: float | None = None
    ever_framed: bool = False
    frames: int = 0
    restarts: int = 0
    hw: str = "software"
    source_size: tuple[int, int] | None = None
    times: deque = field(default_factory=lambda: deque(maxlen=64))


class _Worker:
    """One decoding thread for one address; ``stop`` makes it leave at its next turn."""

    def __init__(self, decoder: Decoder, url: str, generation: int, tier: int,
                 delay_s: float):
        self.decoder = decoder
        self.url = url
        self.generation = generation
        self.tier = tier
        self.first_delay_s = delay_s
        self.stopped = threading.Event()
        self.live_since: float | None = None  # when this session showed its first picture
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()
        self.thread = threading.Thread(target=self.run, name=f"video-{decoder.label}",
                                       daemon=True)

    def current(self) -> bool:
        # A tile deleted without ``stop`` (its window torn down, the decoder a child) must
        # not leave a thread decoding, and retrying, for nobody.
        return (not self.stopped.is_set() and self.decoder._generation == self.generation
                and shiboken6.isValid(self.decoder))

    def stop(self) -> None:
        self.stopped.set()

    def beat(self) -> None:
        self.decoder._shared.heartbeat = time.monotonic()

    def run(self) -> None:
        delay = self.first_delay_s
        while self.current():
            if delay > 0:
                self._wait(delay)
                if not self.current():
                    return
            self.live_since = None
            try:
                self._session()
                if not self.current():
                    return
                raise Stalled("视频流结束" if self.decoder.lang == "zh" else "the stream ended")
            except Exception as exc:  # every failure becomes a state and a retry
                if not self.current():
                    return
                failure = classify(exc)
                if (self.live_since is not None
                        and time.monotonic() - self.live_since >= STABLE_S):
                    self.tier = 0
                delay = BACKOFF_S[min(self.tier, len(BACKOFF_S) - 1)]
                self.tier += 1
                self._failed(failure, delay)
                log.info("video %s: %s (retry in %.0f s)", self.decoder.label, failure.en, delay)

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.current():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.beat()
            self.stopped.wait(min(left, 0.2))

    def _failed(self, failure: Failure, delay: float) -> None:
        sh = self.decoder._shared
        now = time.monotonic()
        lang = self.decoder.lang
        with sh.lock:
            if not self.current():
                return
            recent = sh.last_frame_at is not None and now - sh.last_frame_at < OFFLINE_AFTER_S
            if failure.kind == "content":
                sh.state = TileState.ERROR
            elif recent:
                sh.state = TileState.RECONNECTING
            else:
                sh.state = TileState.OFFLINE
            sh.reason = failure.zh if lang == "zh" else failure.en
            sh.retry_at = now + delay
            sh.restarts += 1
        self.decoder._poke()

    def _session(self) -> None:
        """Open, decode until the stream ends or fails."""
        import av

        sh = self.decoder._shared
        with sh.lock:
            if not self.current():
                return
            if sh.state not in (TileState.RECONNECTING, TileState.ERROR, TileState.OFFLINE):
                sh.state = TileState.CONNECTING
            sh.retry_at = None
        self.decoder._poke()
        self.beat()
        url = self.url
        kwargs: dict = {"timeout": (self.decoder.open_timeout_s, self.decoder.read_timeout_s)}
        opts = open_options(url, self.decoder.read_timeout_s)
        if opts:
            kwargs["options"] = opts
        hw = hardware_choice() if self.decoder.allow_hw else None
        if hw is not None:
            try:
                from av.codec.hwaccel import HWAccel

                kwargs["hwaccel"] = HWAccel(device_type=hw, allow_software_fallback=True)
            except Exception:
                _hw_failed(hw)
                hw = None
        path = url[7:] if url.startswith("file://") else url
        container = av.open(path, **kwargs)
        try:
            if not container.streams.video:
                raise LookupError("没有视频轨")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = self.decoder.threads
            with sh.lock:
                sh.hw = hw or "software"
            try:
                self._decode(container, stream)
            except Exception:
                if hw is not None and self.live_since is None:
                    _hw_failed(hw)  # the device would not decode this: software from now on
                raise
        finally:
            container.close()

    def _decode(self, container, stream) -> None:
        decoder = self.decoder
        paced = not is_live(self.url)
        base = float(stream.time_base) if stream.time_base else 1 / 25
        start_wall = start_pts = None
        last_picture = time.monotonic()
        while self.current():
            got = False
            for packet in container.demux(stream):
                if not self.current():
                    return
                self.beat()
                for frame in packet.decode():
                    got = True
                    now = time.monotonic()
                    last_picture = now
                    if paced and frame.pts is not None:
                        t = frame.pts * base
                        if start_wall is None:
                            start_wall, start_pts = now, t
                        wait = start_wall + (t - start_pts) - now
                        if wait > 0:
                            self.stopped.wait(min(wait, 1.0))
                            if not self.current():
                                return
                    self._deliver(frame)
                    if self.live_since is None:
                        self.live_since = time.monotonic()
                if time.monotonic() - last_picture > NO_FRAME_S:
                    raise Stalled("画面中断（有数据无画面）" if decoder.lang == "zh"
                                  else "data but no picture")
            if not paced or not got:
                return  # a live stream ended (or an empty file)
            container.seek(0)  # a file plays on as a loop, like a camera would
            start_wall = start_pts = None

    def _deliver(self, frame) -> None:
        decoder = self.decoder
        sh = decoder._shared
        w, h = decoder.target_size
        tw, th = fit_size(frame.width, frame.height, w, h)
        # One scaler per worker, kept: ``frame.to_ndarray(width=…)`` would build a new
        # swscale context for every frame, which costs more than decoding one.
        scaled = self.reformatter.reformat(frame, width=tw, height=th, format="bgra",
                                           interpolation=decoder.interpolation)
        # A copy of our own, made here: the scaled frame is freed in this thread, and the
        # window gets a contiguous array (FFmpeg pads its lines).
        image = np.array(scaled.to_ndarray(), copy=True, order="C")
        del scaled
        now = time.monotonic()
        with sh.lock:
            if not self.current():  # stopped meanwhile (hidden, closed): leave its state be
                return
            sh.frames += 1
            seq = sh.frames
            sh.last_frame_at = now
            sh.ever_framed = True
            sh.times.append(now)
            sh.source_size = (frame.width, frame.height)
            became_live = sh.state != TileState.LIVE
            if became_live:
                sh.state = TileState.LIVE
                sh.reason = ""
                sh.retry_at = None
        if decoder.keep_source:
            decoder._remember(seq, frame)
        if decoder.mailbox.put(Frame(image, seq, now, time.time(), (frame.width, frame.height))):
            decoder._relay.frame_ready.emit()
        if became_live:
            decoder._poke()


# --- the decoder the window holds ------------------------------------------------------


class _WorkerSignals(QObject):
    """What a worker thread emits, on an object of its own that no widget owns.

    A worker leaves at its next turn after ``stop`` and is never waited for, so it may
    still emit after the tile (and with it the decoder's C++ object, a child) is gone.
    Emitting on a QObject while another thread deletes it is a use-after-free (a
    segfault seen in the suite); this relay has no parent, so it lives as long as
    Python holds it — the decoder's wrapper, which the worker holds — and Qt drops its
    queued connections to the decoder when the decoder is destroyed.
    """

    frame_ready = Signal()
    poked = Signal()


class Decoder(QObject):
    """A tile's stream: start/stop, the mailbox, the status, the watchdog.

    ``frame_ready`` fires (queued, in the window's thread) when the mailbox gets a
    frame after being empty: take it with ``mailbox.take()``.  ``status_changed``
    carries a :class:`Status` whenever the state, reason or countdown changes, and
    every second while live (fps and age).
    """

    frame_ready = Signal()
    status_changed = Signal(object)

    def __init__(self, url: str = "", label: str = "", lang: str = "zh",
                 target_size: tuple[int, int] = (640, 360), parent: QObject | None = None,
                 open_timeout_s: float = OPEN_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                 threads: int = 1, allow_hw: bool = True, keep_source: bool = True):
        super().__init__(parent)
        self.url = url
        self.label = label or url
        self.lang = lang
        self.target_size = target_size
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.threads = threads
        self.allow_hw = allow_hw
        self.keep_source = keep_source
        # Scaling to a tile: bilinear (with a kept scaler it costs a third of a decode; the
        # full frame is kept for snapshots).
        self.interpolation = "BILINEAR"
        self.mailbox = Mailbox()
        # The last few decoded frames at full resolution, by sequence number (a snapshot of
        # the frame a tile shows); replaced, and so freed, by the worker.
        self._sources: dict[int, object] = {}
        self._sources_lock = threading.Lock()
        self.active = False
        self._generation = 0
        self._worker: _Worker | None = None
        self._shared = _Shared()
        self._last_status: Status | None = None
        self._last_emit = 0.0
        self._watchdog = QTimer(self, interval=WATCHDOG_MS)
        self._watchdog.timeout.connect(self._check)
        self._relay = _WorkerSignals()
        self._relay.frame_ready.connect(self.frame_ready)
        self._relay.poked.connect(self._check)

    # -- control (GUI thread) --------------------------------------------------------

    def start(self) -> None:
        """Decode (again): a fresh worker, the tiers from the start."""
        self.active = True
        self._launch(tier=0, delay=0.0, fresh=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop decoding; the worker leaves at its next turn (never waited for here)."""
        self.active = False
        self._generation += 1
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._watchdog.stop()

    def set_active(self, active: bool) -> None:
        """Hidden tiles are not decoded: False stops the worker, True starts it again."""
        if active == self.active:
            return
        if active:
            self.start()
        else:
            self.stop()
            with self._shared.lock:
                self._shared.state = TileState.PAUSED
                self._shared.retry_at = None
            self._check()

    def set_url(self, url: str, label: str | None = None) -> None:
        """Switch the address (sub-stream ↔ main stream); restarts if running."""
        self.url = url
        if label:
            self.label = label
        if self.active:
            self.stop()
            self._shared = _Shared()
            self.start()

    def set_target_size(self, width: int, height: int) -> None:
        """The tile's size in device pixels: the worker scales to it from its next frame."""
        self.target_size = (max(2, int(width)), max(2, int(height)))

    def _launch(self, tier: int, delay: float, fresh: bool = False) -> None:
        self._generation += 1
        if self._worker is not None:
            self._worker.stop()
        if fresh:
            keep = self._shared
            self._shared = _Shared(last_frame_at=keep.last_frame_at,
                                   ever_framed=keep.ever_framed, restarts=keep.restarts,
                                   frames=keep.frames)
            self._shared.state = (TileState.RECONNECTING if keep.ever_framed
                                  else TileState.CONNECTING)
        self._shared.heartbeat = time.monotonic()
        if not self.url:
            self._worker = None
            with self._shared.lock:
                self._shared.state = TileState.IDLE
            self._check()
            return
        self._worker = _Worker(self, self.url, self._generation, tier, delay)
        self._worker.thread.start()

    def _poke(self) -> None:
        """From the worker: something changed, look now (queued to the GUI thread)."""
        self._relay.poked.emit()

    # -- the watchdog (GUI thread) ------------------------------------------------------

    def _check(self) -> None:
        sh = self._shared
        now = time.monotonic()
        worker = self._worker
        if self.active and worker is not None and now - sh.heartbeat > WEDGED_S:
            # Stuck outside every timeout: abandon it, start a new one after a pause.
            log.warning("video %s: worker wedged, restarting", self.label)
            tier = worker.tier + 1
            delay = BACKOFF_S[min(tier, len(BACKOFF_S) - 1)]
            with sh.lock:
                sh.state = (TileState.RECONNECTING if sh.last_frame_at is not None
                            and now - sh.last_frame_at < OFFLINE_AFTER_S else TileState.OFFLINE)
                sh.reason = "连接无响应" if self.lang == "zh" else "the connection hangs"
                sh.retry_at = now + delay
                sh.restarts += 1
            self._launch(tier, delay)
        status = self.status()
        last = self._last_status
        if (last is None or status.state != last.state or status.reason != last.reason
                or _whole(status.retry_in_s) != _whole(last.retry_in_s)
                or now - self._last_emit >= 1.0):
            self._last_status = status
            self._last_emit = now
            self.status_changed.emit(status)

    def status(self) -> Status:
        sh = self._shared
        now = time.monotonic()
        with sh.lock:
            times = [t for t in sh.times if now - t <= 2.0]
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and \
                times[-1] > times[0] else 0.0
            age = None if sh.last_frame_at is None else now - sh.last_frame_at
            retry = None if sh.retry_at is None else max(0.0, sh.retry_at - now)
            return Status(sh.state, sh.reason, retry, fps, age, sh.frames, self.mailbox.dropped,
                          sh.restarts, sh.hw, sh.source_size)

    def _remember(self, seq: int, frame) -> None:
        with self._sources_lock:
            self._sources[seq] = frame
            old = [k for k in self._sources if k <= seq - KEEP_SOURCES]
            dropped = [self._sources.pop(k) for k in old]
        del dropped  # freed here, in the worker's thread

    def with_source(self, frame: Frame) -> Frame:
        """``frame`` with its full-resolution decoded picture (the newest kept, if that
        exact one has gone), for a snapshot."""
        import dataclasses

        with self._sources_lock:
            source = self._sources.get(frame.seq)
            if source is None and self._sources:
                source = self._sources[max(self._sources)]
        return dataclasses.replace(frame, source=source)

    def shutdown(self) -> None:
        self.stop()


def _whole(x: float | None) -> int | None:
    return None if x is None else int(x + 0.999)
