"""Decoding (README: Video wall): a file, a live MJPEG stream, RTSP; the mailbox; scaling.

Every source is real: an H.264 file written here with PyAV, an MJPEG camera served
over HTTP on loopback by the test, an RTSP server on loopback (RTP over TCP).  The
pictures are flat colours that say which frame they are, so a test can tell that
what came out is what went in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from console.video.decoder import Decoder, Frame, Mailbox, TileState, fit_size
from tests.video_support import MjpegTestServer, colour_frame, make_h264_file


def collect(decoder: Decoder) -> list[Frame]:
    frames: list[Frame] = []

    def take() -> None:
        frame = decoder.mailbox.take()
        if frame is not None:
            frames.append(frame)

    decoder.frame_ready.connect(take)
    return frames


def close_to(frame: Frame, colour, tol: float = 25.0) -> bool:
    rgb = frame.rgb().reshape(-1, 3)
    return bool(np.abs(rgb.mean(axis=0) - np.array(colour)).max() <= tol)


def palette_index(frame: Frame) -> int:
    """Which of :func:`colour_frame`'s colours a decoded picture shows."""
    mean = frame.rgb().reshape(-1, 3).mean(axis=0)
    dists = [np.abs(mean - colour_frame(k, (2, 2))[0, 0]).max() for k in range(8)]
    return int(np.argmin(dists))


def test_a_file_decodes_paced_and_scaled_in_the_worker(qtbot, tmp_path):
    path = tmp_path / "clip.mp4"
    made = make_h264_file(path, frames=50, size=(320, 180), fps=25)
    dec = Decoder(str(path), "file", target_size=(160, 120))
    frames = collect(dec)
    dec.start()
    try:
        qtbot.waitUntil(lambda: len(frames) >= 12, timeout=15_000)
        status = dec.status()
        assert status.state == TileState.LIVE
        assert status.source_size == (320, 180)
        # Scaled in the worker to the tile, keeping the shape: 160 wide, 90 high.
        assert frames[-1].image.shape == (90, 160, 4)  # B, G, R, A: a QImage as it is
        assert fit_size(320, 180, 160, 120) == (160, 90)
        # What came out is what went in: the first picture is frame 0's colour.
        assert close_to(frames[0], made[0][0, 0])
        # The full-resolution frame of the one shown is kept for a snapshot.
        assert dec.with_source(frames[-1]).source.width == 320
        # A file plays at its own rate (25 fps), not as fast as it decodes (~650 fps):
        # 12 frames came in about half a second, so fewer than 60 by now.
        assert dec.status().frames < 60
    finally:
        dec.shutdown()


def test_a_file_plays_on_as_a_loop(qtbot, tmp_path):
    path = tmp_path / "short.mp4"
    make_h264_file(path, frames=10, size=(64, 48), fps=25)
    dec = Decoder(str(path), "loop", target_size=(64, 48))
    collect(dec)
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().frames > 25, timeout=15_000)
        assert dec.status().state == TileState.LIVE
    finally:
        dec.shutdown()


def test_a_live_mjpeg_stream_from_loopback_decodes(qtbot):
    server = MjpegTestServer(fps=25, size=(320, 180))
    dec = Decoder(server.url, "mjpeg", target_size=(320, 180))
    frames = collect(dec)
    dec.start()
    try:
        qtbot.waitUntil(lambda: len(frames) >= 10, timeout=15_000)
        assert dec.status().state == TileState.LIVE
        # The server sends colour n for frame n: consecutive pictures step through them.
        seen = [palette_index(f) for f in frames[-6:]]
        steps = {(b - a) % 8 for a, b in itertools.pairwise(seen)}
        assert steps <= {1, 2, 3}  # in order (a step over a frame the window dropped)
        assert frames[-1].rgb().shape == (180, 320, 3)
    finally:
        dec.shutdown()
        server.stop()


def test_rtsp_over_tcp_from_loopback_decodes(qtbot):
    """RTSP as street cameras speak it: DESCRIBE, SETUP (interleaved TCP), PLAY, RTP H.264.

    The server is ``console.video.rtsp_server`` (no ``ffmpeg`` program or camera needed);
    the client is FFmpeg's own RTSP demuxer inside PyAV."""
    from console.video.rtsp_server import H264Broadcast, RtspServer, encode_clip

    units = encode_clip((colour_frame(n // 5, (320, 180)) for n in range(50)), fps=25)
    cast = H264Broadcast("cam", units)
    server = RtspServer(lambda path: cast if path == "cam" else None).start()
    dec = Decoder(server.url("cam"), "rtsp", target_size=(320, 180))
    frames = collect(dec)
    dec.start()
    try:
        qtbot.waitUntil(lambda: len(frames) >= 10, timeout=20_000)
        assert dec.status().state == TileState.LIVE
        assert frames[-1].rgb().shape == (180, 320, 3)
        assert any(palette_index(f) != palette_index(frames[0]) for f in frames)
    finally:
        dec.shutdown()
        cast.drop_clients()
        server.stop()


def test_rtsp_unknown_path_is_an_error_with_its_reason(qtbot):
    from console.video.rtsp_server import RtspServer

    server = RtspServer(lambda path: None).start()
    dec = Decoder(server.url("nothing"), "rtsp404", target_size=(64, 48))
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().state in (TileState.ERROR, TileState.OFFLINE),
                        timeout=15_000)
        assert dec.status().frames == 0
    finally:
        dec.shutdown()
        server.stop()


def test_the_mailbox_keeps_the_newest_frame_and_counts_the_dropped():
    box = Mailbox()
    f = [Frame(np.zeros((2, 2, 3), np.uint8), n, 0.0, 0.0, (2, 2)) for n in range(1, 5)]
    assert box.put(f[0]) is True  # was empty: tell the window
    assert box.put(f[1]) is False  # the window had not taken frame 1: it is dropped
    assert box.put(f[2]) is False
    assert box.dropped == 2
    assert box.take().seq == 3  # the newest
    assert box.take() is None
    assert box.put(f[3]) is True
    assert (box.delivered, box.dropped) == (1, 2)


def test_a_window_that_does_not_take_frames_drops_them_rather_than_queueing(qtbot, tmp_path):
    path = tmp_path / "clip.mp4"
    make_h264_file(path, frames=50, size=(64, 48))
    dec = Decoder(str(path), "slow", target_size=(64, 48))
    dec.start()  # nobody takes a frame
    try:
        qtbot.waitUntil(lambda: dec.status().frames >= 10, timeout=15_000)
        status = dec.status()
        # One frame waits in the mailbox; every other decoded one was dropped.
        assert status.dropped == status.frames - 1 or status.dropped == status.frames - 2
        assert dec.mailbox.take() is not None and dec.mailbox.take() is None
    finally:
        dec.shutdown()


def test_a_hidden_tile_is_not_decoded(qtbot, tmp_path):
    path = tmp_path / "clip.mp4"
    make_h264_file(path, frames=50, size=(64, 48))
    dec = Decoder(str(path), "hidden", target_size=(64, 48))
    frames = collect(dec)
    dec.start()
    try:
        qtbot.waitUntil(lambda: len(frames) >= 5, timeout=15_000)
        dec.set_active(False)
        qtbot.waitUntil(lambda: dec.status().state == TileState.PAUSED, timeout=5_000)
        worker_threads = [t for t in __import__("threading").enumerate()
                          if t.name == "video-hidden"]
        qtbot.waitUntil(lambda: not any(t.is_alive() for t in worker_threads), timeout=5_000)
        count = dec.status().frames
        qtbot.wait(600)
        assert dec.status().frames == count  # nothing decoded while hidden
        dec.set_active(True)
        qtbot.waitUntil(lambda: dec.status().frames > count, timeout=10_000)
    finally:
        dec.shutdown()


@pytest.mark.parametrize("src,box,expected", [
    ((1920, 1080), (480, 270), (480, 270)),
    ((1920, 1080), (400, 400), (400, 224)),
    ((640, 360), (1280, 1000), (1280, 720)),
    ((720, 576), (300, 300), (300, 240)),
])
def test_fit_size_keeps_the_shape_in_even_pixels(src, box, expected):
    assert fit_size(*src, *box) == expected


def test_a_decoder_destroyed_with_its_tile_stops_its_worker(qtbot, tmp_path):
    """A tile deleted with its window (no ``stop``) left its worker decoding, emitting on
    a destroyed Qt object from another thread (a segfault in the suite) and retrying."""
    import shiboken6
    from PySide6.QtCore import QObject

    path = tmp_path / "clip.mp4"
    make_h264_file(path, frames=50, size=(320, 180), fps=25)
    tile = QObject()
    dec = Decoder(str(path), "loop", target_size=(64, 48), parent=tile)
    frames = collect(dec)
    dec.start()
    qtbot.waitUntil(lambda: len(frames) >= 5, timeout=15_000)
    thread = dec._worker.thread
    shiboken6.delete(tile)  # the window goes; the decoder, its child, with it
    assert not shiboken6.isValid(dec)
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=15_000)
