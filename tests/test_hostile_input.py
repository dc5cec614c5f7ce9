"""Bad files an operator (or a hostile one) hands the command line: one line, nothing changed.

Issue 10, "Bad input that still gets a traceback": ``district import`` with
100,000-deep JSON, ``"features": 5``, NaN, an unclosed ring, a 300-character
name, a directory, a 3°×3° area at ``--cell 20``; attachments that are
``/dev/zero``, a FIFO or 50 MB.  Each runs ``python main.py`` as a user would
against the real database and must exit 2 with one line, no traceback, and
nothing stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.cli_runner import cli
from tests.conftest import PASSWORD, table_counts

# A small real polygon in Dongcheng (WGS-84), the shape every bad file below spoils.
SQUARE = [[116.40, 39.92], [116.41, 39.92], [116.41, 39.93], [116.40, 39.93], [116.40, 39.92]]


def feature(coordinates, **properties) -> dict:
    props = {"adcode": "110199", "name": "测试区", **properties}
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "Polygon", "coordinates": coordinates}}


def districts(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM district")).scalar_one()


def import_line(db_url: str, path: Path, *extra: str):
    out = cli(db_url, f"district import {path} --crs wgs84 " + " ".join(extra), PASSWORD)
    return out


def one_line(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    return lines[0]


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_a_deeply_nested_file(db_url, engine, tmp_path):
    path = write(tmp_path, "deep.geojson", "[" * 100_000 + "]" * 100_000)
    assert "嵌套过深" in one_line(import_line(db_url, path))
    assert districts(engine) == 0


def test_features_that_are_not_a_list(db_url, engine, tmp_path):
    path = write(tmp_path, "five.geojson", json.dumps({"type": "FeatureCollection",
                                                       "features": 5}))
    assert "features 应为数组" in one_line(import_line(db_url, path))
    assert districts(engine) == 0


def test_nan_and_an_unclosed_ring(db_url, engine, tmp_path):
    nan = write(tmp_path, "nan.geojson", json.dumps(feature([SQUARE])).replace(
        "116.41, 39.92", "NaN, 39.92", 1))
    assert "无效数值" in one_line(import_line(db_url, nan))
    ring = write(tmp_path, "ring.geojson", json.dumps(feature([SQUARE[:4]])))  # open
    assert "未闭合" in one_line(import_line(db_url, ring))
    short = write(tmp_path, "short.geojson", json.dumps(feature([SQUARE[:2]])))
    assert "未闭合" in one_line(import_line(db_url, short))
    assert districts(engine) == 0


def test_a_name_too_long_is_refused_before_anything_is_built(db_url, engine, tmp_path):
    path = write(tmp_path, "long.geojson", json.dumps(feature([SQUARE], name="区" * 300)))
    assert "区县名称须为 1–100 个字符" in one_line(import_line(db_url, path))
    out = import_line(db_url, write(tmp_path, "ok.geojson", json.dumps(feature([SQUARE]))),
                      "--name", "区" * 101)
    assert "区县名称须为 1–100 个字符" in one_line(out)
    out = import_line(db_url, write(tmp_path, "bidi.geojson",
                                    json.dumps(feature([SQUARE], name="东城\u202e区"))))
    assert "控制字符" in one_line(out)
    assert districts(engine) == 0


def test_a_directory_and_a_device(db_url, engine, tmp_path):
    assert "不是普通文件" in one_line(import_line(db_url, tmp_path))
    assert "不是普通文件" in one_line(import_line(db_url, Path("/dev/zero")))
    assert districts(engine) == 0


def test_an_area_too_large_for_its_cell_size_is_refused_from_its_bounds(db_url, engine,
                                                                       tmp_path):
    """Issue: a 3°×3° area at --cell 20 tried to allocate 3.5 GiB before saying anything."""
    big = [[114.0, 38.0], [117.0, 38.0], [117.0, 41.0], [114.0, 41.0], [114.0, 38.0]]
    path = write(tmp_path, "big.geojson", json.dumps(feature([big])))
    line = one_line(import_line(db_url, path, "--cell", "20"))
    assert "区域过大" in line and "--cell" in line
    assert districts(engine) == 0


# --- attachments -------------------------------------------------------------------------------


def report_with(db_url: str, attachment: Path):
    return cli(db_url, "case act - report --user intake1 --category S0102 --lon 116.41 "
               f"--lat 39.92 --description 路边垃圾 --attach {attachment}", PASSWORD)


def test_dev_zero_a_fifo_and_a_50_mb_file_are_refused_without_reading_them(db_url, engine,
                                                                            tmp_path):
    before = table_counts(engine)
    assert "不是普通文件" in one_line(report_with(db_url, Path("/dev/zero")))
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nobody ever writes: a reader that waits would wait forever
    assert "不是普通文件" in one_line(report_with(db_url, fifo))
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:
        f.write(b"\xff\xd8\xff")
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB that costs no disk
    assert "过大" in one_line(report_with(db_url, huge))
    assert "不是普通文件" in one_line(report_with(db_url, tmp_path))
    assert table_counts(engine) == before


def test_a_photo_at_the_limit_is_taken(db_url, engine, tmp_path):
    from db.validation import MAX_ATTACHMENT_BYTES

    photo = tmp_path / "photo.jpg"
    with open(photo, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(MAX_ATTACHMENT_BYTES)
    out = report_with(db_url, photo)
    assert out.returncode == 0, out.stderr
    with engine.connect() as conn:
        size = conn.execute(text("SELECT octet_length(data) FROM attachment")).scalar_one()
    assert size == MAX_ATTACHMENT_BYTES


@pytest.mark.parametrize("bad", ["\u0085", "\u009b", "\u202e", "\u2066"])
def test_c1_and_bidi_in_a_description_from_the_cli(db_url, engine, bad):
    before = table_counts(engine)
    out = cli(db_url, "case act - report --user intake1 --category S0102 --lon 116.41 "
              f"--lat 39.92 --description 路边{bad}垃圾", PASSWORD)
    assert "控制字符" in one_line(out)
    assert table_counts(engine) == before


@pytest.mark.parametrize("flag", ["--streets", "--communities", "--grids"])
def test_an_explicit_zero_count_is_refused_not_taken_for_the_default(db_url, engine, tmp_path,
                                                                     flag):
    """Issue: explicit zeros were ignored (``x or default``): an explicit value wins."""
    path = write(tmp_path, "ok.geojson", json.dumps(feature([SQUARE])))
    assert "无法按要求划分网格" in one_line(import_line(db_url, path, flag, "0"))
    assert districts(engine) == 0
