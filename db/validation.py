"""Checks on operator input, done before any row is touched.

Everything here raises ``BadInput`` with a bilingual message; nothing here
talks to the database.  Text is stored verbatim (quotes and SQL
metacharacters are ordinary characters: every statement is parameterised),
but control characters and NUL, which PostgreSQL cannot store in text, are
refused, as is anything longer than its field.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

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
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value) or "\x7f" in value:
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


def attachments(items) -> list[AttachmentIn]:
    items = list(items or [])
    if len(items) > MAX_ATTACHMENTS:
        raise BadInput(
            f"附件最多 {MAX_ATTACHMENTS} 个。", f"At most {MAX_ATTACHMENTS} attachments."
        )
    return [attachment(name, data) for name, data in items]
