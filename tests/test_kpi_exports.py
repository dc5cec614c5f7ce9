"""``kpi`` on the command line: JSON as the issue gives it, an XLSX that reads back with the
same numbers, a PDF with the expected pages and Chinese text; bad input in one line."""

from __future__ import annotations

import json

import pytest

from db.history_import import import_history
from db.metrics import GROUPINGS, METRICS
from tests.cli_runner import main_py
from tests.kpi_support import setup_hall, write_history

MONTH = "--from 2025-03-01 --to 2025-04-01"
SHEETS = {"district": "全区", "department": "处置单位", "street": "街道", "community": "社区",
          "grid": "网格", "worker": "网格员"}
FIELDS = ["key", "name", "reported", "filed", "dispatched", "closed", "due", "timely_filing",
          "timely_dispatch", "ontime_handling", "dispatch_accuracy", "rework", "closure",
          "ontime_closure", "handling_hours_mean", "handling_hours_median"]


@pytest.fixture
def hall(engine, db_url, tmp_path):
    setup_hall(engine, tmp_path)
    assert import_history(engine, write_history(tmp_path / "history.jsonl")).loaded == 11
    return db_url


def kpi(db_url, *args, lang=None):
    argv = ["kpi", *" ".join(args).split()]
    if lang:
        argv += ["--lang", lang]
    return main_py(*argv, env={"GRID_DATABASE_URL": db_url, "GRID_TZ": "Asia/Shanghai"})


def test_json_is_the_issues_shape(hall):
    run = kpi(hall, MONTH, "--json")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert (answer["from"], answer["to"], answer["by"]) == ("2025-03-01", "2025-04-01",
                                                            "district")
    (row,) = answer["rows"]
    assert set(FIELDS) <= set(row)
    assert row["key"] == "district"
    # the month of tests/test_kpi_metrics.py, worked out there
    assert (row["reported"], row["filed"], row["dispatched"], row["closed"], row["due"]) == \
        (10, 8, 7, 7, 9)
    assert row["closure"] == pytest.approx(7 / 9) and row["rework"] == pytest.approx(1 / 9)
    empty = json.loads(kpi(hall, "--from 2024-01-01 --to 2024-01-08 --json").stdout)
    assert empty["rows"][0]["closure"] is None and empty["rows"][0]["reported"] == 0
    grids = json.loads(kpi(hall, MONTH, "--by grid --json").stdout)
    assert all(len(r["key"]) == 15 for r in grids["rows"]) and len(grids["rows"]) == 4


def test_xlsx_reads_back_with_the_numbers_of_kpi_json(hall, tmp_path):
    from openpyxl import load_workbook

    out = tmp_path / "kpi.xlsx"
    run = kpi(hall, MONTH, f"--xlsx {out}")
    assert run.returncode == 0, run.stderr
    book = load_workbook(out)
    assert book.sheetnames == ["说明", *SHEETS.values(), "趋势"]
    for by, sheet in SHEETS.items():
        expected = json.loads(kpi(hall, MONTH, f"--by {by} --json").stdout)["rows"]
        ws = book[sheet]
        cells = list(ws.iter_rows(values_only=True))
        header, body = cells[0], cells[1:]
        assert header[:3] == ("排名", "编码", "名称") and len(header) == 3 + len(METRICS)
        assert len(body) == len(expected), by
        for want, got in zip(expected, body, strict=True):
            assert got[0] == want["rank"] and got[1] == want["key"] and got[2] == want["name"]
            for name, value in zip(METRICS, got[3:], strict=True):
                if want[name] is None:
                    assert value is None, (by, want["key"], name)  # no data: an empty cell
                else:
                    assert isinstance(value, int | float), (by, name, value)  # a number
                    assert value == pytest.approx(want[name]), (by, want["key"], name)
        rate_cell = ws.cell(row=2, column=3 + METRICS.index("closure") + 1)
        assert rate_cell.number_format == "0.0%"
    trend = list(book["趋势"].iter_rows(values_only=True))
    assert len(trend) == 1 + 31 and trend[3][0] == "2025-03-03"
    assert trend[3][1] == 6  # reported on 03-03


def test_pdf_has_the_expected_pages_and_chinese_text(hall, tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "kpi.pdf"
    run = kpi(hall, "--from 2025-03-03 --to 2025-03-10", f"--pdf {out}")
    assert run.returncode == 0, run.stderr
    pages = [p.extract_text() for p in PdfReader(out).pages]
    assert len(pages) == 7
    first = pages[0]
    assert "综合评价 2025-03-03 – 2025-03-09" in first
    assert "评价区" in first and "逐日趋势" in first
    for name in ("上报数", "应结案数", "及时立案率", "派遣准确率", "按期结案率", "平均处置时长"):
        assert name in first, name
    assert "66.7%" in first  # 结案率 of the week: 6 / 9
    for page, title in zip(pages[1:6], ["按处置单位排名", "按街道排名", "按社区排名",
                                         "按网格排名", "按网格员排名"], strict=True):
        assert title in page
    assert "环卫" in pages[1] and "未派遣" in pages[1]
    assert "王网格" in pages[5]
    assert "指标口径" in pages[6] and "应结案数" in pages[6]
    assert all(f"第 {i + 1} 页" in p for i, p in enumerate(pages))
    # the Chinese font travels in the file: TrueType subsets, none left to the reader
    fonts = embedded_fonts(PdfReader(out))
    cjk = {name for name, file in fonts.items() if "WenQuanYi" in name}
    assert cjk and all(fonts[name] == "/FontFile2" for name in cjk), fonts
    assert not any("STSong" in name for name in fonts)
    assert all(file is not None or name in BASE14 for name, file in fonts.items()), fonts


# The PDF standard fonts a reader always has (reportlab's canvas starts in Helvetica).
BASE14 = {"/Helvetica", "/Helvetica-Bold", "/Times-Roman", "/Courier", "/Symbol"}


def embedded_fonts(reader) -> dict[str, str | None]:
    """Each font the pages use → the kind of font file embedded for it (None: none)."""
    out: dict[str, str | None] = {}
    for page in reader.pages:
        for ref in (page.get("/Resources") or {}).get("/Font", {}).values():
            font = ref.get_object()
            descriptors = [font.get("/FontDescriptor")]
            descriptors += [d.get_object().get("/FontDescriptor")
                            for d in font.get("/DescendantFonts", [])]
            kind = None
            for d in descriptors:
                if d is None:
                    continue
                d = d.get_object()
                kind = next((k for k in ("/FontFile2", "/FontFile3", "/FontFile") if k in d),
                            kind)
            out[str(font.get("/BaseFont"))] = kind
    return out


def test_text_output_and_english(hall):
    run = kpi(hall, MONTH, "--by department", lang="en")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith("evaluation [2025-03-01, 2025-04-01)")
    assert "huanwei" in run.stdout and "no data" in run.stdout


@pytest.mark.parametrize("args,zh,en", [
    ("--from 2025-03-05 --to 2025-03-01", "结束日期须晚于开始日期", "The end date must be after"),
    ("--from 2025-13-01 --to 2025-03-01", "--from 须为日期", "--from must be a date"),
    (MONTH + " --rank-by nope", "未知指标", "Unknown metric"),
])
def test_bad_input_is_one_line_and_exit_2(hall, args, zh, en):
    run = kpi(hall, args)
    assert run.returncode == 2 and zh in run.stderr and len(run.stderr.splitlines()) == 1
    run = kpi(hall, args, lang="en")
    assert run.returncode == 2 and en in run.stderr and "Traceback" not in run.stderr


def test_every_grouping_is_offered():
    assert tuple(SHEETS) == GROUPINGS
