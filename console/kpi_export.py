"""Exports of the evaluation: XLSX (one sheet per grouping) and PDF (tables and charts).

The data is ``db.metrics``' (the reports and the daily trend); this module only lays it
out, so a workbook, a PDF, ``kpi --json`` and the panel always show the same numbers.
In the workbook every number is a number (rates as fractions formatted as percentages,
hours as hours); a rate without data is an empty cell, as the sheet's note says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from db.clock import hall_timezone
from db.errors import BadInput
from db.metrics import (
    COUNTS,
    GROUPING_LABELS,
    GROUPINGS,
    HOURS,
    METRIC_LABELS,
    METRICS,
    RATES,
    Period,
    reports,
    trend,
)

NO_DATA = ("无数据", "no data")
DEFINITIONS = [
    ("上报数", "报告时间在统计期内的案件"),
    ("立案数", "首次立案在统计期内的案件（当场处理的案件上报即立案）"),
    ("派遣数", "首次派遣在统计期内的案件"),
    ("结案数", "核查通过或值班长结案在统计期内的案件"),
    ("应结案数", "期末前立案、期初前未结案，且期内结案或结案时限早于期末的案件"),
    ("及时立案率", "期内立案的案件中，首次立案不晚于立案时限的比例"),
    ("及时派遣率", "期内派遣的案件中，首次派遣不晚于派遣时限的比例"),
    ("按期处置率", "首次反馈（联动案件为最后一个单位反馈）在期内的案件中，不晚于处置时限的比例"),
    ("派遣准确率", "1 − 期内派遣的案件中期末前被退单的比例"),
    ("返工率", "应结案件中期末前核查不通过过的比例"),
    ("结案率", "期内结案数 ÷ 应结案数"),
    ("按期结案率", "期内按时结案数 ÷ 应结案数"),
    ("平均处置时长", "期内结案的案件从首次立案到结案的小时数（均值、中位数）"),
    ("时限", "各阶段开始时设定、经批准的延期顺延；导入的历史以文件给出的时限为准"),
    ("分组", "处置单位：期末前最近一次派遣（或改派）的主办单位；街道/社区/网格：案件所在网格；"
             "网格员：上报的网格员"),
]


@dataclass
class Evaluation:
    """Everything an export shows: the period, one report per grouping, the daily trend."""

    period: Period
    reports: dict[str, dict]
    trend: list[dict]
    made: datetime


def gather(engine: Engine, period: Period, groupings=GROUPINGS,
           rank_by: str | None = None) -> Evaluation:
    """Read what the exports need (one fold, one query per report)."""
    by_grouping = reports(engine, period, groupings, rank_by)
    days = trend(engine, period, "day", fold=False) if (period.end - period.start).days <= 400 \
        else []
    return Evaluation(period, by_grouping, days, datetime.now(hall_timezone()))


def label(name: str, lang: str = "zh") -> str:
    pair = METRIC_LABELS.get(name) or GROUPING_LABELS.get(name)
    return name if pair is None else pair[0 if lang == "zh" else 1]


def period_text(period: Period) -> str:
    last = period.end.toordinal() - 1
    from datetime import date

    return f"{period.start.isoformat()} – {date.fromordinal(last).isoformat()}"


# --- XLSX ---------------------------------------------------------------------------------


def write_xlsx(ev: Evaluation, path, lang: str = "zh") -> Path:
    """One sheet per grouping (and the daily trend); numbers as numbers."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    about = wb.active
    about.title = "说明" if lang == "zh" else "About"
    about.append(["综合评价" if lang == "zh" else "Evaluation", period_text(ev.period)])
    about.append(["统计期" if lang == "zh" else "period",
                  f"[{ev.period.start.isoformat()}, {ev.period.end.isoformat()})"])
    about.append(["时区" if lang == "zh" else "time zone", hall_timezone().key])
    about.append(["生成时间" if lang == "zh" else "made", ev.made.strftime("%Y-%m-%d %H:%M")])
    about.append(["空白单元格" if lang == "zh" else "empty cell",
                  "无数据（分母为零）" if lang == "zh" else "no data (denominator zero)"])
    about.append([])
    for term, meaning in DEFINITIONS:
        about.append([term, meaning])
    about.column_dimensions["A"].width = 14
    about.column_dimensions["B"].width = 90
    head_font = Font(bold=True)
    fill = PatternFill("solid", fgColor="DFE6EE")
    columns = ["rank", "key", "name", *METRICS]
    for by in GROUPINGS:
        rep = ev.reports.get(by)
        if rep is None:
            continue
        ws = wb.create_sheet(label(by, lang))
        head = ["排名" if lang == "zh" else "rank", "编码" if lang == "zh" else "key",
                "名称" if lang == "zh" else "name", *(label(m, lang) for m in METRICS)]
        ws.append(head)
        for row in rep["rows"]:
            ws.append([row.get(c) for c in columns])
        for cell in ws[1]:
            cell.font, cell.fill = head_font, fill
            cell.alignment = Alignment(wrap_text=True, vertical="center")
        for j, name in enumerate(columns, start=1):
            letter = get_column_letter(j)
            ws.column_dimensions[letter].width = 24 if name in ("name", "key") else 11
            fmt = "0.0%" if name in RATES else ("0.00" if name in HOURS else "0")
            if name in ("key", "name"):
                continue
            for cell in ws[letter][1:]:
                cell.number_format = fmt
        ws.freeze_panes = "D2"
    if ev.trend:
        ws = wb.create_sheet("趋势" if lang == "zh" else "Trend")
        ws.append(["日期" if lang == "zh" else "day", *(label(m, lang) for m in METRICS)])
        for row in ev.trend:
            ws.append([row["start"][:10], *(row.get(m) for m in METRICS)])
        for j, name in enumerate(METRICS, start=2):
            letter = get_column_letter(j)
            fmt = "0.0%" if name in RATES else ("0.00" if name in HOURS else "0")
            for cell in ws[letter][1:]:
                cell.number_format = fmt
        for cell in ws[1]:
            cell.font, cell.fill = head_font, fill
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        wb.save(out)
    except OSError as exc:
        raise BadInput(f"无法写入 {path}：{exc.strerror}", f"Cannot write {path}: "
                       f"{exc.strerror}") from None
    return out


# --- PDF ------------------------------------------------------------------------------------


def _fmt(name: str, value, lang: str = "zh") -> str:
    if value is None:
        return NO_DATA[0 if lang == "zh" else 1] if name in RATES or name in HOURS else "—"
    if name in RATES:
        return f"{value * 100:.1f}%"
    if name in HOURS:
        return f"{value:.1f}"
    return str(value)


def _bar_chart(rows: list[dict], metric: str, lang: str, width: float, height: float):
    """A horizontal bar per group (best first), the metric's value at its end."""
    from reportlab.graphics.charts.barcharts import HorizontalBarChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    from console.pdf import font_name

    shown = [r for r in rows if r.get("key") is not None and r.get(metric) is not None][:20]
    d = Drawing(width, height)
    if not shown:
        d.add(String(10, height / 2, NO_DATA[0 if lang == "zh" else 1], fontName=font_name(),
                     fontSize=10))
        return d
    values = [r[metric] * (100 if metric in RATES else 1) for r in shown][::-1]
    names = [f"{r['name'] or r['key'] or '—'}"[:14] for r in shown][::-1]
    chart = HorizontalBarChart()
    chart.x, chart.y = 110, 16
    chart.width, chart.height = width - 150, height - 30
    chart.data = [values]
    chart.categoryAxis.categoryNames = names
    chart.categoryAxis.labels.fontName = font_name()
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = 100 if metric in RATES else max(values) * 1.15 or 1
    chart.valueAxis.labels.fontName = font_name()
    chart.valueAxis.labels.fontSize = 7
    chart.bars[0].fillColor = colors.HexColor("#3b82c4")
    chart.barLabelFormat = "%.1f"
    chart.barLabels.fontName = font_name()
    chart.barLabels.fontSize = 6.5
    chart.barLabels.nudge = 12
    d.add(chart)
    unit = "%" if metric in RATES else ""
    d.add(String(110, height - 10, f"{label(metric, lang)}{unit}", fontName=font_name(),
                 fontSize=8))
    return d


def _trend_chart(days: list[dict], lang: str, width: float, height: float):
    """Reported and closed per day (lines), and the day's closure rate (dots, right axis)."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    from console.pdf import font_name

    d = Drawing(width, height)
    if not days:
        return d
    plot = LinePlot()
    plot.x, plot.y = 40, 20
    plot.width, plot.height = width - 60, height - 40
    series = [
        [(i, r["reported"]) for i, r in enumerate(days)],
        [(i, r["closed"]) for i, r in enumerate(days)],
    ]
    plot.data = series
    plot.lines[0].strokeColor = colors.HexColor("#3b82c4")
    plot.lines[1].strokeColor = colors.HexColor("#2e9d5b")
    plot.xValueAxis.valueMin = 0
    plot.xValueAxis.valueMax = max(1, len(days) - 1)
    step = max(1, len(days) // 10)
    plot.xValueAxis.valueSteps = list(range(0, len(days), step))
    plot.xValueAxis.labelTextFormat = lambda i: days[int(i)]["start"][5:10] \
        if 0 <= int(i) < len(days) else ""
    plot.xValueAxis.labels.fontName = font_name()
    plot.xValueAxis.labels.fontSize = 7
    plot.yValueAxis.valueMin = 0
    plot.yValueAxis.labels.fontName = font_name()
    plot.yValueAxis.labels.fontSize = 7
    d.add(plot)
    legend = "上报数（蓝）与结案数（绿）逐日" if lang == "zh" else \
        "reported (blue) and closed (green) per day"
    d.add(String(40, height - 12, legend, fontName=font_name(), fontSize=8))
    return d


SECTION_TITLES = {
    "department": ("按处置单位排名", "Ranking by department"),
    "street": ("按街道排名", "Ranking by street"),
    "community": ("按社区排名", "Ranking by community"),
    "grid": ("按网格排名", "Ranking by grid"),
    "worker": ("按网格员排名", "Ranking by worker"),
}
MAX_TABLE_ROWS = 200


def _metric_table(rows: list[dict], lang: str, with_rank: bool = True):
    from reportlab.platypus import Paragraph

    from console.pdf import styles, table

    cols = [*COUNTS, *RATES, *HOURS]
    cell = styles()["cell"]
    head = (["排名" if lang == "zh" else "#"] if with_rank else []) + [
        "名称" if lang == "zh" else "name", *(Paragraph(label(m, lang), cell) for m in cols)]
    body = [head]
    for r in rows[:MAX_TABLE_ROWS]:
        name = f"{r.get('name') or '—'}"[:16]
        body.append(([str(r.get("rank") or "—")] if with_rank else []) + [name] + [
            _fmt(m, r.get(m), lang) for m in cols])
    widths = ([22] if with_rank else []) + [78] + [38] * len(cols)
    return table(body, widths, font_size=6.5)


def write_pdf(ev: Evaluation, path, lang: str = "zh") -> Path:
    """Page 1: the district and its daily trend; then one page (or more) per grouping with
    the ranking's bars and table; last, how each metric is defined."""
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, Spacer

    from console.pdf import build, document, styles, table

    st = styles()
    title = ("综合评价" if lang == "zh" else "Evaluation") + " " + period_text(ev.period)
    doc, footer = document(path, title)
    width = doc.width
    story = [Paragraph(title, st["title"])]
    district = ev.reports.get("district", {"rows": []})["rows"]
    d = district[0] if district else {}
    story.append(Paragraph(
        f"{'全区' if lang == 'zh' else 'District'}：{d.get('name') or ''}（"
        f"{hall_timezone().key}，[{ev.period.start}, {ev.period.end})）", st["body"]))
    story.append(Spacer(1, 3 * mm))
    pairs = [[label(m, lang), _fmt(m, d.get(m), lang)] for m in METRICS]
    half = (len(pairs) + 1) // 2
    grid = [["指标" if lang == "zh" else "metric", "数值" if lang == "zh" else "value"] * 2]
    for i in range(half):
        right = pairs[half + i] if half + i < len(pairs) else ["", ""]
        grid.append(pairs[i] + right)
    story.append(table(grid, [110, 70, 110, 70], font_size=8.5))
    story.append(Spacer(1, 5 * mm))
    if ev.trend:
        story.append(Paragraph("逐日趋势" if lang == "zh" else "Daily trend", st["h2"]))
        story.append(_trend_chart(ev.trend, lang, width, 62 * mm))
    for by in ("department", "street", "community", "grid", "worker"):
        rep = ev.reports.get(by)
        if rep is None:
            continue
        story.append(PageBreak())
        heading = SECTION_TITLES[by][0 if lang == "zh" else 1]
        metric = rep["rank_by"]
        story.append(Paragraph(f"{heading}（{label(metric, lang)}）", st["h2"]))
        story.append(_bar_chart(rep["rows"], metric, lang, width, 60 * mm))
        story.append(Spacer(1, 3 * mm))
        story.append(_metric_table(rep["rows"], lang))
        if len(rep["rows"]) > MAX_TABLE_ROWS:
            story.append(Paragraph(
                f"（共 {len(rep['rows'])} 行，此处列前 {MAX_TABLE_ROWS} 行，全部见 XLSX）"
                if lang == "zh" else
                f"({len(rep['rows'])} rows; the first {MAX_TABLE_ROWS} here, all in the XLSX)",
                st["small"]))
    story.append(PageBreak())
    story.append(Paragraph("指标口径" if lang == "zh" else "Definitions", st["h2"]))
    story.append(table([["指标", "定义"], *[[a, Paragraph(b, st["cell"])] for a, b in DEFINITIONS]],
                       [70, width - 70], font_size=8))
    build(doc, story, footer)
    return Path(path)
