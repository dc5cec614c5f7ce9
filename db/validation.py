"""Checks on operator input, done before any row is touched.

Everything here raises ``BadInput`` with a bilingual message; nothing here
talks to the database.  Text is stored verbatim (quotes and SQL
metacharacters are ordinary characters: every statement is parameterised),
but control characters are refused, as is anything longer than its field:
every character of Unicode's categories Cc (C0 and C1 controls, NUL, which
PostgreSQL cannot store in text, DEL, ``\u0085``, ``\u009b`` — a terminal's
CSI) and Cf (format characters: the bidi overrides ``\u202e``/``\u2066`` that
make a description read differently from what it says, zero-width
characters), except newline and tab.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from db.errors import BadInput

MAX_DESCRIPTION = 2000
MAX_REASON = 1000
MAX_ADDRESS = 200
MAX_NAME = 60
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENTS = 9
MAX_EXTENSION_HOURS = 24 * 30

FIELD_LABELS = {
    "description": ("问题描述", "description"),
    "reason": ("原因", "reason"),
    "address": ("地址", "address"),
    "reporter": ("上报人", "reporter"),
    "reporter_phone": ("联系电话", "phone"),
    "evidence": ("处置说明", "evidence"),
    "evaluation": ("评价", "evaluation"),
}


_ALLOWED_CONTROLS = frozenset("\n\t")


def has_controls(value: str, allowed: frozenset[str] = _ALLOWED_CONTROLS) -> bool:
    """Whether ``value`` holds a character of category Cc or Cf other than ``allowed``."""
    for ch in value:
        if (ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or not ch.isprintable()) and (
            ch not in allowed and unicodedata.category(ch) in ("Cc", "Cf")
        ):
            return True
    return False


def one_line(value, what_zh: str, what_en: str, limit: int) -> str:
    """A short single-line text (a name, a workstation): trimmed, no controls, within ``limit``."""
    if not isinstance(value, str):
        raise BadInput(f"{what_zh}必须是文本。", f"The {what_en} must be text.")
    value = value.strip()
    if len(value) > limit:
        raise BadInput(
            f"{what_zh}过长（{len(value)} 字，上限 {limit} 字）。",
            f"The {what_en} is too long ({len(value)} characters, at most {limit}).",
        )
    if has_controls(value, frozenset()):
        raise BadInput(
            f"{what_zh}含有不可见的控制字符。", f"The {what_en} contains control characters."
        )
    return value


def text_field(value, field: str, limit: int, required: bool = False) -> str:
    """A cleaned text value, or BadInput naming the field and its limit."""
    zh, en = FIELD_LABELS.get(field, (field, field))
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadInput(f"{zh}必须是文本。", f"The {en} must be text.")
    value = value.strip()
    if required and not value:
        raise BadInput(f"请填写{zh}。", f"The {en} is required.")
    if len(value) > limit:
        raise BadInput(
            f"{zh}过长（{len(value)} 字，上限 {limit} 字）。",
            f"The {en} is too long ({len(value)} characters, at most {limit}).",
        )
    if has_controls(value):
        raise BadInput(f"{zh}含有不可见的控制字符。", f"The {en} contains control characters.")
    return value


def coordinates(lon, lat) -> tuple[float, float]:
    """WGS-84 longitude and latitude as finite floats within their ranges."""
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise BadInput("经纬度必须是数字。", "Longitude and latitude must be numbers.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise BadInput("经纬度无效。", "Longitude and latitude must be finite numbers.")
    if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0):
        raise BadInput(
            f"经纬度超出范围（经度 {x}，纬度 {y}）。",
            f"Coordinates out of range (lon {x}, lat {y}).",
        )
    return x, y


def hours(value, field_zh: str = "延期时长", field_en: str = "extension") -> float:
    try:
        h = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{field_zh}必须是小时数。", f"The {field_en} must be hours.") from None
    if not math.isfinite(h) or h <= 0 or h > MAX_EXTENSION_HOURS:
        raise BadInput(
            f"{field_zh}须在 0–{MAX_EXTENSION_HOURS} 小时之间。",
            f"The {field_en} must be between 0 and {MAX_EXTENSION_HOURS} hours.",
        )
    return h


_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class AttachmentIn:
    """A checked attachment ready to store."""

    filename: str
    mime: str
    data: bytes
    sha256: str


def image_type(data: bytes) -> str | None:
    """The MIME type of an image recognised by its first bytes, else None."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def attachment(filename: str, data: bytes) -> AttachmentIn:
    """An image attachment: type by content (not by name), size within the limit."""
    name = text_field(filename or "image", "filename", 200) or "image"
    name = name.replace("/", "_").replace("\\", "_")
    if not isinstance(data, bytes | bytearray) or not data:
        raise BadInput(f"附件“{name}”为空。", f"The attachment '{name}' is empty.")
    if len(data) > MAX_ATTACHMENT_BYTES:
        mb = MAX_ATTACHMENT_BYTES // (1024 * 1024)
        raise BadInput(
            f"附件“{name}”过大（{len(data) / 1048576:.1f} MB，上限 {mb} MB）。",
            f"The attachment '{name}' is too large ({len(data) / 1048576:.1f} MB, "
            f"at most {mb} MB).",
        )
    mime = image_type(bytes(data[:16]))
    if mime is None:
        raise BadInput(
            f"附件“{name}”不是支持的图片（JPEG、PNG、WebP、GIF）。",
            f"The attachment '{name}' is not a supported image (JPEG, PNG, WebP, GIF).",
        )
    return AttachmentIn(name, mime, bytes(data), hashlib.sha256(data).hexdigest())


def read_attachment_file(path: str | Path) -> tuple[str, bytes]:
    """(name, bytes) of a photo on disk: a regular file, read at most to the limit + 1.

    ``/dev/zero`` was read until memory ran out, a FIFO hung the command, and a
    50 MB file was read whole before being refused: the file is opened without
    blocking (a FIFO with no writer does not wait), must be a regular file, and
    only ``MAX_ATTACHMENT_BYTES + 1`` bytes are ever read.
    """
    path = Path(path)
    mb = MAX_ATTACHMENT_BYTES // (1024 * 1024)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise BadInput(f"无法读取附件 {path}：{exc.strerror}",
                       f"Cannot read attachment {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInput(f"附件 {path} 不是普通文件。", f"The attachment {path} is not a file.")
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= MAX_ATTACHMENT_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_ATTACHMENT_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise BadInput(f"无法读取附件 {path}：{exc.strerror}",
                       f"Cannot read attachment {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_ATTACHMENT_BYTES:
        raise BadInput(
            f"附件“{path.name}”过大（上限 {mb} MB）。",
            f"The attachment '{path.name}' is too large (at most {mb} MB).",
        )
    return path.name, b"".join(chunks)


def attachments(items) -> list[AttachmentIn]:
    items = list(items or [])
    if len(items) > MAX_ATTACHMENTS:
        raise BadInput(
            f"附件最多 {MAX_ATTACHMENTS} 个。", f"At most {MAX_ATTACHMENTS} attachments."
        )
    return [attachment(name, data) for name, data in items]
