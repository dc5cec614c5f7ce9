"""Still images with PyAV's encoders: JPEG for MJPEG streams, PNG for snapshots.

``console/`` has no QtGui; PyAV's FFmpeg has both encoders, and a PNG snapshot is
lossless, so the evidence a case gets is exactly the frame the tile showed.
"""

from __future__ import annotations

import fractions
import threading

import numpy as np


class JpegEncoder:
    """Encodes RGB frames of one size to JPEG (``qscale`` 2 best … 31 worst)."""

    def __init__(self, width: int, height: int, qscale: int = 5):
        import av

        self.width, self.height = width, height
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuvj420p"
        ctx.time_base = fractions.Fraction(1, 25)
        ctx.options = {"qscale": str(qscale)}
        self._ctx = ctx
        self._n = 0
        self._lock = threading.Lock()

    def encode(self, rgb: np.ndarray) -> bytes:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if (frame.width, frame.height) != (self.width, self.height):
            frame = frame.reformat(width=self.width, height=self.height)
        frame = frame.reformat(format="yuvj420p")
        with self._lock:
            frame.pts = self._n
            self._n += 1
            packets = self._ctx.encode(frame)
        return b"".join(bytes(p) for p in packets)


def encode_png(rgb: np.ndarray) -> bytes:
    """A lossless PNG of an RGB array (h, w, 3)."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = "rgb24"
    ctx.time_base = fractions.Fraction(1, 25)
    frame.pts = 0
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def decode_image(data: bytes) -> np.ndarray:
    """An encoded still (PNG, JPEG) back to RGB (h, w, 3)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError("no picture in the image")


def frame_rgb(source) -> np.ndarray:
    """The full-resolution RGB of a decoded ``av.VideoFrame`` (a snapshot's pixels)."""
    return source.to_ndarray(format="rgb24")
