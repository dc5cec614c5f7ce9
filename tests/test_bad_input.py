"""Bad input gets a clear message and changes no row."""

from __future__ import annotations

import math
import struct
import zlib

import pytest
from sqlalchemy import text

from db.case_actions import perform
from db.errors import BadInput, Forbidden, GridError, NotFound
from tests.conftest import table_counts
from tests.flows import REPORT, case_in, report, step


def png_bytes(size: int = 0) -> bytes:
    """A valid 1×1 PNG, padded with a private chunk to about ``size`` bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    pad = chunk(b"prVt", b"\x00" * max(0, size - 60)) if size else b""
    return b"\x89PNG\r\n\x1a\n" + body + pad + chunk(b"IEND", b"")


BAD_REPORTS = [
    ({"category": "NOPE99"}, "未知问题类别", "Unknown category"),
    ({"category": "S01"}, "大类", "sub-categories"),
    ({"category": 'S0102\'; DROP TABLE "case"; --'}, "未知问题类别", "Unknown category"),
    ({"lon": 200.0}, "超出范围", "out of range"),
    ({"lat": 91}, "超出范围", "out of range"),
    ({"lat": math.nan}, "无效", "finite"),
    ({"lon": "东经116"}, "数字", "numbers"),
    ({"description": "x" * 1_000_000}, "过长", "too long"),
    ({"description": "   "}, "请填写", "required"),
    ({"description": "bad\x00nul"}, "控制字符", "control characters"),
    ({"address": "a" * 201}, "过长", "too long"),
    ({"severity": "apocalyptic"}, "紧急程度", "severity"),
    ({"source": "rumour"}, "来源", "source"),
    ({"attachments": [("big.png", png_bytes(11 * 1024 * 1024))]}, "过大", "too large"),
    (
        {"attachments": [("evil.png", b"MZ\x90\x00 not an image")]},
        "不是支持的图片",
        "not a supported image",
    ),
    ({"attachments": [("empty.png", b"")]}, "为空", "empty"),
]


@pytest.mark.parametrize(
    ("override", "zh", "en"),
    BAD_REPORTS,
    ids=[f"{next(iter(o))}-{i}" for i, (o, *_) in enumerate(BAD_REPORTS)],
)
def test_bad_report_is_refused_and_changes_nothing(engine, actors, override, zh, en):
    report(engine, actors)  # something to leave untouched
    before = table_counts(engine)
    with pytest.raises(BadInput) as err:
        perform(engine, actors["intake1"], "report", **{**REPORT, **override})
    assert zh in err.value.zh
    assert en in err.value.en
    assert table_counts(engine) == before


def test_sql_metacharacters_in_text_are_stored_verbatim(engine, actors):
    """Quotes are ordinary characters in an address; they must not be refused or run."""
    nasty = 'O\'Brien 胡同 "5号"; DROP TABLE "case"; -- 50% off_'
    case = report(engine, actors, description=nasty, address="'; DELETE FROM case_log; --")
    with engine.connect() as conn:
        stored = conn.execute(
            text('SELECT description, address FROM "case" WHERE number = :n'), {"n": case.number}
        ).one()
        logs = conn.execute(text("SELECT count(*) FROM case_log")).scalar_one()
    assert stored.description == nasty
    assert stored.address == "'; DELETE FROM case_log; --"
    assert logs >= 1


def test_unknown_case_number_with_metacharacters(engine, actors):
    before = table_counts(engine)
    with pytest.raises(NotFound) as err:
        perform(engine, actors["intake1"], "accept", "1' OR '1'='1", 1)
    assert "不存在" in err.value.zh
    assert table_counts(engine) == before


@pytest.mark.parametrize(
    ("action", "params", "zh"),
    [
        ("reject", {"reason": ""}, "请填写原因"),
        ("reject", {"reason": "r" * 5000}, "过长"),
        ("merge", {"into": ""}, "合并到"),
        ("merge", {"into": "20000101-99999"}, "不存在"),
        ("file", {"category": "ZZZ"}, "未知问题类别"),
    ],
)
def test_bad_action_parameters(engine, actors, action, params, zh):
    case = case_in(engine, actors, "accepted")
    before = table_counts(engine)
    with pytest.raises(BadInput) as err:
        perform(engine, actors["intake1"], action, case.number, case.version, **params)
    assert zh in err.value.zh
    assert table_counts(engine) == before


def test_bad_dispatch_and_feedback_parameters(engine, actors):
    filed = case_in(engine, actors, "filed")
    before = table_counts(engine)
    with pytest.raises(BadInput, match="未知处置单位"):
        perform(
            engine,
            actors["dispatcher1"],
            "dispatch",
            filed.number,
            filed.version,
            department="nobody",
        )
    with pytest.raises(BadInput, match="未知网格员"):
        perform(
            engine, actors["dispatcher1"], "dispatch", filed.number, filed.version, worker="ghost"
        )
    assert table_counts(engine) == before
    working = case_in(engine, actors, "in_progress")
    before = table_counts(engine)
    with pytest.raises(BadInput, match="处置说明或照片"):
        perform(engine, actors["dept_huanwei"], "feedback", working.number, working.version)
    with pytest.raises(BadInput, match="过大"):
        perform(
            engine,
            actors["dept_huanwei"],
            "feedback",
            working.number,
            working.version,
            evidence="done",
            attachments=[("p.png", png_bytes(11 * 1024 * 1024))],
        )
    for hours in (0, -5, "soon", 10_000, math.inf):
        with pytest.raises(BadInput):
            perform(
                engine,
                actors["dept_huanwei"],
                "request_extension",
                working.number,
                working.version,
                hours=hours,
                reason="需要时间",
            )
    assert table_counts(engine) == before


def test_wrong_role_and_missing_version(engine, actors):
    case = case_in(engine, actors, "filed")
    before = table_counts(engine)
    with pytest.raises(Forbidden):
        perform(engine, actors["wall1"], "dispatch", case.number, case.version)
    with pytest.raises(BadInput, match="版本号"):
        perform(engine, actors["dispatcher1"], "dispatch", case.number, None)
    with pytest.raises(BadInput, match="未知操作"):
        perform(engine, actors["dispatcher1"], "explode", case.number, case.version)
    assert table_counts(engine) == before


def test_good_attachment_is_stored_with_type_and_size(engine, actors):
    image = png_bytes(2048)
    case = report(engine, actors, attachments=[("现场.png", image)])
    case = step(engine, actors, case, "accept")
    with engine.connect() as conn:
        row = conn.execute(
            text(
                'SELECT filename, mime, size, data FROM attachment a JOIN "case" c '
                "ON c.id = a.case_id WHERE c.number = :n"
            ),
            {"n": case.number},
        ).one()
    assert (row.filename, row.mime, row.size) == ("现场.png", "image/png", len(image))
    assert bytes(row.data) == image


def test_every_error_has_both_languages():
    for exc in (BadInput("中文", "English"), GridError("只有中文")):
        assert exc.message("zh") and exc.message("en")
