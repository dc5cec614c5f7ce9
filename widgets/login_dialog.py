"""Login: user name and password against the users table, off the GUI thread.

The dialog shows the service's own message (wrong password, account locked
for N minutes) and never says which of name or password was wrong.

On the embedded demo (no database URL given) it says that this is the demo
and lists the demo's logins, a click filling one in: a new user should not
have to find the README to get in.  On a shared server it never does: those
passwords are the hall's, and a demo hint there would be wrong and unsafe.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from console.i18n import tr
from console.tasks import run_in_thread
from db.errors import GridError
from db.workflow import ROLE_LABELS, label


class LoginDialog(QDialog):
    """Emits ``logged_in(Actor)``; ``authenticate(name, password)`` does the checking."""

    logged_in = Signal(object)

    def __init__(self, authenticate: Callable[[str, str], object], lang: str = "zh",
                 user: str = "", parent=None,
                 demo_logins: list[tuple[str, str, str]] | None = None):
        """``demo_logins`` (user, role, password): given only on the embedded demo."""
        super().__init__(parent)
        self.authenticate = authenticate
        self.lang = lang
        self.actor = None
        self.setWindowTitle(tr("登录 — 网格指挥调度台"))
        self.setModal(True)
        title = QLabel(tr("网格指挥调度台"))
        title.setObjectName("title")
        self.user = QLineEdit(user)
        self.user.setObjectName("loginUser")
        self.password = QLineEdit()
        self.password.setObjectName("loginPassword")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.message = QLabel("")
        self.message.setObjectName("loginMessage")
        self.message.setWordWrap(True)
        self.message.setProperty("alarm", True)
        form = QFormLayout()
        form.addRow(tr("用户名"), self.user)
        form.addRow(tr("密码"), self.password)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(tr("登录"))
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText(tr("退出"))
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title, alignment=Qt.AlignmentFlag.AlignHCenter)
        layout.addLayout(form)
        self.demo_hint: QLabel | None = None
        self.demo_table: QTableWidget | None = None
        if demo_logins:
            self._add_demo_hint(layout, demo_logins)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(420, 220) if not demo_logins else self.resize(480, 520)
        (self.password if user else self.user).setFocus()

    def _add_demo_hint(self, layout: QVBoxLayout, logins: list[tuple[str, str, str]]) -> None:
        self.demo_hint = QLabel(tr("演示数据库 · demo") + "\n"
                                + tr("可用以下演示账号登录（单击填入）："))
        self.demo_hint.setObjectName("demoHint")
        self.demo_hint.setProperty("warn", True)
        self.demo_hint.setWordWrap(True)
        table = QTableWidget(len(logins), 3)
        table.setObjectName("demoLogins")
        table.setHorizontalHeaderLabels([tr("用户名"), tr("角色"), tr("密码")])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for row, (name, role, password) in enumerate(logins):
            for col, text in enumerate((name, label(ROLE_LABELS, role, self.lang), password)):
                table.setItem(row, col, QTableWidgetItem(text))
        table.resizeRowsToContents()
        # Every login in sight, no scrolling: the list is short and the point of it.
        table.setFixedHeight(table.horizontalHeader().sizeHint().height()
                             + sum(table.rowHeight(r) for r in range(table.rowCount()))
                             + 2 * table.frameWidth())
        table.cellClicked.connect(lambda row, _col: self.use_demo_login(row))
        self.demo_table = table
        layout.addWidget(self.demo_hint)
        layout.addWidget(table)

    def demo_rows(self) -> list[tuple[str, str, str]]:
        """The demo logins as shown (user, role as labelled, password); empty when hidden."""
        t = self.demo_table
        if t is None:
            return []
        return [tuple(t.item(r, c).text() for c in range(3)) for r in range(t.rowCount())]

    def use_demo_login(self, row: int) -> None:
        """Fill in the demo login of ``row``; the operator still presses 登录."""
        name, _role, password = self.demo_rows()[row]
        self.user.setText(name)
        self.password.setText(password)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setFocus()

    def submit(self) -> None:
        name, password = self.user.text().strip(), self.password.text()
        if not name or not password:
            self.message.setText(tr("请输入用户名和密码。"))
            return
        self.buttons.setEnabled(False)
        self.message.setText(tr("正在登录…"))
        run_in_thread(lambda: self.authenticate(name, password), self._done, self._failed,
                      context=self)

    def _done(self, actor) -> None:
        self.actor = actor
        self.buttons.setEnabled(True)
        self.logged_in.emit(actor)
        self.accept()

    def _failed(self, exc: Exception) -> None:
        self.buttons.setEnabled(True)
        self.password.clear()
        self.password.setFocus()
        text = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
        self.message.setText(text)
