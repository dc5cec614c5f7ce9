"""The shift handover as text and as PDF (交接班报告), from ``db.handover.shift_report``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from db.clock import hall_timezone
from db.workflow import SEVERITY_LABELS, STATUS_LABELS, label

SECTIONS = [
    ("opened", "本班新增案件", "cases opened"),
    ("closed", "本班结案", "cases closed"),
    ("open_at_end", "交班时未结案件", "still open at the end"),
    ("overdue_at_end", "交班时超时案件", "overdue at the end"),
    ("escalated", "本班督办", "escalated during the shift"),
    ("emergencies", "紧急（特急）案件", "emergencies"),
    ("gateway_gaps", "定位网关中断（无任何终端定位 ≥ 10 分钟）",
     "gateway outages (no fix ≥ 10 min)"),
    ("terminals_offline", "终端离线", "terminals gone offline"),
    ("cameras_out", "停用的摄像头", "cameras out of service"),
]


def _t(value, fmt: str = "%m-%d %H:%M") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(hall_timezone()).strftime(fmt) if value else "—"


def describe(key: str, item: dict, lang: str = "zh") -> str:
    """One line for one item of a section."""
    if key == "gateway_gaps":
        return f"{_t(item['from'])} – {_t(item['to'], '%H:%M')}（{item['minutes']} 分钟）"
    if key == "terminals_offline":
        back = ("已恢复" if lang == "zh" else "back") if item.get("back") else (
            "未恢复" if lang == "zh" else "still off")
        return f"{_t(item['at'])} {item.get('worker') or ''} {item['device']} {back}"
    if key == "cameras_out":
        return f"{item['code']} {item['name']}"
    if key == "escalated":
        level = {1: "督办", 2: "挂牌督办"}.get(item.get("level"), "督办")
        return f"{_t(item['at'])} {item['number']} {item['category']} {level} {item['actor_name']}"
    status = label(STATUS_LABELS, item.get("status"), lang) if item.get("status") else ""
    sev = label(SEVERITY_LABELS, item.get("severity"), lang) if item.get("severity") else ""
    extra = f" 时限 {_t(item['stage_due_at'])}" if key == "overdue_at_end" and \
        item.get("stage_due_at") else ""
    return f"{item['number']} {item.get('category', '')} {sev} {status} {item.get('grid') or ''}" \
        f"{extra}".strip()


def text_lines(report: dict, notes: str | None = None, lang: str = "zh", limit: int = 20
               ) -> list[str]:
    zh = lang == "zh"
    out = [
        ("交接班报告 " if zh else "Shift handover ")
        + f"{_t(report['shift_start'], '%Y-%m-%d %H:%M')} – "
        f"{_t(report['shift_end'], '%m-%d %H:%M')}"
    ]
    for key, title_zh, title_en in SECTIONS:
        items = report.get(key) or []
        count = report["counts"].get(key, len(items))
        out.append(f"{title_zh if zh else title_en}: {count}")
        for item in items[:limit]:
            out.append("  " + describe(key, item, lang))
        if len(items) > limit:
            out.append(f"  … {len(items) - limit}")
    if notes:
        out.append(("交班备注: " if zh else "notes: ") + notes)
    return out


def write_pdf(report: dict, path, notes: str = "", outgoing: str = "", lang: str = "zh",
              acknowledged: str = "") -> Path:
    """Page 1: the counts and the notes; then each section's cases."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    from console.pdf import build, document, styles, table

    st = styles()
    zh = lang == "zh"
    title = ("交接班报告" if zh else "Shift handover")
    span = f"{_t(report['shift_start'], '%Y-%m-%d %H:%M')} – " \
        f"{_t(report['shift_end'], '%Y-%m-%d %H:%M')}"
    doc, footer = document(path, f"{title} {span}", landscape_pages=False)
    story = [Paragraph(f"{title} {span}", st["title"])]
    if outgoing:
        story.append(Paragraph(("交班人：" if zh else "handed over by: ") + outgoing, st["body"]))
    if acknowledged:
        story.append(Paragraph(("接班人：" if zh else "taken over by: ") + acknowledged,
                               st["body"]))
    story.append(Spacer(1, 3 * mm))
    rows = [["项目" if zh else "item", "数量" if zh else "count"]]
    for key, title_zh, title_en in SECTIONS:
        rows.append([title_zh if zh else title_en, str(report["counts"].get(key, 0))])
    story.append(table(rows, [300, 60], font_size=9))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("交班备注" if zh else "Notes", st["h2"]))
    story.append(Paragraph((notes or ("（无）" if zh else "(none)")).replace("\n", "<br/>"),
                           st["body"]))
    for key, title_zh, title_en in SECTIONS:
        items = report.get(key) or []
        if not items:
            continue
        story.append(Paragraph(f"{title_zh if zh else title_en}（{len(items)}）", st["h2"]))
        for item in items[:300]:
            story.append(Paragraph(describe(key, item, lang), st["small"]))
    build(doc, story, footer)
    return Path(path)
