"""Verify the case log's hash chain: any rewrite of history, even by the owner, shows.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's content
(revision 0005, ``grid_log_text``).  The verifier does not trust the database to do
the arithmetic: it reads the raw columns, rendered by PostgreSQL's own built-in
casts, and recomputes every hash here.  An owner who rewrites one entry and then
recomputes every later hash is caught too, by the anchors: each verification keeps
the newest (seq, hash) it saw outside the database (a file under the data directory,
and the printed line a duty leader can copy into the handover), and the next
verification checks that the anchored entry still has that hash.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

SEP = "\x1f"
NULL = "\\N"
BATCH = 20_000

# The columns in the order of grid_log_text, each as PostgreSQL renders it.
_SELECT = (
    "SELECT l.seq::text AS seq_text, case_id::text, case_number, action, from_status, to_status, "
    "case_version::text, actor_id::text, actor_name, actor_role, workstation, "
    "(extract(epoch FROM at) * 1000000)::bigint::text, reason, payload::text, "
    "client_addr, client_app, prev_hash, hash FROM case_log l WHERE l.seq >= %(from)s "
    "ORDER BY l.seq"  # the column, not the text of it ("10" sorts before "2")
)
_NULLABLE = {4, 7, 12, 14, 15}


@dataclass
class AuditResult:
    ok: bool
    entries: int
    from_seq: int
    to_seq: int
    first_bad_seq: int | None = None
    reason: str = ""
    seconds: float = 0.0
    head_hash: str = ""
    anchors_checked: int = 0
    unchained: int = 0  # entries older than the chain (none after revision 0005)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
            "head_hash": self.head_hash,
            "anchors_checked": self.anchors_checked,
            "seconds": round(self.seconds, 3),
        }


def entry_text(row) -> bytes:
    """The canonical content of one entry, as grid_log_text forms it."""
    parts = []
    for i, value in enumerate(row[:16]):
        if value is None and i in _NULLABLE:
            parts.append(NULL)
        else:
            parts.append("" if value is None else value)
    return SEP.join(parts).encode("utf-8")


def verify(engine: Engine, from_seq: int = 0, anchors: Path | None = None) -> AuditResult:
    """Recompute the chain from ``from_seq`` (trusting the entry before it) to the end."""
    started = time.perf_counter()
    result = AuditResult(True, 0, from_seq, from_seq)
    expected_anchor = _read_anchors(anchors)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor(name="audit_verify")  # server-side: a million rows stream
        cur.itersize = BATCH
        prev: bytes | None = b""  # the chain starts from the empty hash
        if from_seq > 0:
            head = raw.cursor()
            head.execute(
                "SELECT hash FROM case_log WHERE seq < %(s)s ORDER BY seq DESC LIMIT 1",
                {"s": from_seq},
            )
            found = head.fetchone()
            prev = bytes(found[0]) if found and found[0] is not None else b""
            head.close()
        cur.execute(_SELECT, {"from": from_seq})
        sha = hashlib.sha256
        for row in cur:
            seq = int(row[0])
            stored_prev = bytes(row[16]) if row[16] is not None else None
            stored = bytes(row[17]) if row[17] is not None else None
            result.entries += 1
            result.to_seq = seq
            if stored is None:
                _fail(result, seq, "entry has no hash")
                break
            if stored_prev != prev:
                _fail(result, seq, "previous-hash link broken (an entry before it was removed "
                      "or inserted)")
                break
            digest = sha(prev + entry_text(row)).digest()
            if digest != stored:
                _fail(result, seq, "content does not match its hash (the entry was rewritten)")
                break
            anchor = expected_anchor.get(seq)
            if anchor is not None:
                result.anchors_checked += 1
                if anchor != stored.hex():
                    _fail(result, seq, "hash differs from the one anchored outside the database "
                          "(the chain was recomputed)")
                    break
            prev = stored
        cur.close()
        raw.rollback()
    finally:
        raw.close()
    result.head_hash = prev.hex() if prev else ""
    result.seconds = time.perf_counter() - started
    if result.ok and result.entries and anchors is not None:
        _write_anchor(anchors, result.to_seq, result.head_hash)
    _record(engine, result)
    return result


def _fail(result: AuditResult, seq: int, reason: str) -> None:
    result.ok = False
    result.first_bad_seq = seq
    result.reason = reason


def _read_anchors(path: Path | None) -> dict[int, str]:
    if path is None or not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
            out[int(item["seq"])] = str(item["hash"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _write_anchor(path: Path, seq: int, head: str) -> None:
    from db.files import private_dir

    private_dir(path.parent)  # the data directory: 0700 when it is made here
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"seq": seq, "hash": head, "at": time.time()}) + "\n")
    path.chmod(0o600)


def _record(engine: Engine, result: AuditResult) -> None:
    """Note the verification in the database, for the wall and the status window.

    Only ``grid_audit_check`` (revision 0011) writes ``audit_check``, after checking
    the same range itself: a console cannot record a verification that did not
    happen.  This client's own finding (which also covers the anchors kept outside
    the database) goes with it and can only make the recorded result worse.
    """
    try:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT grid_audit_check(:f, :bad)"),
                {"f": result.from_seq, "bad": result.first_bad_seq},
            )
    except Exception:  # a lost database: the verification stands, unrecorded
        pass


def last_check(engine: Engine) -> dict | None:
    """The newest verification: when, how many entries, whether the chain held."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT at, to_seq, entries, ok, first_bad_seq FROM audit_check "
                "ORDER BY id DESC LIMIT 1"
            )
        ).mappings().first()
    return dict(row) if row else None
