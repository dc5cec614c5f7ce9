"""Login: user name and password against the users table, off the GUI thread.

The dialog shows the service's own message (wrong password, account locked
for N minutes) and never says which of name or password was wrong.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
)

from console.i18n import tr
from console.tasks import run_in_thread
from db.errors import GridError


class LoginDialog(QDialog):
    """Emits ``logged_in(Actor)``; ``authenticate(name, password)`` does the checking."""

    logged_in = Signal(object)

    def __init__(self, authenticate: Callable[[str, str], object], lang: str = "zh",
                 user: str = "", parent=None):
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
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(420, 220)
        (self.password if user else self.user).setFocus()

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
