"""Binary COPY encoding of ``positions`` with numpy, a chunk at a time: the bulk fast path.

Encoding report by report (``pgcopy.position_encoder``) costs Python about
20 µs a row, three times what PostgreSQL needs to store it.  For a batch of
ordinary reports — floats everywhere, no attributes — every row of a given
"shape" (which optional columns are NULL) has the same byte layout, so the
rows are laid out as numpy structured records, a few arrays at a time, and
handed to COPY as one buffer per shape.  Chunks let PostgreSQL store one
while Python lays out the next.

Attributes (JSON, checked and encoded by the caller) vary in length, so
rows are grouped by shape and attribute length.

``prepare`` returns None for any batch it is not sure of (a value that is
not a float, a value out of range); the caller then
takes the per-report path, which also produces the precise refusal message.
Nothing here decides what is valid beyond that: the per-report checks stay
the single authority, this only recognises the batches that plainly pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from db.pgcopy import PG_EPOCH

_OPTIONAL = ("speed_kmh", "course", "altitude", "accuracy", "battery")


@dataclass
class Prepared:
    """A batch that passed the plain checks, as arrays (one entry per report)."""

    lon: np.ndarray
    lat: np.ndarray
    optional: list[np.ndarray]  # float64 with NaN where the report had None
    present: list[np.ndarray]  # bool per optional column
    attrs: list[bytes]  # the jsonb text of each report's attributes

    def subset(self, sel: np.ndarray) -> Prepared:
        """The same for the reports at positions ``sel``."""
        return Prepared(self.lon[sel], self.lat[sel], [a[sel] for a in self.optional],
                        [m[sel] for m in self.present], [self.attrs[i] for i in sel])


def prepare(reports: list, magnitude: float, attributes) -> Prepared | None:
    """Arrays of the reports' values, or None if any needs the per-report path.

    ``attributes(dict) -> bytes`` is the caller's checked JSON encoder; it may
    raise, which also sends the reports down the per-report path.
    """
    try:
        attrs = _encode_attributes(reports, attributes)
        lon_l = [r.lon for r in reports]
        lat_l = [r.lat for r in reports]
        opt_rows = [(r.speed_kmh, r.course, r.altitude, r.accuracy, r.battery) for r in reports]
        if set(map(type, lon_l)) | set(map(type, lat_l)) != {float}:
            return None
        if not set(map(type, chain.from_iterable(opt_rows))) <= {float, type(None)}:
            return None
    except Exception:  # anything odd: the per-report path says precisely what
        return None
    lon = np.asarray(lon_l, dtype=np.float64)
    lat = np.asarray(lat_l, dtype=np.float64)
    if not ((lat >= -90.0) & (lat <= 90.0) & (lon >= -180.0) & (lon <= 180.0)).all():
        return None  # NaN fails every comparison too
    table = np.array(opt_rows, dtype=np.float64)  # None becomes NaN
    blank = np.isnan(table)
    if blank.any():
        # A NaN the client sent is not a missing value: leave those to the slow path.
        for i, k in zip(*np.nonzero(blank), strict=True):
            if opt_rows[i][k] is not None:
                return None
    optional, present = [], []
    for k, name in enumerate(_OPTIONAL):
        arr, mask = table[:, k], ~blank[:, k]
        lo, hi = (0.0, 100.0) if name == "battery" else (-magnitude, magnitude)
        if not (((arr >= lo) & (arr <= hi)) | ~mask).all():
            return None
        optional.append(np.ascontiguousarray(arr))
        present.append(mask)
    return Prepared(lon, lat, optional, present, attrs)


def timestamps(reports: list) -> np.ndarray | None:
    """Exact microseconds since 2000-01-01 UTC of each fix, or None for an odd time."""
    epoch = PG_EPOCH
    try:
        deltas = [r.ts - epoch for r in reports]  # TypeError for a naive or odd time
        return np.array(
            [(d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds for d in deltas],
            dtype=np.int64)
    except Exception:
        return None


def _encode_attributes(reports: list, attributes) -> list[bytes]:
    """The checked JSON of each report's attributes, encoded once per distinct dict.

    Terminals send the same few keys with few distinct values, so most
    dicts repeat; a dict of plain scalars is looked up by its items.  Zero
    floats are not cached (0.0 == -0.0 would share a key but not a text).
    """
    memo: dict[tuple, bytes] = {}
    out = []
    for r in reports:
        a = r.attributes
        if not a:
            out.append(attributes(a))
            continue
        try:
            key = tuple(a.items())
            if any(type(v) is float and v == 0.0 for _, v in key):
                raise TypeError
            data = memo.get(key)
        except TypeError:  # unhashable or unsafe to share: encode this one
            out.append(attributes(a))
            continue
        if data is None:
            data = memo[key] = attributes(a)
        out.append(data)
    return out


def _dtype(shape: int, grid: bool, attr_len: int) -> np.dtype:
    """The record of one row whose optional columns are present per the bits of ``shape``."""
    fields = [("n", ">i2"), ("l0", ">i4"), ("dev", ">i4"), ("l1", ">i4"), ("ts", ">i8"),
              ("l2", ">i4"), ("lon", ">f8"), ("l3", ">i4"), ("lat", ">f8")]
    for k in range(len(_OPTIONAL)):
        fields += [(f"o{k}l", ">i4"), (f"o{k}", ">f4")] if shape >> k & 1 else [(f"o{k}l", ">i4")]
    fields += [("jl", ">i4"), ("jv", "u1"), ("jb", f"S{attr_len}"), ("rl", ">i4"),
               ("rv", ">i8"), ("gl", ">i4")]
    if grid:
        fields.append(("g", ">i4"))
    return np.dtype(fields)


def encode(prep: Prepared, us: np.ndarray, device_ids: np.ndarray, grid_ids: np.ndarray,
           received_us: int) -> bytes:
    """Binary COPY rows (no signature, no trailer) for the prepared reports.

    ``us``, ``device_ids`` and ``grid_ids`` are per prepared report; ``grid_ids``
    holds -1 where a row has no grid.
    """
    n = len(us)
    shape = np.zeros(n, dtype=np.int64)
    for k, mask in enumerate(prep.present):
        shape |= mask.astype(np.int64) << k
    shape |= (grid_ids >= 0).astype(np.int64) << len(_OPTIONAL)
    lengths = np.fromiter((len(a) for a in prep.attrs), dtype=np.int64, count=n)
    shape |= lengths << (len(_OPTIONAL) + 1)
    parts = []
    for key in np.unique(shape):
        sel = np.nonzero(shape == key)[0]
        has_grid = bool(key >> len(_OPTIONAL) & 1)
        attr_len = int(key >> (len(_OPTIONAL) + 1))
        rec = np.zeros(len(sel), dtype=_dtype(int(key), has_grid, attr_len))
        rec["n"] = 12
        rec["l0"], rec["dev"] = 4, device_ids[sel]
        rec["l1"], rec["ts"] = 8, us[sel]
        rec["l2"], rec["lon"] = 8, prep.lon[sel]
        rec["l3"], rec["lat"] = 8, prep.lat[sel]
        for k, values in enumerate(prep.optional):
            if key >> k & 1:
                rec[f"o{k}l"], rec[f"o{k}"] = 4, values[sel]
            else:
                rec[f"o{k}l"] = -1
        rec["jl"], rec["jv"] = attr_len + 1, 1
        rec["jb"] = np.array([prep.attrs[i] for i in sel], dtype=f"S{attr_len}")
        rec["rl"], rec["rv"] = 8, received_us
        if has_grid:
            rec["gl"], rec["g"] = 4, grid_ids[sel]
        else:
            rec["gl"] = -1
        parts.append(rec.tobytes())
    return b"".join(parts)
