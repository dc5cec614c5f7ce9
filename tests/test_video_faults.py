"""A dying stream never freezes the window (README: Video wall, "Tile states").

Each fault a camera has, on loopback: the stream killed mid-way and back, an address
that accepts and never answers, one that answers garbage, one that stops mid-frame;
and an address nobody listens on, retried in the back-off tiers.  Throughout, a timer
on the GUI thread ticks every 5 ms: the longest gap between its ticks is the longest
the event loop stood still, and it must stay under 100 ms (the issue's measure); the
time the thread only waited for a CPU the machine's other work held is not counted
(``tests.video_support.TickRecorder``).
"""

from __future__ import annotations

import pytest

from console.video.decoder import BACKOFF_S, Decoder, TileState
from tests.video_support import MjpegTestServer, SilentServer, TickRecorder, free_port

MAX_STALL_MS = 100
TIMEOUT_S = 1.5  # the test decoders' open and read timeouts (the console's are 5 s)


def decoder(url: str, label: str) -> Decoder:
    dec = Decoder(url, label, target_size=(160, 90), open_timeout_s=TIMEOUT_S,
                  read_timeout_s=TIMEOUT_S)
    states: list[TileState] = []
    dec.status_changed.connect(lambda s: states.append(s.state))
    dec.frame_ready.connect(dec.mailbox.take)
    dec.states = states
    return dec


@pytest.fixture
def ticks(qtbot):
    import gc

    # The garbage the suite's earlier tests left is collected now, not during the
    # measure: a full collection holds every thread of the process, the wall's or not.
    gc.collect()
    rec = TickRecorder().start()
    yield rec
    rec.stop()


def test_a_stream_killed_mid_way_reconnects_and_recovers(qtbot, ticks):
    server = MjpegTestServer(fps=25)
    dec = decoder(server.url, "killed")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().state == TileState.LIVE, timeout=10_000)
        qtbot.waitUntil(lambda: dec.status().frames >= 10, timeout=10_000)
        server.kill()
        qtbot.waitUntil(lambda: dec.status().state == TileState.RECONNECTING, timeout=10_000)
        status = dec.status()
        assert status.retry_in_s is not None  # "reconnecting in N s"
        assert status.retry_in_s <= BACKOFF_S[1]  # the first tiers: it was live a moment ago
        before = dec.status().frames
        server.revive()
        qtbot.waitUntil(lambda: dec.status().state == TileState.LIVE
                        and dec.status().frames > before, timeout=20_000)
        assert TileState.RECONNECTING in dec.states
        assert server.connections >= 2  # it came back on a new connection
    finally:
        dec.shutdown()
        server.stop()
    assert ticks.ticks > 50
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")


def test_an_address_that_never_answers_ends_offline(qtbot, ticks):
    silent = SilentServer()
    dec = decoder(silent.url, "silent")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().state == TileState.OFFLINE, timeout=15_000)
        status = dec.status()
        assert status.frames == 0
        assert "超时" in status.reason  # no answer (timed out)
        assert status.retry_in_s is not None
        assert silent.held  # it did connect: the silence is the server's
    finally:
        dec.shutdown()
        silent.stop()
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")


def test_an_address_that_answers_garbage_ends_in_error_with_the_reason(qtbot, ticks):
    server = MjpegTestServer(mode="garbage")
    dec = decoder(server.url, "garbage")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().state == TileState.ERROR, timeout=15_000)
        status = dec.status()
        assert status.frames == 0
        assert status.reason == "不是可识别的视频流"
    finally:
        dec.shutdown()
        server.stop()
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")


def test_a_stream_that_stalls_mid_frame_reconnects(qtbot, ticks):
    server = MjpegTestServer(mode="stall", frames_before_stall=15)
    dec = decoder(server.url, "stall")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().frames >= 5, timeout=10_000)
        qtbot.waitUntil(lambda: dec.status().state == TileState.RECONNECTING, timeout=15_000)
        assert dec.status().frames <= 15  # nothing after the frame that was cut off
        # It keeps trying: the server is still there, so it connects (and stalls) again.
        qtbot.waitUntil(lambda: server.connections >= 2, timeout=15_000)
    finally:
        dec.shutdown()
        server.stop()
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")


def test_a_refused_address_is_retried_in_the_back_off_tiers(qtbot, ticks):
    """README: retries after 1, 2, 5, 10, 20, then every 30 s, never giving up."""
    dec = decoder(f"http://127.0.0.1:{free_port()}/cam.mjpg", "refused")
    waits: list[float] = []

    def note(status) -> None:
        if status.state == TileState.OFFLINE and status.retry_in_s is not None:
            if not waits or status.retry_in_s > waits[-1] + 0.3:  # a new failure
                waits.append(status.retry_in_s)

    dec.status_changed.connect(note)
    dec.start()
    try:
        qtbot.waitUntil(lambda: len(waits) >= 3, timeout=20_000)
        assert dec.status().reason == "连接被拒绝"
        # The first wait of each failure is its tier (less the time to notice it).
        for got, tier in zip(waits[:3], (1.0, 2.0, 5.0), strict=True):
            assert tier - 0.5 <= got <= tier, waits
        assert BACKOFF_S[:3] == (1.0, 2.0, 5.0)
    finally:
        dec.shutdown()
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")


def test_a_stream_live_long_enough_starts_the_tiers_again(qtbot):
    """After STABLE_S of pictures the next failure waits the first tier again."""
    from console.video import decoder as mod

    server = MjpegTestServer(fps=25)
    dec = decoder(server.url, "stable")
    old = mod.STABLE_S
    mod.STABLE_S = 0.5  # the rule, on a shorter clock
    dec.start()
    try:
        for _ in range(2):
            qtbot.waitUntil(lambda: dec.status().state == TileState.LIVE, timeout=15_000)
            qtbot.wait(800)
            server.kill()
            qtbot.waitUntil(lambda: dec.status().state == TileState.RECONNECTING,
                            timeout=10_000)
            assert dec.status().retry_in_s <= BACKOFF_S[0]
            server.revive()
    finally:
        mod.STABLE_S = old
        dec.shutdown()
        server.stop()


def test_a_worker_stuck_outside_every_timeout_is_replaced_by_the_watchdog(qtbot, ticks,
                                                                         tmp_path):
    """A named pipe nobody writes to: opening it blocks in the kernel, where no timeout of
    FFmpeg's reaches.  The watchdog gives up on that thread and starts another."""
    import os
    import threading

    from console.video import decoder as mod

    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    old = mod.WEDGED_S
    mod.WEDGED_S = 2.0  # the rule, on a shorter clock
    dec = decoder(str(fifo), "wedged")
    dec.start()
    try:
        qtbot.waitUntil(lambda: dec.status().restarts >= 1, timeout=15_000)
        status = dec.status()
        assert status.state == TileState.OFFLINE  # never had a picture
        assert status.reason == "连接无响应"
        assert status.retry_in_s is not None
        stuck = [t for t in threading.enumerate() if t.name == "video-wedged"]
        assert len(stuck) >= 1  # the old one is still stuck; the tile no longer waits on it
    finally:
        mod.WEDGED_S = old
        dec.shutdown()
        for _ in range(3):  # let the stuck opens through, so their threads end
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader left waiting (ENXIO) or the pipe is gone
                break
            os.close(fd)
    assert ticks.stop() <= MAX_STALL_MS, (
        f"the event loop stood still {ticks.max_gap_ms:.0f} ms "
        f"({ticks.max_raw_gap_ms} ms on the wall clock)")
