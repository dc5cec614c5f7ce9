"""Video wall benchmark: 4, 9 and 16 tiles of 640×360 H.264 at 25 fps plus a 1080p focus tile.

The streams are RTSP over TCP on loopback (``console.video.rtsp_server``, in a process of
its own so its work is not counted as the console's): every camera sends a street
scene (the demo's, :mod:`console.video.scene`, with a camera's grain, encoded as a camera
encodes: see ``_clip``) with a frame counter burned into its top left as a row of black
and white blocks (a white start block, 8 bits, a black end block), looping every 8 s.
The server notes when it sent each counter value.

The console side is the real wall (``widgets.video.wall.VideoWall``, offscreen, 1920×1080)
with one more tile of its own, 1280×720, decoding the 1920×1080 main stream (the focus).
Each time a tile paints a new frame it reads the counter back from the pixels it
paints: shown − sent is the glass-to-glass latency on loopback (to the paint: offscreen
there is no display scan-out after it).  Per tile: frames shown per second, and the
frames decoded but not shown (replaced in the mailbox before the window took them).
CPU: the console process's user+system time over the measured seconds (``psutil``),
in cores.

Beside it, in the same run, the same streams in one QtMultimedia ``QMediaPlayer`` per
tile, each into a ``QVideoSink`` and painted by ``QVideoFrame.paint`` in a widget of
the tile's size (what a QWidget wall does without a GPU), the counter read from the
frame's luma plane; and the ratio.

Prints figures and ends with one JSON line, each figure beside its aim.

    .venv/bin/python bench/video.py [--seconds 10] [--warmup 4] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AIM_FPS = 24.0
AIM_LATENCY_P95_MS = 200.0
AIM_CORES = 1.5
FPS = 25
FRAMES = 200  # an 8 s loop: the counter is unambiguous under 8 s of latency
TILE_COUNTS = (4, 9, 16)
LAYOUT_OF = {4: "2x2", 9: "3x3", 16: "4x4"}
BITS = 8
WALL_SIZE = (1920, 1080)
FOCUS_TILE = (1280, 720)


# --- the counter, in pixels ------------------------------------------------------------


def block_px(width: int) -> int:
    return max(8, width // 40)


def burn_counter(img: np.ndarray, n: int) -> None:
    """Blocks across the top left: white, the 8 bits of ``n`` (MSB first), black."""
    b = block_px(img.shape[1])
    cells = [1] + [(n >> (BITS - 1 - i)) & 1 for i in range(BITS)] + [0]
    img[: b + 4, : b * len(cells) + 4] = 128
    for i, bit in enumerate(cells):
        img[2:2 + b, 2 + i * b:2 + (i + 1) * b] = 255 if bit else 0


def read_counter(luma, width: int, src_width: int) -> int | None:
    """The counter from a picture's luminance at ``width`` pixels wide (the source was
    ``src_width``), or None when the start and end blocks are not there."""
    scale = width / src_width
    b = block_px(src_width) * scale
    y = int((2 + block_px(src_width) / 2) * scale)
    values = []
    for i in range(BITS + 2):
        x = int((2 + (i + 0.5) * block_px(src_width)) * scale)
        values.append(luma(x, y))
    if b < 3 or values[0] < 160 or values[-1] > 95:
        return None
    n = 0
    for v in values[1:-1]:
        n = (n << 1) | (1 if v >= 128 else 0)
    return n


# --- the streams (a process of their own) ------------------------------------------------


BITRATE = {640: 800_000, 1920: 4_000_000}  # a camera's sub-stream and main stream


def _clip(size: tuple[int, int], code: str):
    """The demo's street with a camera's grain (a fixed texture and sensor noise), encoded
    as a camera does (x264 ``veryfast``: CABAC, deblocking; 0.8 / 4 Mbit/s; a key frame a
    second): decoding it costs what a camera's stream costs (about 1 ms a 640×360 frame,
    8 ms a 1080p one here), which the flat colours alone would not."""
    from console.video.rtsp_server import encode_clip
    from console.video.scene import render_frames

    rng = np.random.default_rng(1)
    w, h = size
    texture = rng.integers(-25, 26, (h, w, 1)).astype(np.int16)
    noise = [rng.integers(-3, 4, (h, w, 1)).astype(np.int16) for _ in range(FPS)]

    def frames():
        for n, img in enumerate(render_frames(code, "", size, None)):
            if n >= FRAMES:
                return
            img = np.clip(img.astype(np.int16) + texture + noise[n % FPS], 0, 255)
            img = img.astype(np.uint8)
            burn_counter(img, n)
            yield img

    return encode_clip(frames(), fps=FPS, gop=FPS, bitrate=BITRATE[w], preset="veryfast")


def serve(ready, port_value, sent_arrays, stop) -> None:
    """The RTSP server process: ``s0`` … ``s15`` (640×360) and ``focus`` (1920×1080)."""
    from console.video.rtsp_server import H264Broadcast, RtspServer

    small = _clip((640, 360), "BENCH")
    big = _clip((1920, 1080), "FOCUS")
    casts = {}
    for i in range(max(TILE_COUNTS)):
        casts[f"s{i}"] = H264Broadcast(f"s{i}", small, FPS)
    casts["focus"] = H264Broadcast("focus", big, FPS)
    for k, (_name, cast) in enumerate(sorted(casts.items())):
        cast.sent = sent_arrays[k]  # shared with the console process: when each went out
    server = RtspServer(casts.get).start()
    port_value.value = server.port
    ready.set()
    stop.wait()
    server.stop()


# --- measuring -----------------------------------------------------------------------------


class Meter:
    """Frames shown and latencies per tile, from the pixels painted."""

    def __init__(self, sent_of: dict):
        self.sent_of = sent_of  # stream name → shared array of send times
        self.shown: dict[str, int] = {}
        self.latency_ms: dict[str, list[float]] = {}
        self.unread: dict[str, int] = {}
        self.on = False

    def note(self, stream: str, counter: int | None, painted_at: float,
             src_frames: int = FRAMES) -> None:
        if not self.on:
            return
        self.shown[stream] = self.shown.get(stream, 0) + 1
        if counter is None or counter >= src_frames:
            self.unread[stream] = self.unread.get(stream, 0) + 1
            return
        sent = self.sent_of[stream][counter]
        if sent > 0:
            self.latency_ms.setdefault(stream, []).append((painted_at - sent) * 1000.0)


def summary(meter: Meter, streams: list[str], seconds: float, cpu_s: float,
            dropped: dict[str, int] | None = None) -> dict:
    fps = {s: meter.shown.get(s, 0) / seconds for s in streams}
    lat = [v for s in streams for v in meter.latency_ms.get(s, [])]
    grid = [s for s in streams if s != "focus"]
    out = {
        "tiles": len(grid),
        "fps_min": round(min(fps[s] for s in grid), 1),
        "fps_mean": round(sum(fps[s] for s in grid) / len(grid), 1),
        "focus_fps": round(fps.get("focus", 0.0), 1),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat else None,
        "latency_samples": len(lat),
        "unread_counters": sum(meter.unread.values()),
        "cores": round(cpu_s / seconds, 2),
        # CPU per frame shown: comparable between players that show different numbers.
        "cpu_ms_per_shown_frame": round(1000 * cpu_s / max(1, sum(meter.shown.get(s, 0)
                                                                  for s in streams)), 2),
    }
    if dropped is not None:
        out["dropped"] = sum(dropped.values())
        out["dropped_per_tile_per_s"] = round(sum(dropped.values()) / len(streams) / seconds, 2)
    return out


def run_ours(app, url_of, meter: Meter, n: int, seconds: float, warmup: float, proc) -> dict:
    from console.video.wall_model import CameraDirectory
    from widgets.video.tile import VideoTile
    from widgets.video.wall import VideoWall

    directory = CameraDirectory(None)
    names = [f"s{i}" for i in range(n)]
    directory.cameras = {s: {"code": s, "name": s, "url": url_of(s), "sub_url": url_of(s),
                             "groups": []} for s in names}
    directory.is_loaded = True
    wall = VideoWall(directory, "en")
    wall.resize(*WALL_SIZE)
    wall.split.setSizes([0, WALL_SIZE[0]])  # the wall alone, no camera list
    wall.show()
    wall.show_cameras(names, LAYOUT_OF[n])
    focus = VideoTile(99, "en")
    focus.resize(*FOCUS_TILE)
    focus.show()
    focus.set_camera({"code": "focus", "name": "focus"}, url_of("focus"), focus=True)

    def hook(stream: str, src_w: int):
        def on_frame(_tile, frame, painted_mono) -> None:
            img = frame.image  # B, G, R, A: luminance ≈ the green byte for grey blocks
            w = img.shape[1]
            counter = read_counter(lambda x, y: int(img[y, x, 1]), w, src_w)
            meter.note(stream, counter, time.time() - (time.monotonic() - painted_mono))
        return on_frame

    tiles = {s: wall.tiles[i] for i, s in enumerate(names)}
    tiles["focus"] = focus
    for s, t in tiles.items():
        t.on_frame = hook(s, 1920 if s == "focus" else 640)
    _spin(app, warmup)
    decoded0 = {s: t.decoder.status().frames for s, t in tiles.items()}
    shown0 = {s: t.shown for s, t in tiles.items()}
    meter.on = True
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    _spin(app, seconds)
    elapsed = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    meter.on = False
    dropped = {s: max(0, (t.decoder.status().frames - decoded0[s]) - (t.shown - shown0[s]))
               for s, t in tiles.items()}
    hw = sorted({t.decoder.status().hw for t in tiles.values()})
    wall.shutdown()
    focus.shutdown()
    wall.deleteLater()
    focus.deleteLater()
    _spin(app, 1.5)  # the workers leave
    out = summary(meter, [*names, "focus"], elapsed, cpu, dropped)
    out["decoding"] = hw
    return out


def run_baseline(app, url_of, meter: Meter, n: int, seconds: float, warmup: float,
                 proc) -> dict:
    """One QMediaPlayer per tile, painted by QVideoFrame.paint at the tile's size."""
    from PySide6.QtCore import QRect, QUrl
    from PySide6.QtGui import QPainter
    from PySide6.QtMultimedia import QMediaPlayer, QVideoFrame, QVideoSink
    from PySide6.QtWidgets import QGridLayout, QWidget

    side = {4: 2, 9: 3, 16: 4}[n]

    class Tile(QWidget):
        def __init__(self, stream: str, src_w: int):
            super().__init__()
            self.stream, self.src_w = stream, src_w
            self.frame: QVideoFrame | None = None
            self.sink = QVideoSink(self)
            self.sink.videoFrameChanged.connect(self._frame)
            self.player = QMediaPlayer(self)
            self.player.setVideoSink(self.sink)
            self.player.setSource(QUrl(url_of(stream)))
            self.player.play()

        def _frame(self, frame: QVideoFrame) -> None:
            self.frame = frame
            self.update()

        def paintEvent(self, _event) -> None:
            frame = self.frame
            if frame is None or not frame.isValid():
                return
            p = QPainter(self)
            frame.paint(p, QRect(0, 0, self.width(), self.height()),
                        QVideoFrame.PaintOptions())
            p.end()
            counter = None
            if frame.map(QVideoFrame.MapMode.ReadOnly):
                try:
                    stride = frame.bytesPerLine(0)
                    plane = memoryview(frame.bits(0))
                    w = frame.width()
                    # Plane 0: luma (YUV formats, 1 byte a pixel) or packed RGB (4 bytes:
                    # the green byte stands for the grey blocks' brightness).
                    step = 4 if stride >= 4 * w else 1
                    off = 1 if step == 4 else 0
                    counter = read_counter(lambda x, y: plane[y * stride + x * step + off], w,
                                           self.src_w)
                finally:
                    frame.unmap()
            meter.note(self.stream, counter, time.time())

    host = QWidget()
    grid = QGridLayout(host)
    grid.setContentsMargins(2, 2, 2, 2)
    grid.setSpacing(2)
    names = [f"s{i}" for i in range(n)]
    tiles = {}
    for i, s in enumerate(names):
        tiles[s] = Tile(s, 640)
        grid.addWidget(tiles[s], i // side, i % side)
    host.resize(*WALL_SIZE)
    host.show()
    focus = Tile("focus", 1920)
    focus.resize(*FOCUS_TILE)
    focus.show()
    tiles["focus"] = focus
    _spin(app, warmup)
    meter.on = True
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    _spin(app, seconds)
    elapsed = time.monotonic() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    meter.on = False
    for t in tiles.values():
        t.player.stop()
    host.close()
    focus.close()
    _spin(app, 1.5)
    return summary(meter, [*names, "focus"], elapsed, cpu)


def _spin(_app, seconds: float) -> None:
    """Run the event loop for ``seconds``, as ``app.exec()`` runs the console's."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from bench.benchdb import machine_load

    load_before = os.getloadavg()[0]
    ctx = mp.get_context("spawn")
    stream_names = sorted([f"s{i}" for i in range(max(TILE_COUNTS))] + ["focus"])
    sent_arrays = [ctx.Array("d", FRAMES, lock=False) for _ in stream_names]
    ready, stop, port = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    print("encoding the clips and starting the RTSP server (its own process)…", flush=True)
    server = ctx.Process(target=serve, args=(ready, port, sent_arrays, stop), daemon=True)
    server.start()
    if not ready.wait(600):
        print("the stream server did not start", file=sys.stderr)
        return 1
    sent_of = dict(zip(stream_names, sent_arrays, strict=True))

    def url_of(stream: str) -> str:
        return f"rtsp://127.0.0.1:{port.value}/{stream}"

    import psutil

    from widgets.app import make_app

    app = make_app()
    proc = psutil.Process()
    results: dict = {"ours": {}, "baseline": {}}
    if not args.skip_baseline:
        try:
            import PySide6.QtMultimedia  # noqa: F401  (PySide6-Addons: the bench extra)
        except ImportError:
            print("QtMultimedia is not installed (pip install -e \".[bench]\"): the baseline "
                  "is skipped", flush=True)
            args.skip_baseline = True
    for n in TILE_COUNTS:
        r = run_ours(app, url_of, Meter(sent_of), n, args.seconds, args.warmup, proc)
        results["ours"][n] = r
        print(f"ours     {n:2d} tiles + 1080p focus: shown {r['fps_min']}–{r['fps_mean']} fps "
              f"(min–mean per tile, aim ≥ {AIM_FPS:g}), focus {r['focus_fps']} fps, "
              f"latency p50 {r['latency_p50_ms']} ms p95 {r['latency_p95_ms']} ms "
              f"(aim ≤ {AIM_LATENCY_P95_MS:g}), dropped {r['dropped']} "
              f"({r['dropped_per_tile_per_s']}/tile/s), CPU {r['cores']} cores "
              f"(aim < {AIM_CORES:g}); decoding {', '.join(r['decoding'])}", flush=True)
        if not args.skip_baseline:
            # QtMultimedia opens a stream more slowly: twice the warm-up, so it is playing.
            b = run_baseline(app, url_of, Meter(sent_of), n, args.seconds, 2 * args.warmup,
                             proc)
            results["baseline"][n] = b
            per = b["cpu_ms_per_shown_frame"] / max(0.01, r["cpu_ms_per_shown_frame"])
            print(f"QtMultimedia {n:2d} tiles + focus: shown {b['fps_min']}–{b['fps_mean']} "
                  f"fps, focus {b['focus_fps']} fps, latency p50 {b['latency_p50_ms']} ms "
                  f"p95 {b['latency_p95_ms']} ms, CPU {b['cores']} cores "
                  f"({b['cpu_ms_per_shown_frame']} ms a shown frame, ours "
                  f"{r['cpu_ms_per_shown_frame']}: ratio {per:.2f})", flush=True)
    stop.set()
    server.join(10)
    top = results["ours"][max(TILE_COUNTS)]
    line = {
        "bench": "video",
        "ours": results["ours"],
        "baseline_qtmultimedia": results["baseline"],
        "aims": {"fps_each": AIM_FPS, "focus_fps": AIM_FPS,
                 "latency_p95_ms": AIM_LATENCY_P95_MS, "cores": AIM_CORES},
        "meets_aims_16": bool(top["fps_min"] >= AIM_FPS and top["focus_fps"] >= AIM_FPS
                              and (top["latency_p95_ms"] or 1e9) <= AIM_LATENCY_P95_MS
                              and top["cores"] < AIM_CORES),
        "cpu_per_shown_frame_ratio_baseline_over_ours": {
            n: round(results["baseline"][n]["cpu_ms_per_shown_frame"]
                     / max(0.01, results["ours"][n]["cpu_ms_per_shown_frame"]), 2)
            for n in results["baseline"]},
        "machine": machine_load(load_before),
    }
    print(json.dumps(line, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
