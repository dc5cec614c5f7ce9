"""Read a district boundary file and check it before anything is built from it.

Accepts a GeoJSON FeatureCollection, Feature or bare geometry holding
Polygon or MultiPolygon parts (islands and holes included), in GCJ-02 (the
files shipped in ``resources/districts``, amap's boundaries) or WGS-84, and
returns a valid WGS-84 shapely geometry.  Every refusal says what is wrong
in words an administrator can act on.
"""

from __future__ import annotations

import json
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.errors import GEOSException
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from maps.coords import geometry_gcj02_to_wgs84, out_of_china

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_NAME = 100  # district.name is String(100): refused before the division runs, not after


class BoundaryError(ValueError):
    """A boundary file that cannot be used; ``zh`` and ``en`` say why."""

    def __init__(self, zh: str, en: str):
        super().__init__(en)
        self.zh = zh
        self.en = en


@dataclass
class Boundary:
    adcode: str
    name: str
    geometry: BaseGeometry  # WGS-84
    crs_source: str
    parts: int
    holes: int


def read_boundary(
    path: str | Path, crs: str = "gcj02", adcode: str | None = None, name: str | None = None
) -> Boundary:
    """The checked WGS-84 boundary in ``path`` (see module doc)."""
    if crs not in ("gcj02", "wgs84"):
        raise BoundaryError(
            f"未知坐标系“{crs}”，应为 gcj02 或 wgs84。",
            f"Unknown coordinate system '{crs}': use gcj02 or wgs84.",
        )
    path = Path(path)
    if name is not None:
        _check_name(name)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO, /dev/zero
            raise BoundaryError(f"{path} 不是普通文件。", f"{path} is not a regular file.")
        if info.st_size > MAX_FILE_BYTES:
            raise BoundaryError("边界文件过大。", "The boundary file is too large.")
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise BoundaryError("边界文件过大。", "The boundary file is too large.")
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except BoundaryError:
        raise
    except FileNotFoundError:
        raise BoundaryError(f"找不到文件 {path}。", f"No such file: {path}.") from None
    except OSError as exc:
        raise BoundaryError(
            f"无法读取 {path}：{exc.strerror}", f"Cannot read {path}: {exc.strerror}"
        ) from None
    except RecursionError:
        raise BoundaryError(
            f"{path.name} 嵌套过深，不是边界文件。", f"{path.name} is nested too deeply."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BoundaryError(
            f"{path.name} 不是有效的 GeoJSON：{exc}", f"{path.name} is not valid GeoJSON: {exc}"
        ) from None
    except ValueError as exc:  # NaN or Infinity (_no_constant)
        raise BoundaryError(
            f"{path.name} 含有无效数值：{exc}", f"{path.name} holds an invalid number: {exc}"
        ) from None
    try:
        return _boundary(data, crs, adcode, name)
    except (GEOSException, RecursionError) as exc:
        raise BoundaryError(
            f"边界几何无效：{exc}", f"The boundary's geometry is invalid: {exc}"
        ) from None


def _no_constant(token: str):
    raise ValueError(f"{token} is not a coordinate")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or len(name.strip()) == 0 or len(name) > MAX_NAME:
        raise BoundaryError(
            f"区县名称须为 1–{MAX_NAME} 个字符。",
            f"The district name must be 1–{MAX_NAME} characters.",
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):  # C0/C1, bidi, zero-width
        raise BoundaryError("区县名称含有控制字符。", "The district name holds control characters.")


def _check_rings(geometry: dict) -> None:
    """GeoJSON's rule (RFC 7946): every ring closed, with at least four positions.

    shapely would quietly close an open ring, or fail deep inside GEOS on one
    too short; the file is wrong either way, so say so.
    """
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if geometry.get("type") == "Polygon" else coordinates
    if not isinstance(polygons, list):
        raise BoundaryError("面要素缺少坐标。", "A polygon has no coordinates.")
    for polygon in polygons:  # an empty one is "empty", said further on
        if not isinstance(polygon, list):
            raise BoundaryError("面要素缺少坐标。", "A polygon has no coordinates.")
        for ring in polygon:
            if not isinstance(ring, list) or len(ring) < 4 or ring[0] != ring[-1]:
                raise BoundaryError(
                    "面的边界环未闭合（首尾坐标须相同，至少 4 个点）。",
                    "A polygon's ring is not closed (first and last positions must be "
                    "the same, at least 4 of them).",
                )


def _boundary(data, crs: str, adcode: str | None, name: str | None) -> Boundary:
    geometries, props = _polygons(data)
    for geometry in geometries:
        _check_rings(geometry)
    if not geometries:
        raise BoundaryError(
            "文件中没有面（Polygon/MultiPolygon）要素。",
            "The file holds no Polygon or MultiPolygon feature.",
        )
    try:
        parts = [shape(g) for g in geometries]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, GEOSException) as exc:
        raise BoundaryError(
            f"面要素的坐标格式不正确：{exc}", f"A polygon's coordinates are malformed: {exc}"
        ) from None
    if any(p.is_empty for p in parts) or not parts:
        raise BoundaryError("边界为空。", "The boundary is empty.")
    for p in parts:
        coords = shapely.get_coordinates(p)
        if not np.all(np.isfinite(coords)):
            raise BoundaryError("边界含有无效坐标。", "The boundary has invalid coordinates.")
        if np.any(np.abs(coords[:, 0]) > 180) or np.any(np.abs(coords[:, 1]) > 90):
            raise BoundaryError(
                "边界坐标超出经纬度范围。",
                "The boundary has coordinates outside longitude/latitude range.",
            )
        if not p.is_valid:
            why = explain_validity(p)
            raise BoundaryError(
                f"边界无效（例如自相交）：{why}",
                f"The boundary is not a valid polygon (e.g. self-intersecting): {why}",
            )
    if crs == "gcj02":
        coords = np.vstack([shapely.get_coordinates(p) for p in parts])
        outside = out_of_china(coords[:, 0], coords[:, 1])
        if np.any(outside):
            raise BoundaryError(
                "GCJ-02 坐标只适用于中国境内，此文件有境外坐标；若为 WGS-84 请用 --crs wgs84。",
                "GCJ-02 applies inside China only and this file has points "
                "outside it; if it is WGS-84, use --crs wgs84.",
            )
    merged = shapely.union_all(parts)
    if crs == "gcj02":
        merged = shape(geometry_gcj02_to_wgs84(mapping(merged)))
        merged = shapely.make_valid(merged) if not merged.is_valid else merged
    if merged.geom_type not in ("Polygon", "MultiPolygon") or merged.area <= 0:
        raise BoundaryError("边界面积为零。", "The boundary has no area.")
    code = adcode or str(props.get("adcode") or "")
    if not re.fullmatch(r"\d{6}", code):
        raise BoundaryError(
            "缺少 6 位行政区划代码（adcode），请在文件属性中提供或使用 --adcode。",
            "No 6-digit adcode: give it in the file's properties or with --adcode.",
        )
    polys = list(getattr(merged, "geoms", [merged]))
    name = name or str(props.get("name") or code)
    _check_name(name)
    return Boundary(
        adcode=code,
        name=name,
        geometry=merged,
        crs_source=crs,
        parts=len(polys),
        holes=sum(len(p.interiors) for p in polys),
    )


def _polygons(data) -> tuple[list[dict], dict]:
    """Polygon geometries and the first feature's properties, from any GeoJSON shape."""
    if not isinstance(data, dict) or "type" not in data:
        raise BoundaryError("不是 GeoJSON 对象。", "Not a GeoJSON object.")
    kind = data["type"]
    if kind == "FeatureCollection":
        features = data.get("features") or []
        if not isinstance(features, list):
            raise BoundaryError(
                "FeatureCollection 的 features 应为数组。",
                "A FeatureCollection's features must be an array.",
            )
    elif kind == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    geoms, props = [], {}
    for feature in features:
        if not isinstance(feature, dict):
            continue
        geometry = feature.get("geometry") or {}
        if isinstance(geometry, dict) and geometry.get("type") in ("Polygon", "MultiPolygon"):
            geoms.append(geometry)
            if not props and isinstance(feature.get("properties"), dict):
                props = feature["properties"]
    return geoms, props
