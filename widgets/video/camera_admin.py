"""摄像头管理: an administrator adds, edits, disables and imports cameras in the console.

The same services as ``python main.py camera …`` (``db.cameras``), off the GUI
thread; the database refuses anyone but an administrator whatever this dialog shows.
A bad field is one line under the form, and nothing changes.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from console.credentials import scrub
from console.tasks import run_in_thread
from db.errors import GridError
from widgets.video.tile import bilingual

COLUMNS = ("code", "name", "lon", "lat", "heading", "view_angle", "url", "sub_url", "groups",
           "enabled")


class CameraAdminDialog(QDialog):
    """The camera table and a form; ``changed`` after every change that landed."""

    changed = Signal()

    def __init__(self, engine, actor, lang: str = "zh", parent=None):
        super().__init__(parent)
        self.engine = engine
        self.actor = actor
        self.t = t = bilingual(lang)
        self.lang = lang
        self.rows: list[dict] = []
        self.setWindowTitle(t("摄像头管理", "Cameras"))
        self.resize(1100, 640)
        box = QVBoxLayout(self)
        heads = {"code": t("编号", "Code"), "name": t("名称", "Name"), "lon": t("经度", "Lon"),
                 "lat": t("纬度", "Lat"), "heading": t("朝向", "Heading"),
                 "view_angle": t("视角", "Angle"), "url": t("主码流", "Main stream"),
                 "sub_url": t("子码流", "Sub-stream"), "groups": t("分组", "Groups"),
                 "enabled": t("启用", "Enabled")}
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("cameraTable")
        self.table.setHorizontalHeaderLabels([heads[c] for c in COLUMNS])
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._selected)
        box.addWidget(self.table, 1)
        form = QFormLayout()
        self.fields: dict[str, QLineEdit] = {}
        for key in COLUMNS[:-1]:
            edit = QLineEdit()
            edit.setObjectName(f"camera_{key}")
            self.fields[key] = edit
            form.addRow(heads[key], edit)
        self.fields["groups"].setPlaceholderText(t("用 ; 分隔，如 东四;重点部位",
                                                   "separated by ;"))
        self.enabled = QCheckBox(heads["enabled"])
        self.enabled.setChecked(True)
        form.addRow("", self.enabled)
        box.addLayout(form)
        self.error = QLabel("")
        self.error.setObjectName("cameraError")
        self.error.setWordWrap(True)
        box.addWidget(self.error)
        buttons = QHBoxLayout()
        self.add_button = QPushButton(t("新增", "Add"))
        self.save_button = QPushButton(t("保存修改", "Save changes"))
        self.toggle_button = QPushButton(t("停用/启用", "Disable/enable"))
        self.import_button = QPushButton(t("导入 CSV…", "Import CSV…"))
        for b, fn in ((self.add_button, self.add), (self.save_button, self.save),
                      (self.toggle_button, self.toggle), (self.import_button, self.import_csv)):
            b.clicked.connect(fn)
            buttons.addWidget(b)
        buttons.addStretch(1)
        close = QPushButton(t("关闭", "Close"))
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        box.addLayout(buttons)
        self.reload()

    # -- reading ----------------------------------------------------------------------

    def reload(self) -> None:
        from db.cameras import list_cameras

        engine = self.engine
        run_in_thread(lambda: list_cameras(engine, include_disabled=True), self._show,
                      self._failed, context=self)

    def _show(self, rows: list[dict]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for r, cam in enumerate(rows):
            for c, key in enumerate(COLUMNS):
                value = cam.get(key)
                if key == "groups":
                    value = ";".join(value or [])
                elif key in ("url", "sub_url"):
                    value = scrub(value or "")
                elif key == "enabled":
                    value = self.t("是", "yes") if value else self.t("否", "no")
                elif value is None:
                    value = ""
                self.table.setItem(r, c, QTableWidgetItem(str(value)))
        self.table.resizeColumnsToContents()

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        cam = self.rows[rows[0].row()]
        for key, edit in self.fields.items():
            value = cam.get(key)
            edit.setText(";".join(value) if key == "groups" else
                         "" if value is None else str(value))
        self.enabled.setChecked(bool(cam.get("enabled")))

    def values(self) -> dict:
        v = {k: e.text().strip() for k, e in self.fields.items()}
        v["enabled"] = self.enabled.isChecked()
        return v

    # -- changing -----------------------------------------------------------------------

    def _run(self, work, done_text: str) -> None:
        self.error.setText("")

        def done(_result) -> None:
            self.error.setText(done_text)
            self.changed.emit()
            self.reload()

        run_in_thread(work, done, self._failed, context=self)

    def add(self) -> None:
        from db.cameras import add_camera

        engine, actor, v = self.engine, self.actor, self.values()
        self._run(lambda: add_camera(engine, actor, **v), self.t("已新增", "Added"))

    def save(self) -> None:
        from db.cameras import edit_camera

        engine, actor, v = self.engine, self.actor, self.values()
        code = v.pop("code")
        v["groups"] = v["groups"] or []  # an empty field clears the groups
        self._run(lambda: edit_camera(engine, actor, code, **v), self.t("已保存", "Saved"))

    def toggle(self) -> None:
        from db.cameras import set_camera_enabled

        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.error.setText(self.t("请先选中一个摄像头", "Select a camera first"))
            return
        cam = self.rows[rows[0].row()]
        engine, actor, code, on = self.engine, self.actor, cam["code"], not cam["enabled"]
        self._run(lambda: set_camera_enabled(engine, actor, code, on),
                  self.t("已启用", "Enabled") if on else self.t("已停用", "Disabled"))

    def import_csv(self, path: str | None = None) -> None:
        from db.cameras import import_cameras

        if not path:
            path, _ = QFileDialog.getOpenFileName(self, self.t("导入摄像头", "Import cameras"),
                                                  "", "CSV (*.csv)")
        if not path:
            return
        engine, actor = self.engine, self.actor
        self._run(lambda: import_cameras(engine, actor, path), self.t("已导入", "Imported"))

    def _failed(self, exc: Exception) -> None:
        text = exc.message(self.lang) if isinstance(exc, GridError) else str(exc)
        self.error.setText(text)
        self.error.setProperty("alarm", True)
        self.error.setAlignment(Qt.AlignmentFlag.AlignLeft)
