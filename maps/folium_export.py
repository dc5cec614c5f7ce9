"""A shareable situation map: one self-contained HTML file made with folium.

The hall sends a street leader or a department "what is going on here" as a
file that opens in any browser: boundaries, open cases coloured by status with
their details in Chinese, the workers' last fixes and the cameras.  Input is
plain data (what ``db.situation.situation`` returns, WGS-84), output is HTML;
nothing here reads the database or draws with Qt.

Datum.  A Chinese basemap is GCJ-02 (docs/DOMAIN.md "Coordinates"): when the
tile layer is one, every position and outline is shifted to GCJ-02 before it
is drawn, so that a case sits on the street it was reported on; without tiles,
or on a WGS-84 basemap, everything stays WGS-84.

Offline.  folium's page links Leaflet, jQuery, Bootstrap, Font Awesome and
Leaflet.awesome-markers from public CDNs, and markercluster from another.
This page uses none of jQuery, Bootstrap, Font Awesome or awesome-markers (the
markers are ``L.divIcon``s with inline SVG, the popups are Leaflet's own,
bound from data, and not folium's jQuery-parsed ``Popup``), so those links are
dropped in every mode.  Leaflet and Leaflet.markercluster come either from an
address (``leaflet_url``; folium's CDN links by default) or, offline, from the
``xstatic-leaflet`` and ``xstatic-leaflet-markercluster`` packages, inlined with
their images as data URIs.  Tiles offline come from a local file (or a tile
server the console can reach) and are embedded as data URIs too.  An offline
page is checked to hold no ``http://`` or ``https://`` at all before it is
returned: the XML namespace and link strings inside Leaflet's code are written
with escaped slashes (the same string to JavaScript), and slashes in the
hall's own text are HTML or JSON escapes.

The data travel as ``<script type="application/json">`` blocks (one per
layer) read by a few lines of JavaScript, which keeps a district's thousand
markers to one line of data each instead of a block of generated code.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import folium
from branca.element import Element
from folium.map import Layer
from folium.template import Template

from maps.coords import geometry_wgs84_to_gcj02, wgs84_to_gcj02
from maps.tiles import TileError, TileSource, image_format
from maps.tiles.xyz import lonlat_to_mercator, tile_of

# --- look --------------------------------------------------------------------------------

#: case status → marker fill (the open statuses of the lifecycle, closed for a subject case)
STATUS_COLOURS = {
    "reported": "#8e24aa",
    "accepted": "#3949ab",
    "filed": "#1e88e5",
    "dispatched": "#00897b",
    "in_progress": "#f9a825",
    "awaiting_verification": "#6d4c41",
    "closed": "#43a047",
    "archived": "#43a047",
}
OTHER_COLOUR = "#757575"
SEVERITY_RING = {"normal": "#ffffff", "urgent": "#ef6c00", "emergency": "#d50000"}
OVERDUE_RING = "#d50000"
WORKER_COLOURS = {
    "on_duty": "#2e7d32",
    "patrolling": "#1565c0",
    "handling": "#ef6c00",
    "off_duty": "#9e9e9e",
    "offline": "#bdbdbd",
}
CAMERA_COLOUR = "#37474f"
BOUNDARY_STYLE = {
    "district": {"color": "#6a4a35", "weight": 3.5, "fill": False, "opacity": 0.9},
    "street": {"color": "#8f7c63", "weight": 2.2, "fill": False, "opacity": 0.9},
    "community": {"color": "#a1887f", "weight": 1.2, "fill": False, "dashArray": "4 3",
                  "opacity": 0.9},
    "grid": {"color": "#5c6bc0", "weight": 1.0, "fill": False, "opacity": 0.7},
}
FOCUS_STYLE = {"color": "#d50000", "weight": 3.0, "fill": True, "fillColor": "#ff8a80",
               "fillOpacity": 0.12}
LEVEL_NAMES = {
    "district": ("区县", "district"),
    "street": ("街道", "streets"),
    "community": ("社区", "communities"),
    "grid": ("网格", "grids"),
}
#: embedded tiles at most (a few MB of base64 at ~10 KB a tile)
MAX_EMBEDDED_TILES = 400

_TEXT = {
    "cases": ("案件", "Cases"),
    "workers": ("网格员", "Workers"),
    "cameras": ("摄像头", "Cameras"),
    "basemap": ("底图", "Basemap"),
    "number": ("编号", "Number"),
    "category": ("类别", "Category"),
    "status": ("状态", "Status"),
    "severity": ("紧急程度", "Severity"),
    "source": ("来源", "Source"),
    "address": ("地址", "Address"),
    "description": ("描述", "Description"),
    "reported_at": ("上报时间", "Reported"),
    "due": ("本环节时限", "Stage due"),
    "overdue": ("已超期", "OVERDUE"),
    "department": ("处置单位", "Department"),
    "grid": ("网格", "Grid"),
    "worker_status": ("状态", "Status"),
    "phone": ("电话", "Phone"),
    "last_fix": ("最后定位", "Last fix"),
    "stale": ("定位已过时", "position is stale"),
    "distance": ("距离", "Distance"),
    "heading": ("朝向", "Heading"),
    "generated": ("生成于", "Generated"),
    "legend_cases": ("案件状态", "Case status"),
    "legend_workers": ("网格员", "Workers"),
    "component": ("部件（方形）", "component (square)"),
    "event": ("事件（圆形）", "event (circle)"),
    "urgent_ring": ("橙圈紧急 · 红圈特急/超期", "orange ring urgent · red ring emergency/overdue"),
    "camera": ("摄像头", "camera"),
    "title_district": ("辖区态势图", "situation map"),
    "title_street": ("街道态势图", "street situation map"),
    "title_grid": ("网格态势图", "grid situation map"),
    "title_case": ("案件周边态势图", "case surroundings"),
    "title_view": ("当前视图态势图", "current view"),
    "degrees": ("°", "°"),
}


def _t(key: str, lang: str) -> str:
    zh, en = _TEXT[key]
    return zh if lang == "zh" else en


def _label(pair: dict | None, lang: str) -> str:
    if not pair:
        return ""
    return pair.get(lang) or pair.get("zh") or ""


def _esc(value) -> str:
    """HTML-escaped text with its slashes as entities (so "http://" in a description
    is shown as typed and is no address in the file)."""
    return html.escape(str(value), quote=True).replace("/", "&#47;")


# --- Leaflet's files -----------------------------------------------------------------------

CDN_JS = [
    ("leaflet", "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"),
    (
        "markerclusterjs",
        "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/"
        "leaflet.markercluster.js",
    ),
]
CDN_CSS = [
    ("leaflet_css", "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"),
    (
        "markerclustercss",
        "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/MarkerCluster.css",
    ),
    (
        "markerclusterdefaultcss",
        "https://cdnjs.cloudflare.com/ajax/libs/leaflet.markercluster/1.1.0/"
        "MarkerCluster.Default.css",
    ),
]
#: the file names under a ``leaflet_url`` (the xstatic packages' data folders, side by side)
ASSET_FILES_JS = ["leaflet.js", "leaflet.markercluster.js"]
ASSET_FILES_CSS = ["leaflet.css", "MarkerCluster.css", "MarkerCluster.Default.css"]


def _xstatic_dir(module: str) -> Path:
    try:
        return Path(import_module(f"xstatic.pkg.{module}").BASE_DIR)
    except ImportError:
        raise TileError(
            f"缺少 xstatic-{module.replace('_', '-')} 包，无法生成离线地图。",
            f"The xstatic-{module.replace('_', '-')} package is missing: no offline map.",
        ) from None


def asset_paths() -> dict[str, Path]:
    """Where the pip packages keep Leaflet's and markercluster's files."""
    leaflet = _xstatic_dir("leaflet")
    cluster = _xstatic_dir("leaflet_markercluster")
    return {
        "leaflet.js": leaflet / "leaflet.js",
        "leaflet.css": leaflet / "leaflet.css",
        "leaflet.markercluster.js": cluster / "leaflet.markercluster.js",
        "MarkerCluster.css": cluster / "MarkerCluster.css",
        "MarkerCluster.Default.css": cluster / "MarkerCluster.Default.css",
    }


def js_without_addresses(js: str) -> str:
    """The same program with every ``://`` written ``:\\/\\/``.

    Inside a JavaScript string, template or regular expression ``\\/`` is ``/``,
    and in a comment it is nothing at all, so Leaflet's SVG namespace and its
    attribution link mean what they did, and the file names no address.
    ``</script`` is broken up so an inlined program cannot end its tag early.
    """
    return js.replace("://", r":\/\/").replace("</script", r"<\/script")


def css_inlined(css: str, base: Path) -> str:
    """CSS with comments dropped and ``url(images/…)`` replaced by data URIs."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)

    def data_uri(match: re.Match) -> str:
        ref = match.group(1).strip("'\"")
        if ref.startswith(("data:", "#")):
            return match.group(0)
        path = (base / ref).resolve()
        if not path.is_file():
            return "url()"
        mime = "image/png" if path.suffix == ".png" else "image/svg+xml"
        return f"url(data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()})"

    return re.sub(r"url\(([^)]*)\)", data_uri, css).replace("</style", r"<\/style")


# --- folium elements -----------------------------------------------------------------------


class _DataLayer(Layer):
    """A Leaflet layer built in the page from a JSON data block (see the module doc)."""

    _template = Template("")

    def __init__(self, name: str, data_id: str, js: str, show: bool = True):
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "SituationLayer"
        self.data_id = data_id
        self._template = Template(
            "{% macro script(this, kwargs) %}\n"
            "var {{ this.get_name() }} = (function (data, map) {\n"
            + js
            + "\n})(JSON.parse(document.getElementById({{ this.data_id|tojson }}).textContent),"
            " {{ this._parent.get_name() }});\n"
            "{% endmacro %}"
        )


def _json_block(data_id: str, value) -> Element:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("</", "<\\/").replace("://", ":\\/\\/")
    return Element(f'<script type="application/json" id="{data_id}">{text}</script>')


_BOUNDARY_JS = """
var layer = L.geoJSON(data, {
  style: function (f) { return f.properties.style; },
  onEachFeature: function (f, l) { l.bindTooltip(f.properties.tip, {sticky: true}); }
});
return layer;
"""

_MARKER_JS = """
function icon(p) {
  return L.divIcon({html: p.icon, className: 'grid-mark', iconSize: [p.size, p.size],
                    iconAnchor: [p.size / 2, p.size / 2], popupAnchor: [0, -p.size / 2]});
}
function marker(p) {
  var m = L.marker([p.lat, p.lon], {icon: icon(p), title: p.title, riseOnHover: true,
                                     zIndexOffset: p.front ? 1000 : 0});
  m.bindPopup(p.popup, {maxWidth: 360});
  return m;
}
var clustered = CLUSTER && typeof L.markerClusterGroup === 'function'
  ? L.markerClusterGroup({showCoverageOnHover: false, maxClusterRadius: 45,
                          spiderfyOnMaxZoom: true, disableClusteringAtZoom: 18})
  : L.layerGroup();
var front = L.layerGroup();
data.forEach(function (p) { (p.front ? front : clustered).addLayer(marker(p)); });
return L.featureGroup([clustered, front]);
"""

_TILES_JS = """
var blank = 'data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==';
var Layer = L.TileLayer.extend({
  getTileUrl: function (c) {
    var k = c.z + '/' + c.x + '/' + c.y;
    var t = data.tiles[k];
    return t ? 'data:' + data.mime[t[0]] + ';base64,' + t.slice(1) : blank;
  }
});
return new Layer('', {minZoom: 0, maxZoom: 19, minNativeZoom: data.min_zoom,
                      maxNativeZoom: data.max_zoom, attribution: data.attribution,
                      tileSize: 256});
"""


# --- markers --------------------------------------------------------------------------------


def _case_icon(case: dict) -> tuple[str, int]:
    fill = STATUS_COLOURS.get(case["status"], OTHER_COLOUR)
    ring = OVERDUE_RING if case.get("overdue") else SEVERITY_RING.get(case["severity"], "#fff")
    size = 16 if case["severity"] == "normal" and not case.get("overdue") else 20
    if case.get("focus"):
        size = 26
    stroke = 2 if ring == "#ffffff" else 3
    half = size / 2
    if case.get("kind") == "component":
        shape = (f'<rect x="{stroke}" y="{stroke}" width="{size - 2 * stroke}" '
                 f'height="{size - 2 * stroke}" rx="2"')
    else:
        shape = f'<circle cx="{half}" cy="{half}" r="{half - stroke}"'
    mark = (f'{shape} fill="{fill}" stroke="{ring}" stroke-width="{stroke}"/>')
    card = ""
    if case.get("escalation"):
        colour = "#fdd835" if case["escalation"] == 1 else "#c62828"
        card = (f'<rect x="{size - 7}" y="0" width="7" height="9" fill="{colour}" '
                'stroke="#333" stroke-width="0.8"/>')
    svg = f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}">{mark}{card}</svg>'
    return svg, size


def _rows(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:8px;white-space:nowrap">{_esc(k)}</th>'
        f"<td>{v}</td></tr>"
        for k, v in rows
        if v
    )
    return f'<table style="font-size:12px;border-collapse:collapse">{body}</table>'


def _time(value: str | None) -> str:
    return _esc(value.replace("T", " ")[:16]) if value else ""


def _case_popup(case: dict, lang: str) -> str:
    status = _esc(_label(case.get("status_label"), lang))
    if case.get("overdue"):
        status += f' <b style="color:{OVERDUE_RING}">{_esc(_t("overdue", lang))}</b>'
    if case.get("escalation"):
        status += f" <b>{_esc(_label(case.get('escalation_label'), lang))}</b>"
    rows = [
        (_t("category", lang), _esc(_label(case.get("category"), lang))),
        (_t("status", lang), status),
        (_t("severity", lang), _esc(_label(case.get("severity_label"), lang))),
        (_t("source", lang), _esc(_label(case.get("source_label"), lang))),
        (_t("address", lang), _esc(case.get("address", ""))),
        (_t("description", lang), _esc(case.get("description", ""))),
        (_t("reported_at", lang), _time(case.get("reported_at"))),
        (_t("due", lang), _time(case.get("stage_due_at"))),
        (_t("department", lang), _esc(_label(case.get("department"), lang))),
        (_t("grid", lang), _esc(" ".join(
            x for x in (case.get("grid_code"), case.get("grid_name")) if x))),
    ]
    return f'<b style="font-size:13px">{_esc(case["number"])}</b>{_rows(rows)}'


def _worker_icon(worker: dict) -> tuple[str, int]:
    colour = WORKER_COLOURS.get(worker["status"], OTHER_COLOUR)
    size = 14
    fill = "#ffffff" if worker.get("stale") else colour
    arrow = ""
    if worker.get("course") is not None and worker["status"] != "offline":
        arrow = (f'<path d="M7 0 L10 5 L4 5 Z" fill="{colour}" '
                 f'transform="rotate({worker["course"]:.0f} 7 7)"/>')
    svg = (f'<svg width="{size}" height="{size}" viewBox="0 0 14 14">{arrow}'
           f'<circle cx="7" cy="7" r="4.5" fill="{fill}" stroke="{colour}" '
           'stroke-width="2"/></svg>')
    return svg, size


def _worker_popup(worker: dict, lang: str) -> str:
    fix = _time(worker.get("ts"))
    if worker.get("stale"):
        fix += f" ({_esc(_t('stale', lang))})"
    rows = [
        (_t("worker_status", lang), _esc(_label(worker.get("status_label"), lang))),
        (_t("grid", lang), _esc(" ".join(
            x for x in (worker.get("grid_code"), worker.get("grid_name")) if x))),
        (_t("phone", lang), _esc(worker.get("phone", ""))),
        (_t("last_fix", lang), fix),
        (_t("distance", lang),
         f"{worker['distance_m']} m" if worker.get("distance_m") is not None else ""),
    ]
    return f'<b>{_esc(worker["name"])}</b> {_esc(worker["code"])}{_rows(rows)}'


def _camera_icon(camera: dict) -> tuple[str, int]:
    size = 18
    wedge = ""
    if camera.get("heading") is not None:
        wedge = (f'<path d="M9 9 L4 0 L14 0 Z" fill="{CAMERA_COLOUR}" fill-opacity="0.35" '
                 f'transform="rotate({camera["heading"]:.0f} 9 9)"/>')
    svg = (f'<svg width="{size}" height="{size}" viewBox="0 0 18 18">{wedge}'
           f'<rect x="5" y="6" width="8" height="6" rx="1" fill="{CAMERA_COLOUR}" '
           'stroke="#fff" stroke-width="1"/></svg>')
    return svg, size


def _camera_popup(camera: dict, lang: str) -> str:
    rows = [
        (_t("grid", lang), _esc(camera.get("grid_code") or "")),
        (_t("heading", lang),
         f"{camera['heading']:.0f}°" if camera.get("heading") is not None else ""),
        (_t("distance", lang),
         f"{camera['distance_m']} m" if camera.get("distance_m") is not None else ""),
    ]
    return f'<b>{_esc(camera["name"])}</b> {_esc(camera["code"])}{_rows(rows)}'


# --- the map ----------------------------------------------------------------------------------


@dataclass
class SituationMap:
    """What :func:`situation_map` made: the page, the counts it holds, the notes for a person."""

    html: str
    datum: str
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    offline: bool = False

    def save(self, path: Path) -> None:
        Path(path).write_text(self.html, encoding="utf-8")


def _fit_zoom(bounds_m: tuple[float, float, float, float], width_px: int = 1100) -> int:
    span = max(bounds_m[2] - bounds_m[0], (bounds_m[3] - bounds_m[1]) * width_px / 700, 1.0)
    z = math.log2(2 * math.pi * 6378137.0 * width_px / (256 * span))
    return max(0, min(19, math.floor(z)))


def embedded_tiles(
    source: TileSource, bounds: tuple[float, float, float, float], budget: int = MAX_EMBEDDED_TILES
) -> dict:
    """Tiles of ``source`` covering ``bounds`` (degrees of the source's datum) as page data.

    The zooms go from the one that shows the whole box upward until ``budget``
    tiles are spent, within the source's own zoom range; a zoom that would not
    fit whole is left out (Leaflet scales the last one up).
    """
    west, south, east, north = bounds
    x0, y0 = lonlat_to_mercator(west, south)
    x1, y1 = lonlat_to_mercator(east, north)
    start = max(source.min_zoom, min(source.max_zoom, _fit_zoom((x0, y0, x1, y1)) - 1))
    tiles: dict[str, str] = {}
    mimes = ["image/png", "image/jpeg", "image/webp"]
    kinds = {"png": "0", "jpeg": "1", "webp": "2"}
    used: list[int] = []
    spent = 0
    for z in range(start, source.max_zoom + 1):
        tx0, ty0 = tile_of(x0, y1, z)
        tx1, ty1 = tile_of(x1, y0, z)
        n = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
        if spent + n > budget and used:
            break
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                data = source.fetch(z, tx, ty)
                if data is None:
                    continue
                kind = image_format(data) or "png"
                tiles[f"{z}/{tx}/{ty}"] = kinds[kind] + base64.b64encode(data).decode()
        spent += n
        used.append(z)
        if len(used) >= 5:
            break
    return {
        "tiles": tiles,
        "mime": mimes,
        "min_zoom": used[0] if used else start,
        "max_zoom": used[-1] if used else start,
        "attribution": _esc(source.attribution or source.name),
    }


def situation_map(
    situation: dict,
    *,
    basemap: TileSource | None = None,
    offline: bool = False,
    leaflet_url: str | None = None,
    lang: str = "zh",
    cluster: bool = True,
    title: str | None = None,
) -> SituationMap:
    """The page for ``situation`` (``db.situation.situation``'s dict).

    ``basemap``: an XYZ server is linked by its template (offline: its tiles for
    the area are fetched and embedded); a file source is embedded.  A basemap
    that cannot serve leaves the page without one and says so in ``notes``.
    ``leaflet_url``: where Leaflet's files are when not ``offline`` (see
    ``ASSET_FILES_JS``/``ASSET_FILES_CSS``); folium's CDN addresses by default.
    """
    notes: list[str] = []
    embed: dict | None = None
    datum = "wgs84"
    if basemap is not None:
        datum = basemap.datum
    bounds = situation.get("bounds")
    if bounds is None:
        raise TileError("没有可画的内容。", "Nothing to draw.")

    def pt(lon: float, lat: float) -> tuple[float, float]:
        return wgs84_to_gcj02(lon, lat) if datum == "gcj02" else (lon, lat)

    west, south = pt(bounds[0], bounds[1])
    east, north = pt(bounds[2], bounds[3])
    if basemap is not None and (offline or basemap.kind != "xyz"):
        try:
            # half the box again on every side: the page is rarely the box's shape
            dx, dy = (east - west) / 2, (north - south) / 2
            embed = embedded_tiles(basemap, (west - dx, south - dy, east + dx, north + dy))
            if not embed["tiles"]:
                notes.append(f"basemap {basemap.name}: no tiles for this area")
        except TileError as exc:
            notes.append(exc.message(lang))
            embed = None
        if embed is None or not embed["tiles"]:
            embed = None
            datum = "wgs84"  # no picture to match: draw as stored
            west, south = bounds[0], bounds[1]
            east, north = bounds[2], bounds[3]

    fmap = folium.Map(
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=13,
        tiles=None,
        control_scale=True,
    )
    # markercluster needs the map's own zoom range (without tiles nothing else gives one)
    fmap.options.update(min_zoom=3, max_zoom=19, zoom_snap=0.25)
    # drop folium's CDN links (jQuery, Bootstrap, Font Awesome, awesome-markers): unused here
    fmap.default_js = [] if offline else _assets(CDN_JS, ASSET_FILES_JS, leaflet_url)
    fmap.default_css = [] if offline else _assets(CDN_CSS, ASSET_FILES_CSS, leaflet_url)
    root = fmap.get_root()
    if offline:
        paths = asset_paths()
        for name in ASSET_FILES_CSS:
            css = css_inlined(paths[name].read_text("utf-8"), paths[name].parent)
            root.header.add_child(Element(f"<style>{css}</style>"), name=f"inline_{name}")
        for name in ASSET_FILES_JS:
            js = js_without_addresses(paths[name].read_text("utf-8"))
            root.header.add_child(Element(f"<script>{js}</script>"), name=f"inline_{name}")
    root.header.add_child(Element(
        "<style>.grid-mark{background:none;border:none}"
        ".leaflet-popup-content{margin:8px 10px;font-family:'Noto Sans CJK SC','Microsoft YaHei',"
        "sans-serif}.grid-box{position:fixed;z-index:1000;background:rgba(255,255,255,.92);"
        "border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3);padding:6px 9px;"
        "font:12px/1.45 'Noto Sans CJK SC','Microsoft YaHei',sans-serif}"
        ".grid-box i{display:inline-block;width:10px;height:10px;border-radius:50%;"
        "margin-right:5px;vertical-align:-1px}</style>"), name="grid_style")

    counts: dict[str, int] = {}
    if embed is not None:
        root.html.add_child(_json_block("grid-data-tiles", embed))
        layer = _DataLayer(_t("basemap", lang), "grid-data-tiles", _TILES_JS)
        layer.overlay = False
        layer.add_to(fmap)
        counts["tiles"] = len(embed["tiles"])
    elif basemap is not None and basemap.kind == "xyz" and not offline:
        template = basemap.template.replace("{-y}", "{y}") if "{-y}" in basemap.template \
            else basemap.template
        folium.TileLayer(
            tiles=template,
            attr=basemap.attribution or basemap.name,
            name=_t("basemap", lang),
            tms="{-y}" in basemap.template,
            min_zoom=0,
            max_zoom=19,
            max_native_zoom=basemap.max_zoom,
        ).add_to(fmap)

    # boundaries, one layer per level, largest first
    by_level: dict[str, list] = {}
    for b in situation.get("boundaries", []):
        by_level.setdefault(b["level"], []).append(b)
    for level in ("district", "street", "community", "grid"):
        items = by_level.get(level, [])
        if not items:
            continue
        features = []
        for b in items:
            geometry = geometry_wgs84_to_gcj02(b["geometry"]) if datum == "gcj02" \
                else b["geometry"]
            style = dict(BOUNDARY_STYLE[level], **(FOCUS_STYLE if b.get("focus") else {}))
            features.append({
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "level": level, "code": b["code"], "name": b["name"], "style": style,
                    "tip": f"{_esc(b['name'])} {_esc(b['code'])}",
                },
            })
        data_id = f"grid-data-{level}"
        root.html.add_child(_json_block(data_id, {"type": "FeatureCollection",
                                                  "features": features}))
        zh, en = LEVEL_NAMES[level]
        name = f"{zh if lang == 'zh' else en} ({len(features)})"
        _DataLayer(name, data_id, _BOUNDARY_JS).add_to(fmap)
        counts[level] = len(features)

    def points(kind: str, rows: list[dict], icon, popup, title_of, front) -> None:
        data = []
        for r in rows:
            lon, lat = pt(r["lon"], r["lat"])
            svg, size = icon(r)
            data.append({"lat": round(lat, 7), "lon": round(lon, 7), "icon": svg, "size": size,
                         "popup": popup(r, lang), "title": title_of(r), "front": front(r)})
        counts[kind] = len(data)
        if not data:
            return
        data_id = f"grid-data-{kind}"
        root.html.add_child(_json_block(data_id, data))
        js = _MARKER_JS.replace("CLUSTER", "true" if cluster and kind == "cases" else "false")
        _DataLayer(f"{_t(kind, lang)} ({len(data)})", data_id, js).add_to(fmap)

    points(
        "cases", situation.get("cases", []), _case_icon, _case_popup,
        lambda c: f"{c['number']} {_label(c.get('category'), lang)}",
        # an urgent, emergency, overdue or subject case is never hidden in a cluster
        lambda c: bool(c.get("focus") or c.get("overdue") or c["severity"] != "normal"),
    )
    points(
        "workers", situation.get("workers", []), _worker_icon, _worker_popup,
        lambda w: f"{w['name']} {_label(w.get('status_label'), lang)}", lambda w: False,
    )
    points(
        "cameras", situation.get("cameras", []), _camera_icon, _camera_popup,
        lambda c: c["name"], lambda c: False,
    )

    if situation.get("centre") and situation.get("radius_m"):
        clon, clat = pt(*situation["centre"])
        folium.Circle(
            location=[clat, clon], radius=float(situation["radius_m"]), color="#d50000",
            weight=1.5, dash_array="6 4", fill=False, interactive=False,
        ).add_to(fmap)
    scope = situation.get("scope", {})
    kind_title = _t("title_" + scope.get("kind", "district"), lang)
    heading = title or f"{scope.get('name') or ''} {kind_title}"
    root.html.add_child(Element(_title_box(heading, situation.get("generated_at"), lang, counts)))
    root.html.add_child(Element(_legend_box(situation, lang)))
    root.header.add_child(Element(f"<title>{_esc(heading.strip())}</title>"), name="grid_title")
    folium.LayerControl(collapsed=False).add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]], padding=(20, 20))

    page = root.render()
    if offline:
        found = re.search(r"https?://", page)
        if found:  # a guard: never hand out an "offline" page that reaches out
            snippet = page[max(0, found.start() - 60) : found.end() + 60]
            raise RuntimeError(f"offline page still references an address: {snippet!r}")
    return SituationMap(page, datum, counts, notes, offline)


def _assets(cdn: list[tuple[str, str]], files: list[str], base: str | None):
    if not base:
        return list(cdn)
    base = base.rstrip("/")
    return [(name, f"{base}/{file}") for (name, _url), file in zip(cdn, files, strict=True)]


def _title_box(heading: str, generated: str | None, lang: str, counts: dict) -> str:
    parts = []
    for key in ("cases", "workers", "cameras"):
        if counts.get(key):
            parts.append(f"{_t(key, lang)} {counts[key]}")
    when = f"{_t('generated', lang)} {_time(generated)}" if generated else ""
    return (
        f'<div class="grid-box" style="top:10px;left:54px;max-width:60%">'
        f'<b style="font-size:14px">{_esc(heading.strip())}</b><br>'
        f"{_esc(' · '.join(parts))}<br><span style=\"color:#666\">{when}</span></div>"
    )


def _legend_box(situation: dict, lang: str) -> str:
    lines = [f"<b>{_esc(_t('legend_cases', lang))}</b>"]
    for status, pair in situation.get("status_labels", {}).items():
        colour = STATUS_COLOURS.get(status, OTHER_COLOUR)
        lines.append(f'<i style="background:{colour}"></i>{_esc(_label(pair, lang))}')
    lines.append(f"<span style=\"color:#555\">{_esc(_t('component', lang))} · "
                 f"{_esc(_t('event', lang))}</span>")
    lines.append(f"<span style=\"color:#555\">{_esc(_t('urgent_ring', lang))}</span>")
    lines.append(f"<b>{_esc(_t('legend_workers', lang))}</b>")
    for status, pair in situation.get("worker_status_labels", {}).items():
        colour = WORKER_COLOURS.get(status, OTHER_COLOUR)
        lines.append(f'<i style="background:{colour}"></i>{_esc(_label(pair, lang))}')
    lines.append(f'<i style="background:{CAMERA_COLOUR};border-radius:1px"></i>'
                 f"{_esc(_t('camera', lang))}")
    return (f'<div class="grid-box" style="bottom:24px;right:10px">{"<br>".join(lines)}'
            "</div>")
