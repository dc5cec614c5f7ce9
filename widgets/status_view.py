"""The database status view: what the console is attached to and whether it is live.

Until the full operator console exists this is the window the console
opens; afterwards it remains the "about this connection" panel.  It never
touches the database itself: it is handed a status dict and feed entries.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHeaderView,
    QLabel,
    QListWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from db.clock import hall_timezone
from db.workflow import STATUS_LABELS, action_label, label
from widgets.elided_label import ElidedLabel

TEXT = {
    "title": ("网格指挥调度台", "Grid Command Console"),
    "database": ("数据库", "Database"),
    "server": ("服务器", "Server"),
    "schema": ("结构版本", "Schema"),
    "territory": ("辖区", "Territory"),
    "reference": ("基础数据", "Reference data"),
    "cases": ("案件", "Cases"),
    "log": ("日志序号", "Log sequence"),
    "feed": ("实时连接", "Live feed"),
    "audit": ("日志审计", "Log audit"),
    "audit_never": (
        "从未校验（python main.py audit verify）", "never verified (python main.py audit verify)"
    ),
    "audit_ok": ("{at} 校验通过，至第 {seq} 条", "verified {at}, up to entry {seq}"),
    "audit_bad": ("{at} 校验失败：第 {bad} 条被改动", "{at} FAILED: entry {bad} was altered"),
    "online": ("● 在线", "● online"),
    "offline": ("● 离线：正在重连，恢复后自动补齐", "● offline: reconnecting, will catch up"),
    "loading": ("正在读取数据库状态…", "Reading database status…"),
    "status": ("状态", "Status"),
    "count": ("数量", "Count"),
    "recent": ("最新动态", "Latest changes"),
    "districts_grids": ("{d} 个区县，{g} 个网格", "{d} district(s), {g} grid(s)"),
    "ref": (
        "{dep} 个处置单位，{cat} 个类别，{u} 个用户",
        "{dep} departments, {cat} categories, {u} users",
    ),
}


class StatusView(QWidget):
    """Shows a ``console.status.database_status`` dict and a live tail of the case log."""

    def __init__(self, lang: str = "zh", parent: QWidget | None = None):
        super().__init__(parent)
        self.lang = lang
        self.setObjectName("statusView")
        title = QLabel(self.t("title"))
        title.setObjectName("title")
        self.subtitle = ElidedLabel(self.t("loading"))
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key in (
            "database",
            "server",
            "schema",
            "territory",
            "reference",
            "cases",
            "log",
            "audit",
            "feed",
        ):
            value = ElidedLabel("—")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            form.addRow(self.t(key) + "：" if lang == "zh" else self.t(key) + ":", value)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels([self.t("status"), self.t("count")])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.recent = QListWidget()
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.subtitle)
        layout.addWidget(line)
        layout.addLayout(form)
        layout.addWidget(self.table, 1)
        layout.addWidget(QLabel(self.t("recent")))
        layout.addWidget(self.recent, 1)
        self.set_online(False)

    def t(self, key: str) -> str:
        zh, en = TEXT[key]
        return zh if self.lang == "zh" else en

    def show_status(self, status: dict) -> None:
        f = self.fields
        f["database"].setText(status["url"])
        f["server"].setText(status["server"])
        f["schema"].setText(f"{status['schema']} / {status['schema_head']}")
        f["territory"].setText(
            self.t("districts_grids").format(d=status["districts"], g=status["grids"])
        )
        f["reference"].setText(
            self.t("ref").format(
                dep=status["departments"], cat=status["categories"], u=status["users"]
            )
        )
        f["cases"].setText(str(status["cases"]))
        f["log"].setText(str(status["log_seq"]))
        audit = status.get("audit")
        if not audit:
            f["audit"].setText(self.t("audit_never"))
        else:
            at = audit["at"].astimezone(hall_timezone()).strftime("%m-%d %H:%M")
            key = "audit_ok" if audit["ok"] else "audit_bad"
            f["audit"].setText(
                self.t(key).format(at=at, seq=audit["to_seq"], bad=audit["first_bad_seq"])
            )
            f["audit"].setProperty("alarm", not audit["ok"])
            f["audit"].style().polish(f["audit"])
        by_status = status["cases_by_status"]
        self.table.setRowCount(len(STATUS_LABELS))
        for i, key in enumerate(STATUS_LABELS):
            self.table.setItem(i, 0, QTableWidgetItem(label(STATUS_LABELS, key, self.lang)))
            item = QTableWidgetItem(str(by_status.get(key, 0)))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(i, 1, item)
        self.subtitle.setText(status["url"])

    def show_error(self, message: str) -> None:
        self.subtitle.setText(message)
        self.subtitle.setProperty("alarm", True)
        self.subtitle.style().polish(self.subtitle)

    def set_online(self, online: bool) -> None:
        label_ = self.fields["feed"]
        label_.setText(self.t("online" if online else "offline"))
        label_.setProperty("alarm", not online)
        label_.setProperty("ok", online)
        label_.style().polish(label_)

    def add_entries(self, entries: list) -> None:
        """Prepend new log entries (newest first), keeping the list short."""
        for e in entries:
            when = e.at.astimezone(hall_timezone()).strftime("%H:%M:%S")
            text = (
                f"{when}  #{e.seq}  {e.case_number}  {e.actor_name}  "
                f"{action_label(e.action, self.lang)} → "
                f"{label(STATUS_LABELS, e.to_status, self.lang)}"
            )
            self.recent.insertItem(0, text)
            self.fields["log"].setText(str(e.seq))
        while self.recent.count() > 200:
            self.recent.takeItem(self.recent.count() - 1)
