"""``python main.py screenshot OUT.png``: the console or the status window, offscreen, as a PNG.

README: "``python main.py screenshot OUT.png --view console [--size 1920x1080]
[--user dispatcher] [--lang en]`` renders the console offscreen on the
current database …; ``--view status`` renders the database status window."
Run as a user would, against the test's database: the file must be a PNG
(its signature and IHDR read by hand here, RFC 2083) of the size asked for,
and show something: not one flat colour.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.cli_runner import cli
from tests.conftest import PASSWORD
from tests.flows import case_in, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's first chunk, which must be IHDR."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def colours(path: Path, step: int = 4) -> int:
    """How many distinct colours a grid of sampled pixels holds."""
    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert not image.isNull()
    seen = set()
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            seen.add(image.pixel(x, y))
    return len(seen)


def shot(db_url: str, tmp_path: Path, args: str, name: str = "out.png"):
    out = tmp_path / name
    result = cli(db_url, f"screenshot {out} {args}", PASSWORD)
    return result, out


@pytest.fixture
def some_cases(engine, actors):
    """A queue to show: a few cases in different states (the top one opens in the detail)."""
    report(engine, actors, description="路边暴露垃圾，有异味")
    case_in(engine, actors, "filed", description="井盖缺失，行人绕行", category="B0101")
    case_in(engine, actors, "dispatched", severity="urgent", description="小广告")


def test_console_view_at_the_size_asked(db_url, tmp_path, some_cases):
    result, out = shot(db_url, tmp_path, "--view console --size 800x600 --user dispatcher1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert png_size(out) == (800, 600)
    assert colours(out) > 20  # text, toolbar, table, detail: far from a blank frame
    # The console is wider than 800 px at its smallest: it is laid out at the smallest
    # size of the same 4:3 shape and scaled down, whole and not squeezed, and says so.
    note = next(line for line in result.stderr.splitlines() if " → " in line)
    laid_out, _, rest = note.partition(" → ")
    assert rest.startswith("800×600")
    width, height = (int(v) for v in laid_out.split("×"))
    assert width > 800 and abs(width / height - 800 / 600) < 0.01


def test_console_view_in_english_at_a_size_it_fits(db_url, tmp_path, some_cases):
    result, out = shot(
        db_url, tmp_path, "--view console --size 1400x900 --user intake1 --lang en", "en.png"
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1400, 900)
    assert "→" not in result.stderr  # drawn at that size, nothing scaled
    assert colours(out) > 20


def test_status_view(db_url, tmp_path, some_cases):
    result, out = shot(db_url, tmp_path, "--view status --size 800x600", "status.png")
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (800, 600)
    assert "→" not in result.stderr  # the status window fits: drawn at that size
    assert colours(out) > 5


@pytest.mark.parametrize("size", ["800", "800x", "0x600", "axb", "20000x600"])
def test_a_bad_size_is_refused_in_one_line(db_url, tmp_path, size):
    result, out = shot(db_url, tmp_path, f"--view console --size {size}")
    assert result.returncode == 2
    assert result.stderr.strip() == "尺寸格式应为 宽x高，例如 1920x1080。"
    assert not out.exists()


def test_an_unknown_user_is_refused_and_writes_nothing(db_url, tmp_path):
    result, out = shot(db_url, tmp_path, "--view console --size 800x600 --user nobody")
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
