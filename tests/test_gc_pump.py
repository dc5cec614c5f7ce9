"""Cyclic garbage is collected on the GUI thread, never on a worker thread.

A collection started on a worker thread destroys whatever Qt objects its cycles hold on
that thread; the suite met the resulting deadlock. The window hands collection to a
timer on the GUI thread (``widgets.gc_pump``).
"""

from __future__ import annotations

import gc
import threading
import weakref

from widgets.gc_pump import GuiThreadCollector


class Node:
    def __init__(self):
        self.me = self  # a cycle: only the cyclic collector frees it


def test_worker_thread_garbage_is_collected_on_the_gui_thread(qtbot):
    threads: list[str] = []

    def record(phase, info):
        if phase == "start":
            threads.append(threading.current_thread().name)

    gc.enable()  # as in the window: the interpreter would collect where it allocates
    gc.callbacks.append(record)
    collector = GuiThreadCollector(interval_ms=20)
    try:
        refs: list[weakref.ref] = []

        def worker():
            for _ in range(5 * gc.get_threshold()[0]):  # well past generation 0's threshold
                refs.append(weakref.ref(Node()))

        t = threading.Thread(target=worker, name="db-reader")
        t.start()
        t.join()
        assert "db-reader" not in threads  # the worker allocated, and nothing ran there
        assert any(r() is not None for r in refs)  # the cycles are still waiting
        qtbot.waitUntil(lambda: all(r() is None for r in refs), timeout=5000)
        assert collector.collections >= 1
        assert set(threads) == {threading.main_thread().name}
    finally:
        collector.stop()
        gc.callbacks.remove(record)
        gc.disable()  # the suite's own policy (tests/conftest.py)
