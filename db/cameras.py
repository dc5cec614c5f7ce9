"""Cameras: read by every console, changed by an administrator (revision 0007).

A camera has a code, a name, a position (WGS-84), the grid it stands in (found from
the position), a view direction (``heading``) and angle, a main stream (``url``) and
a sub-stream (``sub_url``): ``rtsp://``, ``http(s)://`` (MJPEG or anything FFmpeg
reads), ``demo://CODE/main|sub`` (the demo's generated scene) or a local file; groups
(a street, a key site, an event) and whether it is enabled.

Changes go through ``grid_camera_save`` / ``grid_camera_set_active``, which need an
administrator's session: this module checks the input first so an operator gets one
clear line, and the database has the last word on who may.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from db import validation as v
from db.errors import BadInput, Forbidden, NotFound
from db.locate import grid_at
from db.session import bind, transaction

CODE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "rtp", "srt", "tcp",
                  "demo", "file")
MAX_URL = 2000
MAX_GROUPS = 20
CSV_FIELDS = ("code", "name", "lon", "lat", "heading", "view_angle", "url", "sub_url",
              "groups", "enabled")

_COLUMNS = (
    "c.id, c.code, c.name, c.lon, c.lat, c.heading, c.view_angle, c.url, c.sub_url, "
    "c.groups, c.active, c.updated_at, g.code AS grid_code"
)


# --- reading -------------------------------------------------------------------------


def list_cameras(engine: Engine, include_disabled: bool = False,
                 group: str | None = None) -> list[dict]:
    """Cameras by code (enabled only unless ``include_disabled``), optionally of one group."""
    where = [] if include_disabled else ["c.active"]
    params: dict = {}
    if group:
        where.append(":g = ANY (c.groups)")
        params["g"] = group
    sql = f"SELECT {_COLUMNS} FROM camera c LEFT JOIN grid g ON g.id = c.grid_id"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with engine.connect() as conn:
        rows = conn.execute(text(sql + " ORDER BY c.code"), params).all()
    return [_row(r) for r in rows]


def get_camera(engine: Engine, code: str) -> dict:
    with engine.connect() as conn:
        return _get(conn, code)


def _get(conn: Connection, code: str) -> dict:
    row = conn.execute(
        text(f"SELECT {_COLUMNS} FROM camera c LEFT JOIN grid g ON g.id = c.grid_id "
             "WHERE c.code = :c"), {"c": code}).first()
    if row is None:
        raise NotFound(f"摄像头“{code}”不存在。", f"No camera coded '{code}'.")
    return _row(row)


def _row(r) -> dict:
    d = dict(r._mapping)
    d["groups"] = list(d.get("groups") or [])
    d["enabled"] = bool(d.pop("active"))
    return d


def camera_groups(engine: Engine) -> list[str]:
    """Every group an enabled camera belongs to, sorted."""
    with engine.connect() as conn:
        return [g for (g,) in conn.execute(text(
            "SELECT DISTINCT unnest(groups) AS g FROM camera WHERE active ORDER BY g"))]


def nearest_cameras(engine: Engine, lon: float, lat: float, radius_m: float = 300.0,
                    limit: int = 9) -> list[dict]:
    """Enabled cameras within ``radius_m`` of a point, those whose view covers it first
    (``maps.camera_view``); each with ``distance_m``, ``bearing_deg`` and ``covers``."""
    from maps.camera_view import rank_cameras

    dlat = radius_m / 111_195.0
    dlon = dlat / max(0.01, math.cos(math.radians(lat)))
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {_COLUMNS} FROM camera c LEFT JOIN grid g ON g.id = c.grid_id "
            "WHERE c.active AND c.lon BETWEEN :x0 AND :x1 AND c.lat BETWEEN :y0 AND :y1"),
            {"x0": lon - dlon, "x1": lon + dlon, "y0": lat - dlat, "y1": lat + dlat}).all()
    cams = {r.code: _row(r) for r in rows}
    out = []
    for cand in rank_cameras(lon, lat, cams.values(), radius_m, limit):
        cam = dict(cams[cand.code])
        cam.update(distance_m=round(cand.distance_m, 1), bearing_deg=round(cand.bearing_deg, 1),
                   covers=cand.covers)
        out.append(cam)
    return out


# --- checking input ------------------------------------------------------------------


def _float(value, what_zh: str, what_en: str, lo: float, hi: float, *, required: bool,
           hi_open: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadInput(f"请填写{what_zh}。", f"The {what_en} is required.")
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{what_zh}“{value}”不是数字。", f"The {what_en} '{value}' is not a number."
                       ) from None
    if not math.isfinite(x) or x < lo or x > hi or (hi_open and x >= hi):
        rng = f"{lo:g}–{hi:g}"
        raise BadInput(f"{what_zh}须在 {rng} 之间（收到 {value}）。",
                       f"The {what_en} must be within {rng} (got {value}).")
    return x


def stream_url(value, what_en: str = "stream address") -> str:
    """A stream address the decoders can open, or '' for none; one clear line otherwise."""
    if value is None:
        return ""
    url = str(value).strip()
    if not url:
        return ""
    if len(url) > MAX_URL or any(ch.isspace() for ch in url) or "\x00" in url:
        raise BadInput(f"视频地址无效：{url[:80]}", f"Not a valid {what_en}: {url[:80]}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme and scheme not in STREAM_SCHEMES:
        raise BadInput(
            f"不支持的视频地址类型“{scheme}://”（可用 rtsp、http(s)、demo 或本地文件）。",
            f"Unsupported stream address '{scheme}://' (use rtsp, http(s), demo or a local file).",
        )
    if not scheme and ":" in url.split("/", 1)[0] and not re.match(r"^[A-Za-z]:[\\/]", url):
        raise BadInput(f"视频地址无效：{url[:80]}", f"Not a valid {what_en}: {url[:80]}")
    return url


def groups_of(value) -> list[str]:
    """Groups from a list or a text split on ``;`` / ``|``; trimmed, unique, in order."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else re.split(r"[;|，；]", str(value))
    out: list[str] = []
    for g in items:
        g = str(g).strip()
        if g and g not in out:
            v.one_line(g, "分组名", "group name", 40)  # length, no control or bidi characters
            out.append(g)
    if len(out) > MAX_GROUPS:
        raise BadInput(f"一个摄像头最多 {MAX_GROUPS} 个分组。",
                       f"A camera belongs to at most {MAX_GROUPS} groups.")
    return out


def _bool(value, default: bool = True) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return value
    text_ = str(value).strip().lower()
    if text_ in ("1", "true", "yes", "y", "on", "是", "启用"):
        return True
    if text_ in ("0", "false", "no", "n", "off", "否", "停用"):
        return False
    raise BadInput(f"“{value}”不是 是/否。", f"'{value}' is not yes/no.")


@dataclass(frozen=True)
class CameraIn:
    """A checked camera, ready for ``grid_camera_save``."""

    code: str
    name: str
    lon: float
    lat: float
    heading: float | None
    view_angle: float | None
    url: str
    sub_url: str
    groups: list[str]
    enabled: bool


def clean_camera(fields: dict) -> CameraIn:
    """Check every field of a camera; ``BadInput`` with one line for the first bad one."""
    code = str(fields.get("code") or "").strip()
    if not CODE.match(code):
        raise BadInput(
            f"摄像头编号“{code}”无效（1–40 个字母、数字或 _ . -）。",
            f"Camera code '{code}' is not valid (1–40 letters, digits or _ . -).",
        )
    name = str(fields.get("name") or "").strip()
    if not name:
        raise BadInput("摄像头名称须为 1–100 个字。", "A camera's name is 1–100 characters.")
    v.one_line(name, "摄像头名称", "camera name", 100)  # length, no control or bidi characters
    lon = _float(fields.get("lon"), "经度", "longitude", -180, 180, required=True)
    lat = _float(fields.get("lat"), "纬度", "latitude", -90, 90, required=True)
    heading = _float(fields.get("heading"), "朝向", "heading", 0, 360, required=False,
                     hi_open=True)
    angle = _float(fields.get("view_angle"), "视角", "view angle", 1, 360, required=False)
    return CameraIn(code, name, lon, lat, heading, angle,
                    stream_url(fields.get("url"), "main stream address"),
                    stream_url(fields.get("sub_url"), "sub-stream address"),
                    groups_of(fields.get("groups")), _bool(fields.get("enabled")))


# --- changing (an administrator's) ----------------------------------------------------


def _save(conn: Connection, cam: CameraIn, mode: str) -> int:
    grid_id = grid_at(conn, cam.lon, cam.lat)
    try:
        with conn.begin_nested():
            return conn.execute(text(
                "SELECT grid_camera_save(:code, :name, :lon, :lat, :grid, :url, :sub, :heading, "
                ":angle, CAST(:groups AS text[]), :enabled, :mode)"),
                {"code": cam.code, "name": cam.name, "lon": cam.lon, "lat": cam.lat,
                 "grid": grid_id, "url": cam.url, "sub": cam.sub_url, "heading": cam.heading,
                 "angle": cam.view_angle, "groups": cam.groups, "enabled": cam.enabled,
                 "mode": mode}).scalar_one()
    except DBAPIError as exc:
        raise _refused(exc, cam.code) from None


def _refused(exc: DBAPIError, code: str) -> Exception:
    pg = getattr(exc.orig, "pgcode", None)
    if pg == "23505":
        return BadInput(f"摄像头编号“{code}”已存在。", f"A camera coded '{code}' already exists.")
    if pg == "P0002":
        return NotFound(f"摄像头“{code}”不存在。", f"No camera coded '{code}'.")
    if pg == "42501":
        return Forbidden("只有管理员可以管理摄像头。", "Only an administrator may manage cameras.")
    if pg in ("23514", "22P02", "22023"):
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        return BadInput(f"摄像头“{code}”的数据无效：{first}", f"Camera '{code}': {first}")
    return exc


def add_camera(engine: Engine, by, **fields) -> dict:
    """Add a camera (``by``: the administrator's ``Actor``; None on the owner's engine)."""
    cam = clean_camera(fields)
    with transaction(engine) as conn:
        bind(conn, by, "camera")
        _save(conn, cam, "add")
        return _get(conn, cam.code)


def edit_camera(engine: Engine, by, code: str, **changes) -> dict:
    """Change the fields given (the others stay); one transaction."""
    with transaction(engine) as conn:
        bind(conn, by, "camera")
        old = _get(conn, code)
        merged = {k: old[k] for k in ("code", "name", "lon", "lat", "heading", "view_angle",
                                       "url", "sub_url", "groups", "enabled")}
        merged.update({k: v for k, v in changes.items() if v is not None})
        cam = clean_camera(merged)
        _save(conn, cam, "edit")
        return _get(conn, code)


def set_camera_enabled(engine: Engine, by, code: str, enabled: bool) -> dict:
    with transaction(engine) as conn:
        bind(conn, by, "camera")
        try:
            with conn.begin_nested():
                conn.execute(text("SELECT grid_camera_set_active(:c, :a)"),
                             {"c": code, "a": enabled})
        except DBAPIError as exc:
            raise _refused(exc, code) from None
        return _get(conn, code)


@dataclass(frozen=True)
class ImportSummary:
    added: int
    updated: int
    lines: int

    def as_json(self) -> dict:
        return {"added": self.added, "updated": self.updated, "lines": self.lines}


def read_camera_csv(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, fields) for every row of a camera CSV (UTF-8, BOM allowed, header
    ``code,name,lon,lat[,heading,view_angle,url,sub_url,groups,enabled]``)."""
    p = Path(path)
    try:
        raw = p.read_text("utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"文件不存在：{p}", f"No such file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"无法读取 {p}：{exc}", f"Cannot read {p}: {exc}") from None
    reader = csv.DictReader(raw.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [f for f in ("code", "name", "lon", "lat") if f not in header]
    if missing:
        raise BadInput(
            f"{p.name} 缺少列：{', '.join(missing)}（需要 {', '.join(CSV_FIELDS)}）。",
            f"{p.name} lacks the columns {', '.join(missing)} (expected {', '.join(CSV_FIELDS)}).",
        )
    unknown = [h for h in header if h not in CSV_FIELDS]
    if unknown:
        raise BadInput(f"{p.name} 有未知列：{', '.join(unknown)}。",
                       f"{p.name} has unknown columns: {', '.join(unknown)}.")
    rows = []
    for n, rec in enumerate(reader, start=2):
        rec = {(k or "").strip(): v for k, v in rec.items()}
        if None in rec or "" in rec:
            raise BadInput(f"第 {n} 行的列数多于表头。",
                           f"Line {n} has more fields than the header.")
        if all(not (v or "").strip() for v in rec.values()):
            continue
        rows.append((n, rec))
    return rows


def import_cameras(engine: Engine, by, path: str | Path) -> ImportSummary:
    """Add or update every camera of a CSV in one transaction: all lines or none."""
    rows = read_camera_csv(path)
    cams: list[tuple[int, CameraIn]] = []
    seen: set[str] = set()
    for n, rec in rows:
        try:
            cam = clean_camera(rec)
        except BadInput as exc:
            raise BadInput(f"第 {n} 行：{exc.zh}", f"Line {n}: {exc.en}") from None
        if cam.code in seen:
            raise BadInput(f"第 {n} 行：编号“{cam.code}”重复。",
                           f"Line {n}: the code '{cam.code}' appears twice.")
        seen.add(cam.code)
        cams.append((n, cam))
    added = updated = 0
    with transaction(engine) as conn:
        bind(conn, by, "camera")
        existing = {c for (c,) in conn.execute(text("SELECT code FROM camera"))}
        for n, cam in cams:
            try:
                _save(conn, cam, "upsert")
            except BadInput as exc:
                raise BadInput(f"第 {n} 行：{exc.zh}", f"Line {n}: {exc.en}") from None
            if cam.code in existing:
                updated += 1
            else:
                added += 1
    return ImportSummary(added, updated, len(cams))


def as_rows(cameras: Iterable[dict]) -> list[dict]:
    """Cameras as CSV rows (``CSV_FIELDS``), the format ``import`` reads back."""
    out = []
    for c in cameras:
        out.append({
            "code": c["code"], "name": c["name"], "lon": c["lon"], "lat": c["lat"],
            "heading": "" if c["heading"] is None else c["heading"],
            "view_angle": "" if c["view_angle"] is None else c["view_angle"],
            "url": c["url"], "sub_url": c["sub_url"], "groups": ";".join(c["groups"]),
            "enabled": "true" if c["enabled"] else "false",
        })
    return out
