"""The OsmAnd protocol as GPS terminals speak it: a request in, position reports out.

Pure functions, no HTTP and no database, so every format and every refusal
can be tested on its own.  Two shapes arrive at the same URL:

* query or form parameters (OsmAnd, Traccar Client before v9, most
  trackers): ``id``/``deviceid``, ``lat``+``lon`` or ``location=LAT,LON``,
  ``timestamp`` (Unix seconds, milliseconds, or ISO-8601 with ``T`` or a
  space, with or without zone), ``speed`` in KNOTS, ``bearing``/``heading``,
  ``altitude``, ``accuracy``/``hacc``, ``batt`` (percent), anything else
  kept as an attribute;
* a JSON body in the background-geolocation format (Traccar Client v9+):
  ``{"location": {"timestamp", "coords": {..., "speed" in m/s}, "battery":
  {"level" 0..1, "is_charging"}, ...}, "device_id"}``; ``location`` may also
  be a list (a client flushing its offline buffer).

Everything is normalised to what ``positions`` stores (UTC, km/h, percent);
a report that cannot be stored is refused with a reason, never "fixed".

A device key (``key=...``, which the terminal's URL template carries; or a
``key`` member of a JSON body) is taken out of the parameters here and handed
back beside the reports, so it never becomes a stored attribute, a queued
record or a log line.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from urllib.parse import unquote_to_bytes

from db.errors import BadInput
from db.positions import MAX_CLOCK_SKEW, PositionReport, check_report

KNOTS_TO_KMH = 1.852
MPS_TO_KMH = 3.6
MAX_PARAMS = 200
# A numeric timestamp below 10^11 is seconds (until the year 5138), at or above it
# milliseconds (from 1973): magnitude decides, not 2^31, or every terminal that
# counts seconds would be read as 1970 from January 2038.
SECONDS_BELOW = 10**11
CLOCK_AHEAD = "clock_ahead_s"  # attribute of a fix too far ahead to be the latest position
KEY_PARAM = "key"

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")
_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,15})")
_LEADING_ZERO = re.compile(r"[+-]?0\d")
_EPOCH = re.compile(r"\d{1,17}(?:\.\d{1,9})?")
# "…10:00:00 08:00": a "+08:00" zone whose "+" became a space in a query string.
_SPACED_ZONE = re.compile(r"(.*\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)")
_KNOWN = {
    "id",
    "key",
    "deviceid",
    "lat",
    "lon",
    "location",
    "timestamp",
    "speed",
    "bearing",
    "heading",
    "altitude",
    "accuracy",
    "hacc",
    "batt",
}


class ParseError(BadInput):
    """The request is not a storable position report; ``str()`` is the reason (zh / en)."""


def parse_request(
    query: bytes, body: bytes, content_type: str = "", now: datetime | None = None
) -> list[PositionReport]:
    """Position reports from one request's raw query string and body.

    A JSON body (by content type, or by its first character) is the
    background-geolocation format; any other body is form parameters, merged
    with the query (the query wins a name given twice).  Raises ``ParseError``.
    """
    return parse_keyed_request(query, body, content_type, now)[0]


def parse_keyed_request(
    query: bytes, body: bytes, content_type: str = "", now: datetime | None = None
) -> tuple[list[PositionReport], str | None]:
    """``parse_request`` and the device key the request carried (None when it had none).

    The key comes from the query (where a terminal's URL template puts it),
    else the form body, else a JSON body's top-level ``key``; it is removed
    from what is stored.
    """
    now = now or datetime.now(UTC)
    params = parse_form(query)
    stripped = body.lstrip()
    if "json" in content_type.lower() or stripped[:1] in (b"{", b"["):
        key = params.pop(KEY_PARAM, None)
        reports, body_key = _parse_json(body, params, now)
        key = key if key is not None else body_key
    else:
        if body:
            for name, value in parse_form(body).items():
                params.setdefault(name, value)
        key = params.pop(KEY_PARAM, None)
        reports = [parse_params(params, now)]
    for report in reports:
        try:
            check_report(report, now)
        except ParseError:
            raise
        except BadInput as exc:
            raise ParseError(exc.zh, exc.en) from None
    return reports, key


def parse_form(raw: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` bytes to a dict; strict UTF-8, last value wins."""
    out: dict[str, str] = {}
    if not raw:
        return out
    fields = raw.split(b"&")
    if len(fields) > MAX_PARAMS:
        raise ParseError(
            f"参数过多（最多 {MAX_PARAMS} 个）。", f"Too many parameters (at most {MAX_PARAMS})."
        )
    plain = raw.isascii() and b"%" not in raw and b"+" not in raw
    for item in fields:
        if not item:
            continue
        key, _, value = item.partition(b"=")
        if plain:  # the common case: nothing to unquote, ASCII is UTF-8
            out[key.decode("ascii")] = value.decode("ascii")
            continue
        try:
            k = unquote_to_bytes(key.replace(b"+", b" ")).decode("utf-8")
            v = unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("参数不是有效的 UTF-8。", "A parameter is not valid UTF-8.") from None
        out[k] = v
    return out


def parse_params(params: dict[str, str], now: datetime) -> PositionReport:
    """One report from OsmAnd query/form parameters."""
    device = params.get("id") or params.get("deviceid") or ""
    if not device:
        raise ParseError(
            "缺少设备标识（id 或 deviceid）。", "The device id (id or deviceid) is missing."
        )
    if "lat" in params or "lon" in params:
        if "lat" not in params or "lon" not in params:
            raise ParseError("lat 和 lon 必须同时提供。", "lat and lon must come together.")
        lat, lon = number("lat", params["lat"]), number("lon", params["lon"])
    elif "location" in params:
        parts = params["location"].split(",")
        if len(parts) != 2:
            raise ParseError("location 应为 纬度,经度。", "location must be LAT,LON.")
        lat, lon = number("location", parts[0]), number("location", parts[1])
    else:
        raise ParseError(
            "缺少位置（lat/lon 或 location）。", "The position (lat/lon or location) is missing."
        )
    _require_fix(lat, lon)
    ts = parse_time(params["timestamp"]) if params.get("timestamp") else now
    speed = _optional(params, "speed")
    course = _optional(params, "bearing", "heading")
    accuracy = _optional(params, "accuracy", "hacc")
    battery = _optional(params, "batt")
    attributes = {k: _attribute(v) for k, v in params.items() if k not in _KNOWN}
    _flag_future(ts, now, attributes)
    return PositionReport(
        device=device,
        ts=ts,
        lon=lon,
        lat=lat,
        speed_kmh=None if speed is None or speed < 0 else speed * KNOTS_TO_KMH,
        course=_course(course),
        altitude=_optional(params, "altitude"),
        accuracy=None if accuracy is None or accuracy < 0 else accuracy,
        battery=None if battery is None or battery < 0 else battery,
        attributes=attributes,
    )


def parse_json(body: bytes, params: dict[str, str], now: datetime) -> list[PositionReport]:
    """Reports from a background-geolocation JSON body (device id may come in the query)."""
    return _parse_json(body, params, now)[0]


def _parse_json(
    body: bytes, params: dict[str, str], now: datetime
) -> tuple[list[PositionReport], str | None]:
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_no_constant, parse_float=_float)
    except UnicodeDecodeError:
        raise ParseError("请求体不是有效的 UTF-8。", "The body is not valid UTF-8.") from None
    except RecursionError:
        raise ParseError("JSON 嵌套过深。", "The JSON is nested too deeply.") from None
    except ValueError as exc:
        raise ParseError(f"JSON 无效：{exc}", f"The JSON is invalid: {exc}") from None
    if not isinstance(doc, dict):
        raise ParseError("JSON 顶层应为对象。", "The JSON must be an object.")
    device = doc.get("device_id", params.get("id") or params.get("deviceid") or "")
    if not isinstance(device, str | int) or isinstance(device, bool) or device == "":
        raise ParseError("缺少设备标识（device_id）。", "The device id (device_id) is missing.")
    location = doc.get("location")
    if isinstance(location, dict):
        locations = [location]
    elif isinstance(location, list) and location and all(isinstance(x, dict) for x in location):
        locations = location
    else:
        raise ParseError("缺少位置（location）。", "The position (location) is missing.")
    key = doc.get(KEY_PARAM)
    key = key if isinstance(key, str) else None if key is None else str(key)
    extra = {k: v for k, v in doc.items() if k not in ("device_id", "location", KEY_PARAM)}
    return [_from_location(str(device), loc, extra, now) for loc in locations], key


def _from_location(device: str, loc: dict, extra: dict, now: datetime) -> PositionReport:
    coords = loc.get("coords")
    if not isinstance(coords, dict) or "latitude" not in coords or "longitude" not in coords:
        raise ParseError(
            "缺少位置（coords.latitude/longitude）。",
            "The position (coords.latitude/longitude) is missing.",
        )
    lat = _json_number("latitude", coords["latitude"])
    lon = _json_number("longitude", coords["longitude"])
    _require_fix(lat, lon)
    stamp = loc.get("timestamp")
    if stamp is None or stamp == "":
        ts = now
    elif isinstance(stamp, str | int) and not isinstance(stamp, bool):
        ts = parse_time(str(stamp))
    else:
        raise ParseError("timestamp 无效。", "The timestamp is invalid.")
    speed = _json_optional(coords, "speed")
    accuracy = _json_optional(coords, "accuracy")
    battery_doc = loc.get("battery")
    level = None
    attributes = dict(extra)
    if isinstance(battery_doc, dict):
        level = _json_optional(battery_doc, "level")
        if "is_charging" in battery_doc:
            attributes["charge"] = battery_doc["is_charging"]
        for k, v in battery_doc.items():
            if k not in ("level", "is_charging"):
                attributes[f"battery_{k}"] = v
    elif battery_doc is not None:
        attributes["battery"] = battery_doc
    for k, v in coords.items():
        if k not in ("latitude", "longitude", "speed", "accuracy", "heading", "altitude"):
            attributes[k] = v
    for k, v in loc.items():
        if k not in ("coords", "timestamp", "battery"):
            attributes[k] = v
    _flag_future(ts, now, attributes)
    return PositionReport(
        device=device,
        ts=ts,
        lon=lon,
        lat=lat,
        speed_kmh=None if speed is None or speed < 0 else speed * MPS_TO_KMH,
        course=_course(_json_optional(coords, "heading")),
        altitude=_json_optional(coords, "altitude"),
        accuracy=None if accuracy is None or accuracy < 0 else accuracy,
        battery=None if level is None or level < 0 else level * 100.0,
        attributes=attributes,
    )


def _flag_future(ts: datetime, now: datetime, attributes: dict) -> None:
    """Mark a fix further ahead of its receipt than a clock may drift.

    Such a fix is stored (up to a day ahead, ``db.positions.FUTURE_SLACK``) but
    never becomes the worker's latest position (``db.positions.MAX_CLOCK_SKEW``);
    ``clock_ahead_s`` says by how much the terminal's clock was ahead, so a
    trail or an inquiry can tell such a fix from a real one.
    """
    ahead = (ts - now).total_seconds()
    if ahead > MAX_CLOCK_SKEW.total_seconds():
        attributes[CLOCK_AHEAD] = round(ahead)
    else:
        attributes.pop(CLOCK_AHEAD, None)  # never the terminal's own say


def parse_time(value: str) -> datetime:
    """A fix time to UTC: Unix seconds or milliseconds, or ISO-8601 (no zone means UTC)."""
    s = value.strip()
    try:
        if _EPOCH.fullmatch(s):
            seconds = float(s) if "." in s else int(s)
            if seconds >= SECONDS_BELOW:
                seconds = seconds / 1000.0
            return datetime.fromtimestamp(seconds, UTC)
        fixed = _SPACED_ZONE.fullmatch(s)
        if fixed:
            s = f"{fixed.group(1)}+{fixed.group(2)}"
        ts = datetime.fromisoformat(s)
    except (ValueError, OverflowError, OSError):
        raise ParseError(
            f"无法识别的时间：{value[:40]!r}", f"Unrecognised time: {value[:40]!r}"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        return ts.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ParseError(
            f"时间超出范围：{value[:40]!r}", f"Time out of range: {value[:40]!r}"
        ) from None


def number(name: str, text: str) -> float:
    """A decimal number as terminals write it; NaN, infinities and words are refused."""
    # float() alone would also take "1_000" and non-ASCII digits; NaN and
    # infinities ("nan", "inf", "1e999") fail the range test.
    try:
        value = float(text) if text.isascii() and "_" not in text else math.nan
    except ValueError:
        value = math.nan
    if not -math.inf < value < math.inf:
        raise ParseError(
            f"{name} 不是有限数字：{text[:40]!r}", f"{name} is not a number: {text[:40]!r}"
        )
    return value


def _optional(params: dict[str, str], *names: str) -> float | None:
    for name in names:
        text = params.get(name)
        if text is not None and text != "":
            return number(name, text)
    return None


def _require_fix(lat: float, lon: float) -> None:
    if lat == 0.0 and lon == 0.0:
        # What terminals send before they have a fix; never a real position here.
        raise ParseError(
            "位置为 0,0：终端尚未定位。", "The position is 0,0: the terminal has no fix."
        )


def _course(value: float | None) -> float | None:
    """Heading in [0, 360); terminals send -1 when they do not know it."""
    if value is None or value < 0:
        return None
    return value % 360.0


def _json_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            return number(name, value)
        raise ParseError(f"{name} 不是数字。", f"{name} is not a number.")
    value = float(value)
    if not math.isfinite(value):
        raise ParseError(f"{name} 超出范围。", f"{name} is out of range.")
    return value


def _json_optional(doc: dict, name: str) -> float | None:
    value = doc.get(name)
    return None if value is None else _json_number(name, value)


def _attribute(text: str) -> object:
    """Attribute values keep their type: number, true/false, or text.

    Only canonical numbers become numbers, so an identifier such as a SIM
    number with leading zeros stays the text it was.
    """
    if text in ("true", "false"):
        return text == "true"
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text) and not _LEADING_ZERO.match(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value
