"""The patrol report (巡查) as a workbook: a summary per worker, every worker-day, every
session.

The data is ``db.field.patrol_report``'s, as ``patrol report --json`` prints it and the
patrol panel shows it; this module only lays it out.  Every number is a number (minutes
as minutes, coverage as a fraction formatted as a percentage, dates as dates), so a
duty office can sum and filter the sheet instead of retyping it; a coverage without
cells (a grid with no unit cells) is an empty cell.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from db.clock import hall_timezone
from db.errors import BadInput

ROLE_NAMES = {"instructor": ("网格指导员", "grid instructor"),
              "grid_leader": ("网格长", "grid leader"),
              "full_time": ("专职网格员", "full-time worker"),
              "part_time": ("兼职网格员", "part-time worker")}


def rule_text(rule: dict, lang: str = "zh") -> str:
    """``每日至少 1 次 ≥10 分钟，每周 7 天`` — the rule a report was measured against."""
    if lang == "zh":
        return (f"每日至少 {rule['min_patrols']} 次 ≥{rule['min_minutes']:g} 分钟的巡查，"
                f"每周 {rule['days_per_week']} 天")
    return (f"at least {rule['min_patrols']} patrol(s) of ≥{rule['min_minutes']:g} min a day, "
            f"{rule['days_per_week']} days a week")


def mean_coverage(worker: dict) -> float | None:
    """The mean of the days' coverage (days without cells left out), or None."""
    cov = [d["coverage"] for d in worker["days"] if d["coverage"] is not None]
    return sum(cov) / len(cov) if cov else None


def write_xlsx(report: dict, path, lang: str = "zh") -> Path:
    """Three sheets (汇总, 逐日, 巡查段) of ``report``; numbers as numbers."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    zh = lang == "zh"
    tz = hall_timezone()
    wb = Workbook()
    summary = wb.active
    summary.title = "汇总" if zh else "Summary"
    summary.append(["巡查报告" if zh else "Patrol report",
                    f"[{report['from']}, {report['to']})",
                    rule_text(report["rule"], lang),
                    f"{'街道' if zh else 'street'} "
                    f"{report.get('street') or ('全部' if zh else 'all')}",
                    f"{'生成时间' if zh else 'made'} "
                    f"{datetime.now(tz).strftime('%Y-%m-%d %H:%M')}"])
    head = (["网格员", "姓名", "角色", "网格", "社区", "街道", "达标天数", "应达标天数",
             "巡查分钟", "平均覆盖率", "达标"] if zh else
            ["worker", "name", "role", "grid", "community", "street", "compliant days",
             "required days", "patrol minutes", "mean coverage", "compliant"])
    summary.append(head)
    yes, no = ("是", "否") if zh else ("yes", "no")
    for w in report["workers"]:
        role = ROLE_NAMES.get(w.get("roster_role") or "", (w.get("roster_role"),) * 2)
        summary.append([w["worker"], w["name"], role[0 if zh else 1], w["grid"], w["community"],
                        w["street"], w["compliant_days"], w["required_days"],
                        w["patrol_minutes"], mean_coverage(w), yes if w["compliant"] else no])
    days = wb.create_sheet("逐日" if zh else "Days")
    days.append(["网格员", "姓名", "网格", "日期", "巡查段数", "巡查次数", "巡查分钟",
                 "网格外分钟", "到访单元", "单元总数", "覆盖率", "应巡查", "达标"] if zh else
                ["worker", "name", "grid", "date", "sessions", "patrols", "patrol minutes",
                 "outside minutes", "cells visited", "cells", "coverage", "required",
                 "compliant"])
    sessions = wb.create_sheet("巡查段" if zh else "Sessions")
    sessions.append(["网格员", "姓名", "日期", "开始", "结束", "分钟"] if zh else
                    ["worker", "name", "date", "start", "end", "minutes"])
    for w in report["workers"]:
        for d in w["days"]:
            day = date.fromisoformat(d["date"])
            days.append([w["worker"], w["name"], w["grid"], day, len(d["sessions"]),
                         d["patrols"], d["patrol_minutes"], d["outside_minutes"],
                         d["cells_visited"], d["cells"], d["coverage"],
                         yes if d["required"] else no, yes if d["compliant"] else no])
            for s in d["sessions"]:
                # Naive local times: a spreadsheet has no time zones (the hall's, as the
                # summary's period).
                start = datetime.fromisoformat(s["start"]).astimezone(tz).replace(tzinfo=None)
                end = datetime.fromisoformat(s["end"]).astimezone(tz).replace(tzinfo=None)
                sessions.append([w["worker"], w["name"], day, start, end, s["minutes"]])
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DFE6EE")
    formats = {
        summary.title: (2, {"I": "0.0", "J": "0.0%"}),
        days.title: (1, {"D": "yyyy-mm-dd", "G": "0.0", "H": "0.0", "K": "0.0%"}),
        sessions.title: (1, {"C": "yyyy-mm-dd", "D": "hh:mm", "E": "hh:mm", "F": "0.0"}),
    }
    for ws in (summary, days, sessions):
        header_row, fmts = formats[ws.title]
        for cell in ws[header_row]:
            cell.font, cell.fill = bold, fill
        for letter, fmt in fmts.items():
            for cell in ws[letter][header_row:]:
                cell.number_format = fmt
        for j in range(1, ws.max_column + 1):
            ws.column_dimensions[get_column_letter(j)].width = 13
        ws.column_dimensions["A"].width = 24
        ws.freeze_panes = ws.cell(row=header_row + 1, column=3)
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        wb.save(out)
    except OSError as exc:
        raise BadInput(f"无法写入 {path}：{exc.strerror}",
                       f"Cannot write {path}: {exc.strerror}") from None
    return out
