"""The demo's camera scenes: a street with traffic, the camera's name, made with PyAV.

Each demo camera gets a short looping clip of its own (a seed from its code: the
buildings, the colours, the traffic differ), a main stream (960×540) and a
sub-stream (480×270), H.264 in MP4, written once under the data directory.  The
MJPEG server burns the running clock in as it sends (:mod:`console.video.demo`).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from console.video.glyphs import stamp, text_mask

SCENE_VERSION = 1
FPS = 25
SECONDS = 8
MAIN_SIZE = (960, 540)
SUB_SIZE = (480, 270)

# A renderer for names the bitmap font cannot draw (Chinese): text, pixel height → mask.
TextMask = Callable[[str, int], np.ndarray]


@dataclass(frozen=True)
class Scene:
    code: str
    main: Path
    sub: Path


def scene_dir(root: Path, code: str) -> Path:
    return Path(root) / f"v{SCENE_VERSION}" / code


def scene_paths(root: Path, code: str) -> Scene:
    d = scene_dir(root, code)
    return Scene(code, d / "main.mp4", d / "sub.mp4")


def _rng(code: str) -> random.Random:
    return random.Random(int(hashlib.sha256(code.encode()).hexdigest()[:12], 16))


def _background(w: int, h: int, rng: random.Random) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    horizon = int(h * 0.45)
    sky = np.linspace(0, 1, horizon)[:, None]
    top, bottom = np.array([70, 110, 170]), np.array([170, 195, 220])
    img[:horizon] = (top * (1 - sky) + bottom * sky)[:, None, :].astype(np.uint8)
    x = 0
    while x < w:  # a row of buildings
        bw = rng.randint(w // 14, w // 6)
        bh = rng.randint(h // 8, int(h * 0.38))
        shade = rng.randint(70, 150)
        tint = np.array([shade, shade - rng.randint(0, 25), shade - rng.randint(0, 40)])
        img[horizon - bh:horizon, x:x + bw] = np.clip(tint, 0, 255)
        for wy in range(horizon - bh + 8, horizon - 8, 18):  # windows
            for wx in range(x + 6, x + bw - 10, 16):
                if rng.random() < 0.6:
                    img[wy:wy + 8, wx:wx + 7] = (220, 210, 150)
        x += bw + rng.randint(2, 12)
    img[horizon:] = (95, 100, 95)  # pavement
    road0, road1 = int(h * 0.58), int(h * 0.92)
    img[road0:road1] = (55, 57, 60)
    mid = (road0 + road1) // 2
    for lx in range(0, w, 60):
        img[mid - 2:mid + 2, lx:lx + 30] = (230, 230, 230)
    return img


def _movers(w: int, h: int, rng: random.Random) -> list[dict]:
    """Cars and walkers whose paths loop exactly over the clip."""
    frames = FPS * SECONDS
    road0, road1 = int(h * 0.58), int(h * 0.92)
    mid = (road0 + road1) // 2
    out = []
    for k in range(5):
        cw, ch = rng.randint(w // 12, w // 8), rng.randint(h // 16, h // 11)
        lane_top = k % 2 == 0
        y = rng.randint(road0 + 4, mid - ch - 4) if lane_top else rng.randint(mid + 4,
                                                                              road1 - ch - 4)
        laps = rng.randint(1, 2)
        out.append({"w": cw, "h": ch, "y": y, "x0": rng.randint(0, w),
                    "v": (1 if lane_top else -1) * laps * (w + cw) / frames,
                    "color": (rng.randint(60, 240), rng.randint(40, 220), rng.randint(40, 220)),
                    "span": w + cw})
    for _ in range(6):
        pw, ph = max(3, w // 120), max(8, h // 22)
        y = rng.randint(int(h * 0.46), road0 - ph - 2)
        out.append({"w": pw, "h": ph, "y": y, "x0": rng.randint(0, w),
                    "v": rng.choice([-1, 1]) * (w + pw) / frames, "span": w + pw,
                    "color": (rng.randint(20, 90), rng.randint(20, 90), rng.randint(60, 200))})
    return out


def render_frames(code: str, name: str, size: tuple[int, int], name_mask: np.ndarray | None):
    """The clip's frames (RGB arrays), the same for the same code."""
    w, h = size
    rng = _rng(code)
    bg = _background(w, h, rng)
    movers = _movers(w, h, rng)
    label = text_mask(code, scale=max(2, h // 180))
    for n in range(FPS * SECONDS):
        img = bg.copy()
        for m in movers:
            x = int((m["x0"] + m["v"] * n) % m["span"]) - m["w"]
            x0, x1 = max(0, x), min(w, x + m["w"])
            if x1 > x0:
                img[m["y"]:m["y"] + m["h"], x0:x1] = m["color"]
        # The camera's own caption, top right (the tile writes its label top left).
        x = w - label.shape[1] - 12
        if name_mask is not None and name_mask.size:
            x -= name_mask.shape[1] + 10
            stamp(img, name_mask, x + label.shape[1] + 10, 10, (255, 230, 120), (0, 0, 0))
        stamp(img, label, x, 10 + max(0, (0 if name_mask is None else name_mask.shape[0]
                                          - label.shape[0]) // 2), (255, 255, 255), (0, 0, 0))
        yield img


def make_scene(root: Path, code: str, name: str, text: TextMask | None = None) -> Scene:
    """Write the camera's main and sub clip under ``root`` (once; atomically)."""
    import av

    paths = scene_paths(root, code)
    if paths.main.exists() and paths.sub.exists():
        return paths
    paths.main.parent.mkdir(parents=True, exist_ok=True)
    masks = {}
    for size in (MAIN_SIZE, SUB_SIZE):
        masks[size] = None
        if text is not None and name:
            try:
                masks[size] = text(name, max(12, size[1] // 22))
            except Exception:  # no font: the code alone says which camera it is
                masks[size] = None
    tmp = {p: p.with_suffix(f".tmp{os.getpid()}.mp4") for p in (paths.main, paths.sub)}
    outs = {}
    try:
        for path, size in ((paths.main, MAIN_SIZE), (paths.sub, SUB_SIZE)):
            out = av.open(str(tmp[path]), "w")
            st = out.add_stream("libx264", rate=FPS)
            st.width, st.height = size
            st.pix_fmt = "yuv420p"
            st.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(FPS),
                          "crf": "26"}
            outs[path] = (out, st, size)
        frames = {path: render_frames(code, name, size, masks[size])
                  for path, (_o, _s, size) in outs.items()}
        for _ in range(FPS * SECONDS):
            for path, (out, st, _size) in outs.items():
                img = next(frames[path])
                for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for out, st, _size in outs.values():
            for packet in st.encode():
                out.mux(packet)
            out.close()
        for path in (paths.main, paths.sub):
            os.replace(tmp[path], path)
    finally:
        for t in tmp.values():
            if t.exists():
                t.unlink()
    return paths
