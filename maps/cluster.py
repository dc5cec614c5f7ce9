"""Grid clustering of map points by zoom, never hiding what must be seen.

At district zoom 2,000 case markers overlap into a smear; traccar-web's users
ask for clusters with counts, for the members of a cluster at full zoom, and
for clustering to be switchable off.  Clustering here is a plain grid on the
canvas: points whose cell (``cell_m`` metres, about 60 screen pixels) holds
more than one of them become one cluster at their mean position.  Points in
``keep`` (urgent, emergency and overdue cases) are never put into a cluster:
they stay single markers whatever the zoom, so no dispatcher misses one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLUSTER_PX = 56  # the cell size on screen
NO_CLUSTER_BELOW_M_PER_PX = 1.2  # zoomed in this far (about street level) nothing clusters


@dataclass
class Clusters:
    """The outcome: which points are drawn alone, and the clusters of the others."""

    singles: np.ndarray  # row indices of points drawn as themselves
    x: np.ndarray  # cluster centres (metres)
    y: np.ndarray
    counts: np.ndarray
    members: list[np.ndarray]  # row indices of each cluster's members

    def __len__(self) -> int:
        return len(self.counts)


def cell_for(m_per_px: float, enabled: bool = True) -> float | None:
    """The cluster cell in metres for a view's resolution, None when nothing clusters."""
    if not enabled or m_per_px < NO_CLUSTER_BELOW_M_PER_PX:
        return None
    return CLUSTER_PX * m_per_px


def cluster_points(x, y, cell_m: float | None, keep=None) -> Clusters:
    """Group points by the ``cell_m`` grid; rows where ``keep`` is true are always single.

    Non-finite positions are neither single nor clustered (they are not drawn).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    keep = np.zeros(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    finite = np.isfinite(x) & np.isfinite(y)
    empty = Clusters(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0),
                     np.zeros(0, dtype=np.int64), [])
    if cell_m is None or cell_m <= 0:
        empty.singles = np.nonzero(finite)[0]
        return empty
    candidates = np.nonzero(finite & ~keep)[0]
    always = np.nonzero(finite & keep)[0]
    if len(candidates) == 0:
        empty.singles = always
        return empty
    cx = np.floor(x[candidates] / cell_m).astype(np.int64)
    cy = np.floor(y[candidates] / cell_m).astype(np.int64)
    key = cx * 4_000_003 + cy  # distinct for any cell of the mercator world at ≥ 10 m cells
    _uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    alone = counts[inverse] == 1
    singles = np.sort(np.concatenate([always, candidates[alone]]))
    grouped = ~alone
    g_rows = candidates[grouped]
    g_inv = inverse[grouped]
    # Renumber the cells that hold clusters 0..k-1, then gather members per cell.
    cells, g_idx = np.unique(g_inv, return_inverse=True)
    k = len(cells)
    cnt = np.bincount(g_idx, minlength=k)
    sx = np.bincount(g_idx, weights=x[g_rows], minlength=k)
    sy = np.bincount(g_idx, weights=y[g_rows], minlength=k)
    order = np.argsort(g_idx, kind="stable")
    members = np.split(g_rows[order], np.cumsum(cnt)[:-1]) if k else []
    return Clusters(singles, sx / np.maximum(cnt, 1), sy / np.maximum(cnt, 1), cnt, members)
