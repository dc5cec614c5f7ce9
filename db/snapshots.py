"""A frame of a camera attached to a case as evidence, and read back (revision 0007).

Evidence is history: ``grid_attach_snapshot`` checks the session and its role, raises
the case's version, appends an ``attach_snapshot`` log entry (camera, the frame's time,
the image's SHA-256, so the hash chain covers the evidence) and stores the image under
that entry.  This module checks the image first, for one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db import validation as v
from db.errors import BadInput, Forbidden, NotFound
from db.session import bind, transaction, with_retry
from db.users import Actor

ACTION = "attach_snapshot"


@dataclass(frozen=True)
class SnapshotResult:
    attachment_id: int
    seq: int
    version: int
    sha256: str
    filename: str


# Who may attach evidence (the database checks the same in grid_attach_snapshot).
SNAPSHOT_ROLES = ("intake", "dispatcher", "verifier", "leader", "department")


def snapshot_filename(camera: str, taken_at: datetime, ext: str = "jpg") -> str:
    return f"{camera}_{taken_at.astimezone(UTC):%Y%m%dT%H%M%S.%f}"[:-3] + f"Z.{ext}"


def attach_snapshot(engine: Engine, actor: Actor, case_number: str, camera: str,
                    taken_at: datetime, image: bytes) -> SnapshotResult:
    """Attach ``image`` (JPEG or PNG) taken from ``camera`` at ``taken_at`` to the case."""
    if not case_number:
        raise BadInput("请先选中一个案件。", "Select a case first.")
    if taken_at.tzinfo is None:
        raise ValueError("taken_at must carry its time zone")
    if actor.role not in SNAPSHOT_ROLES:
        raise Forbidden("当前角色不能为案件附加截图。",
                        "This role may not attach evidence to a case.")
    checked = v.attachment(snapshot_filename(camera, taken_at), image)
    if checked.mime not in ("image/jpeg", "image/png"):
        raise BadInput("截图须为 JPEG 或 PNG。", "A snapshot is a JPEG or PNG image.")
    name = snapshot_filename(camera, taken_at, "png" if checked.mime == "image/png" else "jpg")

    def work() -> SnapshotResult:
        with transaction(engine) as conn:
            bind(conn, actor, ACTION)
            try:
                with conn.begin_nested():
                    row = conn.execute(text(
                        "SELECT * FROM grid_attach_snapshot(:case, :cam, :at, :data, :name, :ws)"),
                        {"case": case_number, "cam": camera, "at": taken_at,
                         "data": checked.data, "name": name,
                         "ws": getattr(actor, "workstation", "") or ""}).one()
            except DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) == "P0002":
                    what = str(exc.orig).strip().splitlines()[0]
                    if "camera" in what:
                        raise NotFound(f"摄像头“{camera}”不存在。",
                                       f"No camera coded '{camera}'.") from None
                    raise NotFound(f"案件“{case_number}”不存在。",
                                   f"No case numbered '{case_number}'.") from None
                raise
        return SnapshotResult(int(row.attachment_id), int(row.log_seq), int(row.case_version),
                              checked.sha256, name)

    return with_retry(work)


def attachment_data(engine: Engine, attachment_id: int) -> dict:
    """One attachment with its bytes: filename, mime, size, sha256, data, log entry."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT a.id, a.case_id, a.filename, a.mime, a.size, a.sha256, a.data, a.log_seq, "
            "a.uploaded_by, a.created_at, l.action, l.payload FROM attachment a "
            "LEFT JOIN case_log l ON l.seq = a.log_seq WHERE a.id = :i"),
            {"i": attachment_id}).first()
    if row is None:
        raise NotFound(f"附件 {attachment_id} 不存在。", f"No attachment {attachment_id}.")
    out = dict(row._mapping)
    out["data"] = bytes(out["data"])
    return out
