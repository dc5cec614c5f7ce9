"""Case detail: every field, photos, the timeline from the case log, and the neighbourhood.

It is handed a ``db.case_context.case_view`` dict and shows it; it never
queries.  The presence line ("王伟 正在查看") and the duplicate list (same
category within 50 m and 24 h, with a merge button) are what keep two
operators from working one problem twice.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console.i18n import tr
from db.clock import hall_timezone
from db.workflow import (
    ESCALATION_LABELS,
    ROLE_LABELS,
    SEVERITY_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
    action_label,
    label,
)


def department_name(dept: dict, lang: str) -> str:
    """A department as operators name it: the reference data's name, never its code.

    English when the console runs in English and the reference data has an
    English name; the Chinese name otherwise; the code only if it has no name.
    """
    name = (dept.get("name_en") if lang != "zh" else None) or dept.get("name")
    return name or dept["code"]


THUMB_W, THUMB_H = 120, 90


def thumbnail(data: bytes) -> QImage | None:
    """A photo scaled to the detail's thumbnail size, or None if it is no image.

    ``QImage`` works on any thread (``QPixmap`` only on the GUI thread), so the
    decoding of photos of up to 10 MB happens in the worker that read them;
    the GUI thread only wraps a 120×90 picture.
    """
    image = QImage()
    if not image.loadFromData(data):
        return None
    return image.scaled(THUMB_W, THUMB_H, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def with_thumbnails(case: dict) -> dict:
    """``case`` with its ``images`` as (name, thumbnail) and the full bytes let go.

    Runs in the worker thread after ``db.case_context.case_view``.
    """
    case["images"] = [(name, thumb) for name, data in case.get("images", [])
                      if (thumb := thumbnail(data) if isinstance(data, bytes | bytearray)
                          else data) is not None]
    return case


def when(ts, with_date: bool = True) -> str:
    if ts is None:
        return "—"
    local = ts.astimezone(hall_timezone())
    return local.strftime("%m-%d %H:%M" if with_date else "%H:%M")


class CaseDetail(QWidget):
    """Shows one case; emits ``merge_requested(into_number)`` from the duplicate list."""

    merge_requested = Signal(str)

    def __init__(self, lang: str = "zh", parent=None):
        super().__init__(parent)
        self.lang = lang
        self.case: dict | None = None
        self.setObjectName("caseDetail")
        self.header = QLabel(tr("未选择案件"))
        self.header.setObjectName("caseHeader")
        self.header.setWordWrap(True)
        self.presence = QLabel("")
        self.presence.setObjectName("presence")
        self.presence.setProperty("warn", True)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, text in (("category", "类别"), ("severity", "紧急程度"), ("source", "来源"),
                          ("location", "位置"), ("grid", "网格"), ("description", "问题描述"),
                          ("reporter", "上报人"), ("department", "处置单位"),
                          ("worker", "派遣网格员"),
                          ("deadline", "本阶段时限"), ("counts", "返工/退单/延期")):
            value = QLabel("—")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = value
            form.addRow(tr(text), value)
        self.images = QHBoxLayout()
        self.timeline = QTreeWidget()
        self.timeline.setObjectName("timeline")
        self.timeline.setHeaderLabels([tr("时间"), tr("操作人"), tr("操作"), tr("状态"),
                                       tr("原因/说明")])
        self.timeline.setRootIsDecorated(False)
        self.timeline.setUniformRowHeights(True)
        self.duplicates = QListWidget()
        self.duplicates.setObjectName("duplicates")
        self.merge_button = QPushButton(tr("合并到所选案件"))
        self.merge_button.setEnabled(False)
        self.merge_button.clicked.connect(self._merge_clicked)
        self.duplicates.currentItemChanged.connect(
            lambda item, _: self.merge_button.setEnabled(item is not None))
        self.nearby = QListWidget()
        self.nearby.setObjectName("nearby")
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.header)
        layout.addWidget(self.presence)
        layout.addLayout(form)
        layout.addLayout(self.images)
        layout.addWidget(self._section(tr("处置过程")))
        layout.addWidget(self.timeline, 3)
        layout.addWidget(self._section(tr("疑似重复（同类 50 米、24 小时内）")))
        layout.addWidget(self.duplicates, 1)
        layout.addWidget(self.merge_button)
        layout.addWidget(self._section(tr("附近网格员与摄像头")))
        layout.addWidget(self.nearby, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    @staticmethod
    def _section(text: str) -> QLabel:
        lab = QLabel(text)
        lab.setObjectName("section")
        return lab

    def clear(self) -> None:
        self.case = None
        self.header.setText(tr("未选择案件"))
        self.presence.setText("")
        for value in self.fields.values():
            value.setText("—")
        self.timeline.clear()
        self.duplicates.clear()
        self.nearby.clear()
        self._set_images([])

    def show_case(self, case: dict) -> None:
        self.case = case
        lang = self.lang
        card = label(ESCALATION_LABELS, case["escalation"], lang)
        status = label(STATUS_LABELS, case["status"], lang)
        self.header.setText(f"<b>{case['number']}</b>　{status}"
                            + (f"　<span style='color:#e0a800'>【{card}】</span>" if card else "")
                            + f"　v{case['version']}")
        self.show_viewers(case.get("viewers", []))
        f = self.fields
        name = case.get("category_name_en") if lang != "zh" else None
        f["category"].setText(f"{case['category']} {name or case['category_name']}")
        f["severity"].setText(label(SEVERITY_LABELS, case["severity"], lang))
        f["source"].setText(label(SOURCE_LABELS, case["source"], lang))
        f["location"].setText(f"{case['address'] or '—'}（{case['lon']:.6f}, {case['lat']:.6f}）")
        grid = f"{case['grid']} {case.get('grid_name') or ''}" if case["grid"] else None
        f["grid"].setText(grid or tr("辖区外或未划分"))
        f["description"].setText(case["description"])
        f["reporter"].setText(case.get("reporter") or "—")
        depts = [f"{department_name(a, lang)}"
                 f"（{tr('主办') if a['is_lead'] else tr('协办')}）"
                 + ("✓" if a["fed_back_at"] else "") for a in case.get("assignments", [])]
        f["department"].setText("，".join(depts) or "—")
        worker = case.get("worker")
        f["worker"].setText(f"{worker['name']}（{worker['code']}）" if worker else "—")
        f["deadline"].setText(when(case["stage_due_at"]))
        f["counts"].setText(f"{case['rework_count']} / {case['return_count']} / "
                            f"{case['extended_h']:g}h"
                            + (f"（{tr('待审批')} {case['extension_pending_h']:g}h）"
                               if case.get("extension_pending_h") else ""))
        self.timeline.clear()
        for e in case.get("log", []):
            role = label(ROLE_LABELS, e["actor_role"], lang) if e["actor_role"] != "system" \
                else tr("系统")
            item = QTreeWidgetItem([
                when(e["at"]), f"{e['actor_name']}（{role}）",
                action_label(e["action"], lang),
                f"{label(STATUS_LABELS, e['from_status'], lang) if e['from_status'] else '—'}"
                f" → {label(STATUS_LABELS, e['to_status'], lang)}",
                e["reason"] or "",
            ])
            item.setToolTip(0, f"#{e['seq']} {e['workstation']}")
            self.timeline.addTopLevelItem(item)
        for col in range(4):
            self.timeline.resizeColumnToContents(col)
        self.duplicates.clear()
        for d in case.get("duplicates", []):
            item = QListWidgetItem(f"{d['number']}  {label(STATUS_LABELS, d['status'], lang)}  "
                                   f"{d['metres']:.0f}m  {d['description'][:30]}")
            item.setData(Qt.ItemDataRole.UserRole, d["number"])
            self.duplicates.addItem(item)
        self.merge_button.setEnabled(False)
        self.nearby.clear()
        for w in case.get("workers", []):
            state = tr("在线") if w["online"] else tr("离线")
            self.nearby.addItem(f"👤 {w['name']}  {w['metres']:.0f}m  {state}  {w['grid'] or ''}")
        for c in case.get("cameras", []):
            self.nearby.addItem(f"📷 {c['name']}  {c['metres']:.0f}m")
        self._set_images(case.get("images", []))

    def show_viewers(self, names: list[str]) -> None:
        text = "，".join(names)
        self.presence.setText(f"👁 {text} {tr('正在查看')}" if names else "")

    def _set_images(self, images: list[tuple[str, QImage | bytes]]) -> None:
        """Thumbnails made in the worker (``with_thumbnails``); raw bytes are scaled here
        only when a caller hands them in directly."""
        while self.images.count():
            item = self.images.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        for name, picture in images:
            image = picture if isinstance(picture, QImage) else thumbnail(picture)
            if image is None or image.isNull():
                continue
            lab = QLabel()
            lab.setPixmap(QPixmap.fromImage(image))
            lab.setToolTip(name)
            self.images.addWidget(lab)

    def _merge_clicked(self) -> None:
        item = self.duplicates.currentItem()
        if item is not None:
            self.merge_requested.emit(item.data(Qt.ItemDataRole.UserRole))
