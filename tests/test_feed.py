"""The change feed: a second listener sees every change, and survives a killed connection."""

from __future__ import annotations

import threading

from db.feed import ChangeFeed, current_seq, dsn_of
from tests.conftest import wait_for
from tests.flows import case_in, report, step


class Collector:
    def __init__(self):
        self.seqs: list[int] = []
        self.entries: list = []
        self.states: list[bool] = []
        self.lock = threading.Lock()

    def on_entries(self, entries):
        with self.lock:
            self.entries.extend(entries)
            self.seqs.extend(e.seq for e in entries)

    def on_online(self, online):
        self.states.append(online)


def test_second_listener_receives_each_change(engine, actors):
    col = Collector()
    feed = ChangeFeed(
        dsn_of(engine), col.on_entries, col.on_online, start_seq=current_seq(engine)
    ).start()
    try:
        assert wait_for(lambda: feed.online, 5)
        case = report(engine, actors)
        case = step(engine, actors, case, "accept")
        case = step(engine, actors, case, "file")
        assert wait_for(lambda: len(col.seqs) == 3, 5)
        assert [e.action for e in col.entries] == ["report", "accept", "file"]
        assert [e.case_version for e in col.entries] == [1, 2, 3]
        assert col.entries[-1].to_status == "filed"
        assert col.entries[0].actor_name == "李娜"
    finally:
        feed.stop()


def test_listener_reconnects_after_backend_killed_and_misses_nothing(engine, actors, pg_server):
    col = Collector()
    feed = ChangeFeed(
        dsn_of(engine),
        col.on_entries,
        col.on_online,
        start_seq=current_seq(engine),
        max_backoff=0.5,
    ).start()
    try:
        assert wait_for(lambda: feed.online, 5)
        numbers = [report(engine, actors).number for _ in range(5)]
        assert wait_for(lambda: len(col.seqs) == 5, 5)
        for round_ in range(3):
            pid = feed.backend_pid
            admin = pg_server.admin()
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                assert cur.fetchone()[0] is True
            admin.close()
            # Changes made while the listener is down or reconnecting.
            for _ in range(4):
                numbers.append(report(engine, actors).number)
            expected = 5 + 4 * (round_ + 1)
            assert wait_for(lambda n=expected: len(col.seqs) >= n and feed.online, 10)
        assert feed.reconnects >= 3
        assert False in col.states  # it noticed it was offline
        assert col.seqs == sorted(set(col.seqs))  # no duplicates, in order
        assert [e.case_number for e in col.entries] == numbers
    finally:
        feed.stop()


def test_late_listener_catches_up_from_its_last_sequence(engine, actors):
    start = current_seq(engine)
    case = case_in(engine, actors, "dispatched")
    col = Collector()
    feed = ChangeFeed(dsn_of(engine), col.on_entries, start_seq=start).start()
    try:
        assert wait_for(lambda: len(col.seqs) == 4, 5)
        assert [e.action for e in col.entries] == ["report", "accept", "file", "dispatch"]
        assert col.entries[-1].case_number == case.number
    finally:
        feed.stop()


def test_stop_ends_a_listening_feed_without_waiting_for_its_heartbeat(engine):
    """A window closes two feeds; each used to sit in select() until its heartbeat."""
    col = Collector()
    feed = ChangeFeed(dsn_of(engine), col.on_entries, col.on_online, heartbeat=3600.0).start()
    assert wait_for(lambda: feed.online, 10)
    # The thread is in select() on the connection now, its heartbeat an hour away; the
    # join gives it far less than that, and it must be gone by then.
    feed.stop(timeout=30.0)
    assert not feed._thread.is_alive()
    feed.stop()  # a second stop is harmless
