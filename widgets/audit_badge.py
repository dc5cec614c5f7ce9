"""The status bar's word on the case log's hash chain: when it was last verified, and how.

Every console shows it, a wall's login included, so a broken chain is seen in the
hall and not only by whoever ran ``audit verify``.  The record it reads is written
only by the database's own check (``grid_audit_check``, revision 0011), so a console
cannot make it say "verified".  Read off the GUI thread, again every few minutes.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QWidget

from console.i18n import tr
from console.tasks import run_in_thread
from db.clock import hall_timezone
from db.engine import Engine

REFRESH_MS = 5 * 60 * 1000


class AuditBadge(QLabel):
    """"日志链 ✓ 12-01 10:42" / "日志链 ✗ 第 N 条被改动" (red) / "日志链 未校验"."""

    def __init__(self, engine: Engine, parent: QWidget | None = None):
        super().__init__(tr("日志链 …"), parent)
        self.setObjectName("auditBadge")
        self.engine = engine
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)

    def start(self) -> None:
        self.refresh()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def refresh(self) -> None:
        from db.audit import last_check

        engine = self.engine
        run_in_thread(lambda: last_check(engine), self.show_check, lambda _exc: None,
                      context=self)

    def show_check(self, check: dict | None) -> None:
        if not check:
            self.setText(tr("日志链 未校验"))
            self.setToolTip(tr("运行 python main.py audit verify 校验案件日志的哈希链"))
            alarm = False
        else:
            at = check["at"].astimezone(hall_timezone()).strftime("%m-%d %H:%M")
            if check["ok"]:
                self.setText(tr("日志链 ✓ {at}").format(at=at))
                self.setToolTip(tr("{at} 校验通过，至第 {seq} 条").format(
                    at=at, seq=check["to_seq"]))
            else:
                self.setText(tr("日志链 ✗ 第 {bad} 条被改动").format(bad=check["first_bad_seq"]))
                self.setToolTip(tr("{at} 校验失败：第 {bad} 条被改动").format(
                    at=at, bad=check["first_bad_seq"]))
            alarm = not check["ok"]
        self.setProperty("alarm", alarm)
        self.style().polish(self)
