"""Split a set of cells into contiguous parts of given relative weights.

Recursive bisection: cut the cells along a straight line (trying several
directions) so that each side carries its share of the weight, make each
side contiguous by handing stray pieces to the other side, keep the cut
that stays closest to the wanted shares, and recurse.  Pieces of land that
are not connected to the rest at all (islands) are first given parts of
their own in proportion to their weight; an island too small for even half
a part is attached to the nearest part, and is the one allowed exception to
contiguity.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from maps.cells import CellSet

# An island gets parts of its own only if it carries at least this share of
# one part: a smaller one would be a part too light to balance (an island has
# no neighbours to take cells from), so it is attached to the nearest part,
# which then hands mainland cells to its neighbours (``rebalance``).
ISLAND_SHARE = 0.8

# Directions tried for each cut: east-west, north-south and the two diagonals.
_DIRECTIONS = ((1.0, 0.0), (0.0, 1.0), (0.7071, 0.7071), (0.7071, -0.7071))


def components(cells: CellSet, members: np.ndarray) -> list[np.ndarray]:
    """Connected pieces of ``members`` (cell indices), largest first."""
    members = np.asarray(members, dtype=np.int64)
    if len(members) == 0:
        return []
    if len(members) <= _SMALL:
        return _components_small(cells, members)
    u, v = cells.neighbours(members)
    n = len(members)
    graph = coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    if count == 1:
        return [members]
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    pieces = [members[order[bounds[i] : bounds[i + 1]]] for i in range(count)]
    pieces.sort(key=len, reverse=True)
    return pieces


_SMALL = 400  # below this many cells a plain search beats building a sparse graph


def _components_small(cells: CellSet, members: np.ndarray) -> list[np.ndarray]:
    """Connected pieces by breadth-first search over the lattice (small sets)."""
    n_rows, n_cols = cells.index_at.shape
    remaining = set(members.tolist())
    index_at = cells.index_at
    cols, rows = cells.cols, cells.rows
    pieces = []
    while remaining:
        start = remaining.pop()
        piece = [start]
        frontier = [start]
        while frontier:
            a = frontier.pop()
            ca, ra = int(cols[a]), int(rows[a])
            for c, r in ((ca + 1, ra), (ca - 1, ra), (ca, ra + 1), (ca, ra - 1)):
                if 0 <= c < n_cols and 0 <= r < n_rows:
                    b = int(index_at[r, c])
                    if b in remaining and cells.linked(a, b):
                        remaining.discard(b)
                        piece.append(b)
                        frontier.append(b)
        pieces.append(np.array(piece, dtype=np.int64))
    pieces.sort(key=len, reverse=True)
    return pieces


def partition(
    cells: CellSet, members: np.ndarray, targets: list[float], weights: np.ndarray
) -> list[np.ndarray]:
    """Split ``members`` into ``len(targets)`` parts with weights ∝ ``targets``.

    Returns the parts in the order of ``targets``.  Each part is contiguous,
    except for islands too small to be a part of their own (see module doc).
    """
    members = np.asarray(members, dtype=np.int64)
    if len(targets) == 1:
        return [members]
    if len(members) < len(targets):
        raise ValueError(f"cannot split {len(members)} cells into {len(targets)} parts")
    pieces = components(cells, members)
    if len(pieces) == 1:
        return _bisect(cells, members, targets, weights)
    return _split_islands(cells, pieces, targets, weights)


def _split_islands(
    cells: CellSet, pieces: list[np.ndarray], targets: list[float], weights: np.ndarray
) -> list[np.ndarray]:
    total = sum(targets)
    piece_w = np.array([weights[p].sum() for p in pieces])
    unit = piece_w.sum() / total  # weight per unit of target
    mean_target = unit * total / len(targets)
    shares = piece_w / mean_target
    big = [i for i, s in enumerate(shares) if s >= ISLAND_SHARE] or [int(np.argmax(piece_w))]
    # Largest remainder: an integer number of parts per big piece, at least one each.
    raw = shares[big] * len(targets) / shares[big].sum()
    counts = np.maximum(1, np.floor(raw)).astype(int)
    while counts.sum() > len(targets):
        counts[np.argmax(counts - raw)] -= 1
    while counts.sum() < len(targets):
        counts[np.argmax(raw - counts)] += 1
    # Hand out the actual targets, biggest first, to the piece with most room.
    room = {i: piece_w[b] for i, b in enumerate(big)}
    slots = dict(enumerate(counts))
    assigned: dict[int, list[int]] = {i: [] for i in range(len(big))}
    for t in sorted(range(len(targets)), key=lambda t: -targets[t]):
        open_ = [i for i in slots if slots[i] > 0]
        best = max(open_, key=lambda i: room[i] / slots[i])
        assigned[best].append(t)
        room[best] -= targets[t] * unit
        slots[best] -= 1
    small = [k for k in range(len(pieces)) if k not in big]

    def cut(goal: list[float]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(goal)
        for i, b in enumerate(big):
            ts = sorted(assigned[i])
            for t, part in zip(
                ts, partition(cells, pieces[b], [goal[t] for t in ts], weights), strict=True
            ):
                out[t] = part
        return out  # type: ignore[return-value]

    def by_distance(parts: list[np.ndarray], piece: np.ndarray) -> list[int]:
        px, py = cells.x[piece].mean(), cells.y[piece].mean()
        return sorted(
            range(len(parts)),
            key=lambda t: np.min((cells.x[parts[t]] - px) ** 2 + (cells.y[parts[t]] - py) ** 2),
        )

    parts = cut(list(targets))
    if small:
        # Cut again with room left in the parts that will take the islands, so
        # each such part ends up with its share, island included.
        goal = list(targets)
        home: dict[int, int] = {}
        for k in sorted(small, key=lambda k: -piece_w[k]):
            need = piece_w[k] / unit
            order = by_distance(parts, pieces[k])
            # The nearest part with room for the island (keeping a third of its land).
            t = next((t for t in order if goal[t] - need >= 0.3 * targets[t]), order[0])
            home[k] = t
            goal[t] = max(goal[t] - need, 0.3 * targets[t])
        parts = cut(goal)
        for k, t in home.items():  # the slot that made room, which bisection keeps in place
            parts[t] = np.concatenate([parts[t], pieces[k]])
    return parts


def _bisect(
    cells: CellSet, members: np.ndarray, targets: list[float], weights: np.ndarray
) -> list[np.ndarray]:
    k = len(targets)
    left_t, right_t = targets[: k // 2], targets[k // 2 :]
    want = sum(left_t) / sum(targets)
    w = weights[members]
    total = w.sum()
    best = None
    for dx, dy in _DIRECTIONS:
        key = cells.x[members] * dx + cells.y[members] * dy
        order = np.argsort(key, kind="stable")
        cum = np.cumsum(w[order])
        goal = want * total
        c = int(np.searchsorted(cum, goal))  # cum[c] is the first running total ≥ goal
        # Take c cells (total cum[c-1]) or c + 1 cells (total cum[c]), whichever is nearer.
        cut = c if c > 0 and goal - cum[c - 1] <= cum[min(c, len(cum) - 1)] - goal else c + 1
        cut = min(max(cut, len(left_t)), len(order) - len(right_t))
        a, b = _repair(cells, members[order[:cut]], members[order[cut:]])
        if len(a) < len(left_t) or len(b) < len(right_t):
            continue
        error = abs(weights[a].sum() / total - want)
        if best is None or error < best[0]:
            best = (error, a, b)
        if error < 0.002:
            break
    if best is None:
        raise ValueError("could not split the cells into contiguous parts")
    _, a, b = best
    return partition(cells, a, left_t, weights) + partition(cells, b, right_t, weights)


def _repair(cells: CellSet, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make both sides connected: stray pieces of one side join the other."""
    pieces = components(cells, a)
    if len(pieces) > 1:
        a = pieces[0]
        b = np.concatenate([b, *pieces[1:]])
    pieces = components(cells, b)
    if len(pieces) > 1:
        b = pieces[0]
        a = np.concatenate([a, *pieces[1:]])
    return a, b


def rebalance(
    cells: CellSet,
    parts: list[np.ndarray],
    targets: list[float],
    weights: np.ndarray,
    goal: float = 1.06,
    max_moves: int | None = None,
    outer: list[int] | None = None,
) -> list[np.ndarray]:
    """Even out sibling parts by moving single boundary cells between neighbours.

    Straight cuts leave parts off their share by up to a few cells, and an
    attached island makes its part heavy; this trades cells across shared
    borders, heaviest part first and then lightest, never splitting a donor
    (its count of connected pieces may not grow), until the largest load
    over the smallest is within ``goal`` or no move improves it.

    ``outer`` names, per part, a group the part belongs to (grids of one
    community); a cell may then move between groups, and neither group may
    split either.
    """
    if len(parts) < 2:
        return parts
    balancer = _Balancer(cells, parts, targets, weights, outer)
    balancer.run(goal, max_moves if max_moves is not None else 60 * len(parts))
    return [np.fromiter(sorted(m), dtype=np.int64) for m in balancer.members]


class _Balancer:
    """The state of one rebalancing: who owns which cell, and every part's load."""

    def __init__(self, cells, parts, targets, weights, outer):
        self.cells = cells
        self.weights = weights
        self.targets = targets
        self.owner = np.full(len(cells), -1, dtype=np.int64)
        self.members = [set(map(int, p)) for p in parts]
        for i, p in enumerate(parts):
            self.owner[p] = i
        self.unit = sum(weights[p].sum() for p in parts) / float(sum(targets))
        self.load = np.array(
            [weights[p].sum() / (t * self.unit) for p, t in zip(parts, targets, strict=True)]
        )
        self.pieces = [len(components(cells, p)) for p in parts]
        self.outer = outer
        if outer is not None:
            groups = sorted(set(outer))
            self.group_members = {
                g: set().union(*(self.members[i] for i in range(len(parts)) if outer[i] == g))
                for g in groups
            }
            self.group_pieces = {
                g: len(components(cells, np.fromiter(m, dtype=np.int64)))
                for g, m in self.group_members.items()
            }

    def run(self, goal: float, max_moves: int) -> None:
        stuck_heavy: set[int] = set()
        stuck_light: set[int] = set()
        for _ in range(max_moves):
            load = self.load
            if load.max() / load.min() <= goal:
                return
            heavy = [int(i) for i in np.argsort(-load) if i not in stuck_heavy]
            light = [int(i) for i in np.argsort(load) if i not in stuck_light]
            if not heavy and not light:
                return
            moved = False
            if heavy:
                moved = self._move(self._from_donor(heavy[0]))
                if not moved:
                    stuck_heavy.add(heavy[0])
            if not moved and light:
                moved = self._move(self._to_receiver(light[0]))
                if not moved:
                    stuck_light.add(light[0])
            if moved:
                stuck_heavy.clear()
                stuck_light.clear()

    def _from_donor(self, donor: int) -> list[tuple[int, int]]:
        """(cell, receiving part) pairs across the border of a heavy part."""
        cells, owner, load = self.cells, self.owner, self.load
        own = np.fromiter(self.members[donor], dtype=np.int64)
        pairs = []
        for x, n in _linked_pairs(cells, own):
            j = int(owner[n])
            if j >= 0 and j != donor and load[j] < load[donor]:
                pairs.append((x, j))
        pairs.sort(key=lambda p: load[p[1]])
        return pairs

    def _to_receiver(self, receiver: int) -> list[tuple[int, int]]:
        """(cell of a heavier neighbour, receiver) pairs for a light part."""
        cells, owner, load = self.cells, self.owner, self.load
        own = np.fromiter(self.members[receiver], dtype=np.int64)
        pairs = []
        for _, n in _linked_pairs(cells, own):
            d = int(owner[n])
            if d >= 0 and d != receiver and load[d] > load[receiver]:
                pairs.append((n, receiver))
        pairs.sort(key=lambda p: -load[owner[p[0]]])
        return pairs

    def _move(self, pairs: list[tuple[int, int]]) -> bool:
        load, members = self.load, self.members
        tried = 0
        for x, j in dict.fromkeys(pairs):
            d = int(self.owner[x])
            if len(members[d]) <= 1:
                continue
            w = self.weights[x]
            new_d = load[d] - w / (self.targets[d] * self.unit)
            new_j = load[j] + w / (self.targets[j] * self.unit)
            if max(new_d, new_j) >= max(load[d], load[j]) - 1e-12:
                continue
            tried += 1
            if tried > 12:
                return False
            if not self._keeps_shape(x, d, j):
                continue
            members[d].discard(x)
            members[j].add(x)
            self.owner[x] = j
            load[d], load[j] = new_d, new_j
            if self.outer is not None and self.outer[d] != self.outer[j]:
                self.group_members[self.outer[d]].discard(x)
                self.group_members[self.outer[j]].add(x)
            return True
        return False

    def _keeps_shape(self, x: int, d: int, j: int) -> bool:
        """Neither the donor nor (across groups) its group splits by losing ``x``."""
        cells = self.cells
        rest = np.fromiter((m for m in self.members[d] if m != x), dtype=np.int64)
        if len(components(cells, rest)) > self.pieces[d]:
            return False
        if self.outer is not None and self.outer[d] != self.outer[j]:
            g = self.outer[d]
            rest = np.fromiter((m for m in self.group_members[g] if m != x), dtype=np.int64)
            if len(components(cells, rest)) > self.group_pieces[g]:
                return False
        return True


def _linked_pairs(cells: CellSet, group: np.ndarray) -> list[tuple[int, int]]:
    """(cell in group, edge-sharing neighbour outside it) pairs."""
    lat = cells.lattice
    inside = set(map(int, group))
    out = []
    for dc, dr in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        c = cells.cols[group] + dc
        r = cells.rows[group] + dr
        ok = (c >= 0) & (r >= 0) & (c < lat.n_cols) & (r < lat.n_rows)
        nb = np.full(len(group), -1, dtype=np.int64)
        nb[ok] = cells.index_at[r[ok], c[ok]]
        for x, n in zip(group[nb >= 0], nb[nb >= 0], strict=True):
            if int(n) not in inside and cells.linked(int(x), int(n)):
                out.append((int(x), int(n)))
    return out
