"""Run blocking work (database, network) off the GUI thread, results back by signal."""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot


class _Relay(QObject):
    """Lives in the caller's thread, so its slots run there (queued connection)."""

    done = Signal(object)
    failed = Signal(object)

    def __init__(self, on_done, on_error, context: QObject | None):
        super().__init__()
        self.on_done = on_done
        self.on_error = on_error
        self.context = context
        self.done.connect(self._deliver_done)
        self.failed.connect(self._deliver_error)

    def _wanted(self) -> bool:
        """False when the widget that asked has been destroyed meanwhile."""
        _live.discard(self)
        return self.context is None or shiboken6.isValid(self.context)

    @Slot(object)
    def _deliver_done(self, value) -> None:
        if self._wanted():
            self.on_done(value)

    @Slot(object)
    def _deliver_error(self, exc) -> None:
        if self._wanted() and self.on_error is not None:
            self.on_error(exc)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], object], relay: _Relay):
        super().__init__()
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # delivered to the caller's error handler
            self._emit(self.relay.failed, exc)
        else:
            self._emit(self.relay.done, result)

    @staticmethod
    def _emit(signal, value) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the relay went with the application (work done at exit)
            pass


_live: set[_Relay] = set()


def run_in_thread(
    fn: Callable[[], object],
    on_done: Callable[[object], None],
    on_error: Callable[[Exception], None] | None = None,
    pool: QThreadPool | None = None,
    context: QObject | None = None,
) -> None:
    """Call ``fn`` on a pool thread; ``on_done``/``on_error`` run on the caller's thread.

    With a ``context`` object, the result is dropped if that object was
    destroyed before the work finished (a window closed mid-query).
    """
    relay = _Relay(on_done, on_error, context)
    _live.add(relay)
    (pool or QThreadPool.globalInstance()).start(_Task(fn, relay))
