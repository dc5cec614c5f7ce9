"""Benchmark: district import (Dongcheng, and a 6,000 km² county) and point lookups.

    python bench/territory.py [--skip-county]

Imports the demo district into a fresh database and times it; makes a county
of about 6,000 km² by scaling Luqiao's real boundary (islands included) and
imports it in a child process whose peak memory is read from the kernel;
then times lookups of random points with the lattice locator, beside the
baseline of testing each point against every grid polygon's bounding box
and outline (what a locator without the lattice does).

Prints figures and ends with one JSON line.  Runs on the embedded server
(a throw-away data directory) unless GRID_DATABASE_URL names one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchdb import fresh_database, server_urls

_URL_FOR = None


def fresh_db(name: str) -> str:
    """A fresh migrated database on the benchmark's server (started once)."""
    global _URL_FOR
    if _URL_FOR is None:
        _URL_FOR, fresh_db.server = server_urls()
    return fresh_database(_URL_FOR, name, reference=False)


def county_file(path: Path, km2: float = 6000.0) -> None:
    """Luqiao's boundary scaled about its centre to ``km2`` (GCJ-02 kept)."""
    from shapely import affinity
    from shapely.geometry import mapping, shape

    src = json.loads(
        resources.files("resources").joinpath("districts/331004.geojson").read_text("utf-8")
    )
    feature = src["features"][0]
    geom = shape(feature["geometry"])
    factor = (km2 / 359.0) ** 0.5
    scaled = affinity.scale(geom, factor, factor, origin="centroid")
    out = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"adcode": "339999", "name": "放大测试县"},
                "geometry": mapping(scaled),
            }
        ],
    }
    path.write_text(json.dumps(out), encoding="utf-8")


def child_import(url: str, path: str) -> None:
    """Run in a child process so its peak memory is the import's alone."""
    from db.engine import make_engine
    from db.territory import import_district

    engine = make_engine(url)
    summary = import_district(engine, path)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**summary.as_json(), "peak_mb": round(peak_mb, 1)}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_import(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-county", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import shapely
    from shapely.geometry import shape
    from sqlalchemy import text

    from db.engine import make_engine
    from db.locate import territory
    from db.territory import import_district

    url = fresh_db("bench_territory")
    engine = make_engine(url)
    dongcheng = resources.files("resources").joinpath("districts/110101.geojson")
    t0 = time.monotonic()
    summary = import_district(engine, dongcheng)
    dongcheng_s = time.monotonic() - t0
    print(
        f"Dongcheng: {summary.cells} cells, {summary.streets}/{summary.communities}/"
        f"{summary.grids} units, imported in {dongcheng_s:.2f} s (aim < 10 s)"
    )

    # Lookups: lattice locator against testing each grid's box and outline.
    with engine.connect() as conn:
        index = territory(conn)
        grids = [
            (r.id, (r.min_lon, r.min_lat, r.max_lon, r.max_lat), shape(r.geometry))
            for r in conn.execute(
                text("SELECT id, min_lon, min_lat, max_lon, max_lat, geometry FROM grid")
            )
        ]
    d = index.districts[0]
    x0, y0, x1, y1 = d.bounds
    rng = np.random.default_rng(3)
    n = 200_000
    lons, lats = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    t0 = time.monotonic()
    ids = index.grid_ids(lons, lats)
    bulk_rate = n / (time.monotonic() - t0)
    t0 = time.monotonic()
    single = 20_000
    for i in range(single):
        index.grid_ids(lons[i : i + 1], lats[i : i + 1])
    single_rate = single / (time.monotonic() - t0)
    for _, _, g in grids:
        shapely.prepare(g)
    base_n = 2_000
    t0 = time.monotonic()
    for i in range(base_n):
        lon, lat = lons[i], lats[i]
        found = None
        for gid, (a, b, c, e), g in grids:
            if a <= lon <= c and b <= lat <= e and shapely.intersects_xy(g, lon, lat):
                found = gid
                break
        assert found == ids[i]
    base_rate = base_n / (time.monotonic() - t0)
    print(
        f"lookups: {bulk_rate:,.0f}/s in bulk, {single_rate:,.0f}/s one at a time "
        f"(aim ≥ 200,000/s); baseline (box + outline of each grid): {base_rate:,.0f}/s"
    )

    county = {}
    if not args.skip_county:
        path = Path(tempfile.mkdtemp()) / "county.geojson"
        county_file(path)
        county_url = fresh_db("bench_county")
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, __file__, "--child", county_url, str(path)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.monotonic() - t0
        if out.returncode != 0:
            print(out.stderr[-2000:])
            raise SystemExit("county import failed")
        county = json.loads(out.stdout.strip().splitlines()[-1])
        c = county["counts"]
        print(
            f"county {county['area_km2']:.0f} km²: {c['unit_cells']:,} cells, "
            f"{c['streets']}/{c['communities']}/{c['grids']} units in {county['seconds']:.0f} s "
            f"(process {wall:.0f} s), peak {county['peak_mb']:.0f} MB "
            f"(aim < 300 s and < 2,048 MB); balance {county['balance']}"
        )
    figures = {
        "dongcheng_import_s": round(dongcheng_s, 2),
        "dongcheng_import_aim_s": 10,
        "lookups_per_s_bulk": round(bulk_rate),
        "lookups_per_s_single": round(single_rate),
        "lookups_aim_per_s": 200_000,
        "lookups_per_s_baseline_polygons": round(base_rate),
        "county_km2": county.get("area_km2"),
        "county_cells": county.get("counts", {}).get("unit_cells"),
        "county_import_s": county.get("seconds"),
        "county_import_aim_s": 300,
        "county_peak_mb": county.get("peak_mb"),
        "county_peak_aim_mb": 2048,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
