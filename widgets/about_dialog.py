"""帮助 → 关于: which console this is, which database it works on, and its keys.

A new operator (or the colleague helping them on the phone) asks three
things first: which version is this, am I on the hall's server or on the
demo, and which key does what.  The database line never shows a password:
a shared server's URL is redacted, the embedded demo is named with the
directory it lives in.
"""

from __future__ import annotations

from importlib import metadata

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from console.config import Settings
from console.i18n import tr

DISTRIBUTION = "grid-command-console"  # the project's name in pyproject.toml


def console_version() -> str:
    """The installed package's version, from its metadata (one place: pyproject.toml)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a tree that was never installed
        return tr("未安装（源代码）")


def database_in_use(settings: Settings) -> str:
    """The database as a person may read it: no password, ever."""
    if settings.database_url:
        from console.bootstrap import redact

        return tr("共享服务器：{url}").format(url=redact(settings.database_url))
    return tr("内置演示数据库，位于 {path}").format(path=settings.data_dir)


class AboutDialog(QDialog):
    """Version, database in use and the keyboard shortcuts ``(key, what)`` of this window."""

    def __init__(self, settings: Settings, shortcuts: list[tuple[str, str]], parent=None):
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(tr("关于 网格指挥调度台"))
        title = QLabel(tr("网格指挥调度台"))
        title.setObjectName("title")
        self.version = QLabel(console_version())
        self.version.setObjectName("aboutVersion")
        self.database = QLabel(database_in_use(settings))
        self.database.setObjectName("aboutDatabase")
        self.database.setWordWrap(True)
        self.database.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow(tr("版本"), self.version)
        form.addRow(tr("数据库"), self.database)
        self.shortcuts = QTableWidget(len(shortcuts), 2)
        self.shortcuts.setObjectName("aboutShortcuts")
        self.shortcuts.setHorizontalHeaderLabels([tr("快捷键"), tr("功能")])
        self.shortcuts.verticalHeader().hide()
        self.shortcuts.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.shortcuts.horizontalHeader().setSectionResizeMode(
            1, QHeaderView.ResizeMode.Stretch)
        for row, (key, what) in enumerate(shortcuts):
            self.shortcuts.setItem(row, 0, QTableWidgetItem(key))
            self.shortcuts.setItem(row, 1, QTableWidgetItem(what))
        self.shortcuts.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.button(QDialogButtonBox.StandardButton.Close).setText(tr("关闭"))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(title, alignment=Qt.AlignmentFlag.AlignHCenter)
        layout.addLayout(form)
        layout.addWidget(QLabel(tr("键盘快捷键")))
        layout.addWidget(self.shortcuts, 1)
        layout.addWidget(buttons)
        self.resize(520, 560)

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """What the table shows, row by row (for tests and for copying)."""
        return [(self.shortcuts.item(r, 0).text(), self.shortcuts.item(r, 1).text())
                for r in range(self.shortcuts.rowCount())]
