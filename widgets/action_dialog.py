"""One dialog per case action: the fields that action needs, checked before sending.

The dialog collects parameters; the main window sends them to the service
off the GUI thread and reports back here (``show_error``), so a conflict
("已被 王伟 于 10:42 派遣") is read in the dialog the operator is looking at.
Dispatch recommends the category's default department and lists the
nearest field workers with their distance; joint handling adds
co-departments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from db.errors import GridError
from db.validation import MAX_DESCRIPTION, MAX_REASON
from db.workflow import (
    ACTIONS,
    REPORTING_WORKER_SOURCE,
    SEVERITIES,
    SEVERITY_LABELS,
    SOURCE_LABELS,
    SOURCES,
    label,
)
from widgets.case_detail import department_name

EVALUATIONS = [("satisfied", "满意"), ("basically_satisfied", "基本满意"),
               ("dissatisfied", "不满意")]


@dataclass
class FormContext:
    """What the forms offer: departments, categories, the case being acted on, and the
    active grid workers a report may name as its reporter."""

    departments: list[dict] = field(default_factory=list)
    categories: list[dict] = field(default_factory=list)
    case: dict | None = None
    lang: str = "zh"
    workers: list[dict] = field(default_factory=list)


class ActionDialog(QDialog):
    """Collects the parameters of ``action``; emits ``submitted(params)`` when valid.

    It stays open while the service runs: the caller closes it with
    ``succeeded()`` or shows the service's message with ``failed(text)``.
    """

    submitted = Signal(dict)

    def __init__(self, action: str, ctx: FormContext, parent=None):
        super().__init__(parent)
        self.action = action
        self.ctx = ctx
        self.rule = ACTIONS[action]
        self.widgets: dict[str, QWidget] = {}
        self.attachments: list[tuple[str, bytes]] = []
        title = self.rule.label_zh if ctx.lang == "zh" else self.rule.label_en
        number = ctx.case["number"] if ctx.case else tr("新案件")
        self.setWindowTitle(f"{title} — {number}")
        self.setObjectName(f"action_{action}")
        self.form = QFormLayout()
        self.error = QLabel("")
        self.error.setObjectName("actionError")
        self.error.setWordWrap(True)
        self.error.setProperty("alarm", True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(title)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText(tr("取消"))
        self.buttons.accepted.connect(self._check_and_accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if ctx.case:
            category = (ctx.case.get("category_name_en") if ctx.lang != "zh" else None) \
                or ctx.case["category_name"]
            summary = QLabel(f"<b>{ctx.case['number']}</b> {category} — "
                             f"{ctx.case['description'][:60]}")
            summary.setWordWrap(True)
            layout.addWidget(summary)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        getattr(self, f"_build_{action}", self._build_default)()
        self.resize(560, 200)

    # -- builders ---------------------------------------------------------------

    def _text(self, key: str, caption: str, required: bool, limit: int, lines: int = 3):
        edit = QPlainTextEdit()
        edit.setObjectName(key)
        edit.setFixedHeight(24 * lines)
        edit.setPlaceholderText(tr("必填") if required else tr("选填"))
        edit.setProperty("required", required)
        edit.setProperty("limit", limit)
        self.widgets[key] = edit
        self.form.addRow(tr(caption), edit)
        return edit

    def _combo(self, key: str, caption: str, items: list[tuple[str, str]],
               current: str | None = None) -> QComboBox:
        box = QComboBox()
        box.setObjectName(key)
        for value, text in items:
            box.addItem(text, value)
        if current is not None:
            box.setCurrentIndex(max(0, box.findData(current)))
        self.widgets[key] = box
        self.form.addRow(tr(caption), box)
        return box

    def _dept_items(self) -> list[tuple[str, str]]:
        return [(d["code"], department_name(d, self.ctx.lang)) for d in self.ctx.departments]

    def _dept_name(self, code: str) -> str:
        """The name of the department ``code`` from the reference data (the code if unknown)."""
        for d in self.ctx.departments:
            if d["code"] == code:
                return department_name(d, self.ctx.lang)
        return code

    def _build_default(self) -> None:
        if self.rule.needs_reason:
            self._text("reason", "原因", True, MAX_REASON)
        else:
            self._text("note", "备注", False, MAX_REASON, lines=2)

    _build_accept = _build_default
    _build_reject = _build_default
    _build_return = _build_default
    _build_verify_fail = _build_default
    _build_close = _build_default
    _build_acknowledge = _build_default
    _build_verify_pass = _build_default

    def _build_dispatch(self) -> None:
        case = self.ctx.case or {}
        recommended = self._recommended_department()
        self._combo("department", "主办单位", self._dept_items(), recommended)
        if recommended:
            hint = QLabel(tr("按类别推荐") + f"：{self._dept_name(recommended)}")
            hint.setObjectName("recommendation")
            self.form.addRow("", hint)
        co = QListWidget()
        co.setObjectName("co_departments")
        co.setFixedHeight(110)
        for code, text in self._dept_items():
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, code)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            co.addItem(item)
        self.widgets["co_departments"] = co
        self.form.addRow(tr("协办单位（联动）"), co)
        workers = [("", tr("不指定"))] + [
            (w["code"], f"{w['name']}  {w['metres']:.0f}m  "
                        f"{tr('在线') if w['online'] else tr('离线')}")
            for w in case.get("workers", [])]
        self._combo("worker", "就近网格员", workers)
        if self.action == "reassign":
            self._text("reason", "改派原因", True, MAX_REASON)
        else:
            self._text("note", "派遣说明", False, MAX_REASON, lines=2)

    _build_reassign = _build_dispatch

    def _recommended_department(self) -> str | None:
        case = self.ctx.case or {}
        for c in self.ctx.categories:
            if c["code"] == case.get("category"):
                return c["department"]
        return None

    def _build_merge(self) -> None:
        edit = QLineEdit()
        edit.setObjectName("into")
        dups = (self.ctx.case or {}).get("duplicates", [])
        if dups:
            edit.setText(dups[0]["number"])
        self.widgets["into"] = edit
        self.form.addRow(tr("合并到案件编号"), edit)
        self._text("reason", "说明", False, MAX_REASON, lines=2)

    def _category_items(self) -> list[tuple[str, str]]:
        name = "name" if self.ctx.lang == "zh" else "name_en"
        return [(c["code"], f"{c['code']} {c['class_name']} / {c[name] or c['name']}")
                for c in self.ctx.categories]

    def _build_file(self) -> None:
        case = self.ctx.case or {}
        self._combo("category", "问题类别", self._category_items(), case.get("category"))
        self._combo("severity", "紧急程度",
                    [(s, label(SEVERITY_LABELS, s, self.ctx.lang)) for s in SEVERITIES],
                    case.get("severity"))
        self._text("note", "立案意见", False, MAX_REASON, lines=2)

    def _build_feedback(self) -> None:
        self._text("evidence", "处置说明", True, MAX_DESCRIPTION)
        self._attachment_row()

    def _attachment_row(self) -> None:
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        self.attach_label = QLabel(tr("无照片"))
        button = QPushButton(tr("添加照片…"))
        button.clicked.connect(self._pick_files)
        h.addWidget(self.attach_label, 1)
        h.addWidget(button)
        self.form.addRow(tr("现场照片"), row)

    def _pick_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, tr("选择照片"), "",
                                                "Images (*.jpg *.jpeg *.png *.webp *.gif)")
        self.add_files([Path(p) for p in paths])

    def add_files(self, paths: list[Path]) -> None:
        from db.validation import read_attachment_file

        # Regular files only, never read past the size limit.
        for path in paths:
            try:
                self.attachments.append(read_attachment_file(path))
            except GridError as exc:  # not a file, too large, unreadable: one line
                self.show_error(exc.message(self.ctx.lang))
        names = "，".join(n for n, _ in self.attachments)
        self.attach_label.setText(names or tr("无照片"))

    def _build_escalate(self) -> None:
        current = (self.ctx.case or {}).get("escalation", 0)
        items = [(str(level), text) for level, text in ((1, tr("督办（黄牌）")),
                                                        (2, tr("挂牌督办（红牌）")))
                 if level > current]
        self._combo("level", "督办级别", items)
        self._text("reason", "督办要求", False, MAX_REASON, lines=2)

    def _build_request_extension(self) -> None:
        spin = QDoubleSpinBox()
        spin.setObjectName("hours")
        spin.setRange(0.5, 720)
        spin.setValue(24)
        spin.setSuffix(" h")
        self.widgets["hours"] = spin
        self.form.addRow(tr("延期时长"), spin)
        self._text("reason", "延期原因", True, MAX_REASON)

    def _build_approve_extension(self) -> None:
        hours = (self.ctx.case or {}).get("extension_pending_h")
        self.form.addRow(tr("申请延期"), QLabel(f"{hours or 0:g} h"))
        self._combo("approved", "审批意见", [("1", tr("同意")), ("0", tr("不同意"))])
        self._text("reason", "审批说明", False, MAX_REASON, lines=2)

    def _build_archive(self) -> None:
        self._combo("evaluation", "综合评价", [(k, tr(v)) for k, v in EVALUATIONS])
        self._text("note", "备注", False, MAX_REASON, lines=2)

    def _build_report(self) -> None:
        self._combo("category", "问题类别", self._category_items())
        self._combo("severity", "紧急程度",
                    [(s, label(SEVERITY_LABELS, s, self.ctx.lang)) for s in SEVERITIES])
        source = self._combo("source", "来源", [(s, label(SOURCE_LABELS, s, self.ctx.lang))
                                                for s in SOURCES])
        # The reporting grid worker, credited in the ranking by worker: only for the
        # grid worker's own source (the service refuses it with any other).
        worker_items = [("", tr("不指定"))] + [
            (w["code"], f"{w['code']} {w['name']}"
                        + (f"（{w['grid_name']}）" if w.get("grid_name") else ""))
            for w in self.ctx.workers]
        self._combo("worker", "上报网格员", worker_items)
        source.currentIndexChanged.connect(self._show_reporting_worker)
        self._show_reporting_worker()
        for key, caption in (("lon", "经度（WGS-84）"), ("lat", "纬度（WGS-84）"),
                             ("address", "地址"), ("reporter", "上报人"),
                             ("reporter_phone", "联系电话")):
            edit = QLineEdit()
            edit.setObjectName(key)
            self.widgets[key] = edit
            self.form.addRow(tr(caption), edit)
        self._text("description", "问题描述", True, MAX_DESCRIPTION)
        onsite = QCheckBox(tr("已当场处理"))
        onsite.setObjectName("onsite")
        self.widgets["onsite"] = onsite
        self.form.addRow("", onsite)
        self._attachment_row()

    def _show_reporting_worker(self) -> None:
        """The worker picker is there only while the source is the grid worker's."""
        patrol = self.widgets["source"].currentData() == REPORTING_WORKER_SOURCE
        self.form.setRowVisible(self.widgets["worker"], patrol)

    # -- reading and checking -----------------------------------------------------

    def params(self) -> dict:
        """The parameters for ``db.case_actions.perform`` (call after a valid accept)."""
        out: dict = {}
        for key, widget in self.widgets.items():
            if isinstance(widget, QPlainTextEdit | QLineEdit):
                value = (widget.toPlainText() if isinstance(widget, QPlainTextEdit)
                         else widget.text()).strip()
                if value:
                    out[key] = value
            elif isinstance(widget, QComboBox):
                out[key] = widget.currentData()
            elif isinstance(widget, QDoubleSpinBox):
                out[key] = widget.value()
            elif isinstance(widget, QCheckBox):
                out[key] = widget.isChecked()
            elif isinstance(widget, QListWidget):
                out[key] = [widget.item(i).data(Qt.ItemDataRole.UserRole)
                            for i in range(widget.count())
                            if widget.item(i).checkState() == Qt.CheckState.Checked]
        if "level" in out:
            out["level"] = int(out["level"])
        if "approved" in out:
            out["approved"] = out["approved"] == "1"
        if self.attachments:
            out["attachments"] = list(self.attachments)
        if out.get("worker") == "" or (
                self.action == "report" and out.get("source") != REPORTING_WORKER_SOURCE):
            out.pop("worker", None)
        return out

    def problems(self) -> list[str]:
        """What is missing or too long, in the operator's words."""
        found = []
        for key, widget in self.widgets.items():
            if isinstance(widget, QPlainTextEdit):
                text = widget.toPlainText().strip()
                caption = self.form.labelForField(widget).text()
                if widget.property("required") and not text:
                    found.append(tr("请填写") + caption)
                limit = widget.property("limit")
                if limit and len(text) > int(limit):
                    found.append(f"{caption}{tr('过长')}（{len(text)}/{limit}）")
            if key in ("lon", "lat") and isinstance(widget, QLineEdit):
                try:
                    float(widget.text())
                except ValueError:
                    found.append(tr("经纬度必须是数字。"))
        if self.action == "merge" and not self.widgets["into"].text().strip():
            found.append(tr("请填写要合并到的案件编号。"))
        if self.action == "escalate" and self.widgets["level"].count() == 0:
            found.append(tr("已是最高督办级别。"))
        return list(dict.fromkeys(found))

    def _check_and_accept(self) -> None:
        problems = self.problems()
        if problems:
            self.show_error("；".join(problems))
            return
        self.error.setText(tr("正在提交…"))
        self.buttons.setEnabled(False)
        self.submitted.emit(self.params())

    def succeeded(self) -> None:
        self.accept()

    def failed(self, message: str) -> None:
        self.buttons.setEnabled(True)
        self.show_error(message)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
