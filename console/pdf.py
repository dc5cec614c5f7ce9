"""What every PDF the console writes shares: a Chinese font, page furniture, tables.

reportlab draws without Qt, so reports can be written by the command line and by the
window alike.  The font is embedded (a subset of the glyphs used, reportlab's ``TTFont``):
a TrueType CJK font named by ``GRID_PDF_FONT`` (``.ttf`` or ``.ttc``), else WenQuanYi
Micro Hei (文泉驿微米黑, Apache-2.0, TrueType outlines; installed with the console by the
``paperang-p2-fonts-cjk`` package).  Only without either does reportlab's built-in CID
font ``STSong-Light`` write Chinese with no font file (the reader supplies the glyphs).
The system's Noto CJK fonts are OpenType with CFF outlines, which reportlab cannot embed.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from db.clock import hall_timezone
from db.errors import BadInput

FONT = "GridCJK"
_registered: str | None = None


def bundled_font() -> str | None:
    """The TrueType CJK font installed with the console (WenQuanYi Micro Hei), if any."""
    try:
        from importlib.resources import files

        path = files("paperang_p2_fonts_cjk").joinpath("fonts/wqy-microhei.ttc")
    except ImportError:  # not installed: the CID font below
        return None
    return str(path) if path.is_file() else None


def font_name() -> str:
    """Register the Chinese font once; its name for reportlab."""
    global _registered
    if _registered:
        return _registered
    from reportlab.pdfbase import pdfmetrics

    path = os.environ.get("GRID_PDF_FONT") or bundled_font()
    if path:
        from reportlab.pdfbase.ttfonts import TTFont

        try:
            pdfmetrics.registerFont(TTFont(FONT, path, subfontIndex=0))
        except Exception as exc:
            raise BadInput(
                f"GRID_PDF_FONT 不是可嵌入的 TrueType 字体：{path}",
                f"GRID_PDF_FONT is not an embeddable TrueType font: {path} ({exc})",
            ) from None
        _registered = FONT
    else:
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
        _registered = "STSong-Light"
    return _registered


def styles():
    """Paragraph styles in the Chinese font: title, heading, body, small."""
    from reportlab.lib.styles import ParagraphStyle

    f = font_name()
    return {
        "title": ParagraphStyle("title", fontName=f, fontSize=18, leading=24, spaceAfter=8),
        "h2": ParagraphStyle("h2", fontName=f, fontSize=13, leading=18, spaceBefore=6,
                             spaceAfter=4),
        "body": ParagraphStyle("body", fontName=f, fontSize=9.5, leading=13),
        "small": ParagraphStyle("small", fontName=f, fontSize=8, leading=10),
        "cell": ParagraphStyle("cell", fontName=f, fontSize=7.5, leading=9),
    }


def table(rows: list[list], widths: list[float] | None = None, header_rows: int = 1,
          font_size: float = 7.5):
    """A reportlab table with a shaded header and hairlines, repeating its header."""
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    t = Table(rows, colWidths=widths, repeatRows=header_rows)
    t.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), font_name(), font_size),
        ("BACKGROUND", (0, 0), (-1, header_rows - 1), colors.HexColor("#dfe6ee")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#9aa7b4")),
        ("ALIGN", (1, header_rows), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ROWBACKGROUNDS", (0, header_rows), (-1, -1), [colors.white, colors.HexColor("#f5f7f9")]),
    ]))
    return t


def document(path, title: str, landscape_pages: bool = True):
    """A SimpleDocTemplate on A4 (landscape by default) with a footer naming the page."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    size = landscape(A4) if landscape_pages else A4
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"无法写入 {path}：{exc.strerror}", f"Cannot write {path}: "
                       f"{exc.strerror}") from None
    doc = SimpleDocTemplate(str(out), pagesize=size, leftMargin=14 * mm, rightMargin=14 * mm,
                            topMargin=14 * mm, bottomMargin=14 * mm, title=title,
                            author="网格指挥调度台 Grid Command Console")
    made = datetime.now(hall_timezone()).strftime("%Y-%m-%d %H:%M")

    def footer(canvas, d):
        canvas.saveState()
        canvas.setFont(font_name(), 7.5)
        canvas.drawString(14 * mm, 8 * mm, f"{title}    生成于 {made}    数据来自案件日志")
        canvas.drawRightString(size[0] - 14 * mm, 8 * mm, f"第 {d.page} 页")
        canvas.restoreState()

    return doc, footer


def build(doc, story, footer) -> None:
    try:
        doc.build(story, onFirstPage=footer, onLaterPages=footer)
    except OSError as exc:
        raise BadInput(f"无法写入 {doc.filename}：{exc.strerror}",
                       f"Cannot write {doc.filename}: {exc.strerror}") from None
