"""交接班 dialog: the shift's report, the outgoing leader's notes, the incoming one's
acknowledgement.  The report and both steps go through ``db.handover`` on a worker
thread; the database refuses anyone but a duty leader's session."""

from __future__ import annotations

from datetime import datetime, timedelta

from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from console.handover_report import text_lines, write_pdf
from console.i18n import tr
from console.tasks import run_in_thread
from db import handover
from db.clock import hall_timezone
from db.engine import Engine
from db.errors import GridError
from db.users import Actor


class HandoverDialog(QDialog):
    """One shift's handover; ``done_step(str)`` after a hand-over or a take-over."""

    done_step = Signal(str)
    report_loaded = Signal()

    def __init__(self, engine: Engine, actor: Actor | None, lang: str = "zh", parent=None):
        super().__init__(parent)
        self.setObjectName("handoverDialog")
        self.setWindowTitle(tr("交接班"))
        self.engine, self.actor, self.lang = engine, actor, lang
        self.report: dict | None = None
        self.open_handovers: list[dict] = []
        leader = actor is not None and actor.role == "leader"
        now = datetime.now(hall_timezone())
        self.end_edit = QDateTimeEdit(QDateTime(now.replace(second=0, microsecond=0)))
        self.end_edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.end_edit.setCalendarPopup(True)
        self.hours_spin = QDoubleSpinBox(minimum=1, maximum=48, value=12, decimals=1, suffix=" h")
        self.reload_button = QPushButton(tr("刷新"))
        self.report_view = QPlainTextEdit(readOnly=True)
        self.report_view.setObjectName("handoverReport")
        self.notes_edit = QPlainTextEdit()
        self.notes_edit.setObjectName("handoverNotes")
        self.notes_edit.setPlaceholderText(tr("交班备注：未办结的重点事项、需接班人跟进的情况"))
        self.notes_edit.setMaximumHeight(90)
        self.submit_button = QPushButton(tr("交班"))
        self.submit_button.setObjectName("handoverSubmit")
        self.submit_button.setEnabled(leader)
        self.pdf_button = QPushButton(tr("导出 PDF"))
        self.pending_list = QListWidget()
        self.pending_list.setObjectName("handoverPending")
        self.pending_list.setMaximumHeight(90)
        self.ack_button = QPushButton(tr("接班确认"))
        self.ack_button.setObjectName("handoverAck")
        self.ack_button.setEnabled(leader)
        self.status = QLabel()
        if not leader:
            self.status.setText(tr("只有值班长可以交班和接班。"))
        top = QHBoxLayout()
        top.addWidget(QLabel(tr("班次结束")))
        top.addWidget(self.end_edit)
        top.addWidget(QLabel(tr("班次时长")))
        top.addWidget(self.hours_spin)
        top.addWidget(self.reload_button)
        top.addStretch(1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.pdf_button)
        buttons.addStretch(1)
        buttons.addWidget(self.submit_button)
        ack = QHBoxLayout()
        ack.addWidget(self.pending_list, 1)
        ack.addWidget(self.ack_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(QLabel(tr("交班备注")))
        layout.addWidget(self.notes_edit)
        layout.addLayout(buttons)
        layout.addWidget(QLabel(tr("待接班")))
        layout.addLayout(ack)
        layout.addWidget(self.status)
        self.resize(720, 640)
        self.reload_button.clicked.connect(self.reload)
        self.submit_button.clicked.connect(self.submit)
        self.ack_button.clicked.connect(self.acknowledge)
        self.pdf_button.clicked.connect(self._ask_pdf)
        self.reload()

    def shift(self) -> tuple[datetime, datetime]:
        end = self.end_edit.dateTime().toPython().replace(tzinfo=hall_timezone())
        return end - timedelta(hours=self.hours_spin.value()), end

    def reload(self) -> None:
        start, end = self.shift()
        engine = self.engine

        def work():
            return handover.shift_report(engine, start, end), handover.handovers(engine)

        run_in_thread(work, self._on_report, self._on_error, context=self)

    def _on_report(self, result) -> None:
        self.report, listed = result
        self.report_view.setPlainText("\n".join(text_lines(self.report, None, self.lang)))
        self.open_handovers = [h for h in listed if h["acknowledged_at"] is None]
        self.pending_list.clear()
        for h in self.open_handovers:
            end = h["shift_end"].astimezone(hall_timezone()).strftime("%m-%d %H:%M")
            item = QListWidgetItem(f"#{h['id']} {end} {h['outgoing_name']}：{h['notes'][:60]}")
            item.setData(Qt.ItemDataRole.UserRole, h["id"])
            self.pending_list.addItem(item)
        if self.open_handovers:
            self.pending_list.setCurrentRow(0)
        self.report_loaded.emit()

    def submit(self) -> None:
        if self.report is None or self.actor is None:
            return
        start, end = self.shift()
        engine, actor, notes, rep = self.engine, self.actor, self.notes_edit.toPlainText(), \
            self.report
        run_in_thread(lambda: handover.submit(engine, actor, start, end, notes, rep),
                      lambda hid: self._done(f"{tr('已交班')} #{hid}"), self._on_error,
                      context=self)

    def acknowledge(self) -> None:
        item = self.pending_list.currentItem()
        if item is None or self.actor is None:
            self.status.setText(tr("没有待接班的交班记录。"))
            return
        hid, engine, actor = item.data(Qt.ItemDataRole.UserRole), self.engine, self.actor
        run_in_thread(lambda: handover.acknowledge(engine, actor, hid),
                      lambda h: self._done(f"{tr('已接班')} #{h}"), self._on_error, context=self)

    def _done(self, text: str) -> None:
        self.status.setText(text)
        self.done_step.emit(text)
        self.reload()

    def _ask_pdf(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, tr("导出"), "交接班.pdf", "*.pdf")
        if path:
            self.export_pdf(path)

    def export_pdf(self, path: str) -> None:
        if self.report is None:
            return
        rep, notes = self.report, self.notes_edit.toPlainText()
        who = self.actor.display_name if self.actor else ""
        run_in_thread(lambda: str(write_pdf(rep, path, notes, who, self.lang)),
                      lambda out: self.status.setText(f"{tr('已导出')} {out}"),
                      self._on_error, context=self)

    def _on_error(self, exc: Exception) -> None:
        self.status.setText(exc.message(self.lang) if isinstance(exc, GridError)
                            else f"{tr('操作失败')}：{exc}")
