"""The cyclic garbage collector runs on the GUI thread only, from a timer.

Why: Python starts a cyclic collection in whichever thread happens to allocate past the
threshold. In this window that is often a worker thread (the database reads of
``console.tasks.run_in_thread``, the video decoders, the tile fetchers); a cycle that
holds a Qt object is then destroyed on that thread, which Qt forbids and which can
deadlock against the GUI thread (the test suite met exactly that). So the automatic
collector is switched off and the same generational policy is applied from a timer on
the GUI thread, where freeing Qt objects is safe. Reference counting, which frees
almost everything, is untouched.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Collect the generations whose counts passed their thresholds, every ``interval_ms``."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int | None:
        """Collect as the interpreter would have (the oldest generation due); which one."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                self.collections += 1
                return generation
        return None

    def stop(self) -> None:
        """Give collection back as it was found (the window is gone)."""
        self.timer.stop()
        if self._was_enabled:
            gc.enable()
