"""SQLAlchemy models: the shared schema of every console, gateway and tool.

Geometry is stored as GeoJSON (``JSONB``) with a bounding box in plain
columns, so no PostGIS is needed: the bounding box narrows a lookup in SQL
and the exact test runs in Python (``maps/``).  Coordinates are WGS-84
everywhere in the database (docs/DOMAIN.md §2 "Coordinates"); GCJ-02 appears only on
the way to a Chinese basemap.

The migrations in ``db/migrations`` are the authority for the live schema;
these classes describe the same tables for queries and for tests that check
the two agree.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    Time,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZRANGE
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class BBoxMixin:
    """Bounding box of a polygon, in WGS-84 degrees, for index-backed lookups."""

    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)


# --- territory ---------------------------------------------------------------


class District(BBoxMixin, Base):
    __tablename__ = "district"
    adcode: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    geometry: Mapped[dict] = mapped_column(JSONB)
    area_km2: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    # The unit-cell lattice (revision 0002): north-west origin, step, size.
    crs_source: Mapped[str] = mapped_column(String(10), server_default=text("'wgs84'"))
    cell_m: Mapped[float] = mapped_column(Float, server_default=text("100"))
    origin_lon: Mapped[float] = mapped_column(Float, server_default=text("0"))
    origin_lat: Mapped[float] = mapped_column(Float, server_default=text("0"))
    dlon: Mapped[float] = mapped_column(Float, server_default=text("0"))
    dlat: Mapped[float] = mapped_column(Float, server_default=text("0"))
    n_cols: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_rows: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class Street(BBoxMixin, Base):
    __tablename__ = "street"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(9), unique=True)
    adcode: Mapped[str] = mapped_column(ForeignKey("district.adcode", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_generated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    geometry: Mapped[dict] = mapped_column(JSONB)
    area_m2: Mapped[float] = mapped_column(Float, server_default=text("0"))


class Community(BBoxMixin, Base):
    __tablename__ = "community"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    street_id: Mapped[int] = mapped_column(ForeignKey("street.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_generated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    geometry: Mapped[dict] = mapped_column(JSONB)
    area_m2: Mapped[float] = mapped_column(Float, server_default=text("0"))


class Grid(BBoxMixin, Base):
    __tablename__ = "grid"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    name_generated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    kind: Mapped[str] = mapped_column(String(20), default="街巷型", server_default=text("'街巷型'"))
    geometry: Mapped[dict] = mapped_column(JSONB)
    workload: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0.0"))
    area_m2: Mapped[float] = mapped_column(Float, server_default=text("0"))
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("worker.id", ondelete="SET NULL", use_alter=True)
    )
    leader_id: Mapped[int | None] = mapped_column(
        ForeignKey("worker.id", ondelete="SET NULL", use_alter=True)
    )
    __table_args__ = (Index("ix_grid_bbox", "min_lon", "max_lon", "min_lat", "max_lat"),)


class UnitCell(BBoxMixin, Base):
    """万米单元网格: a ~100 m cell, coded per CJ/T 213, owned by one community."""

    __tablename__ = "unit_cell"
    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grid.id", ondelete="CASCADE"))
    geometry: Mapped[dict] = mapped_column(JSONB)
    area_m2: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0.0"))
    adcode: Mapped[str] = mapped_column(String(6), server_default=text("''"))
    col: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    row: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    clipped: Mapped[bool] = mapped_column(Boolean, server_default=false())
    __table_args__ = (
        Index("ix_unit_cell_bbox", "min_lon", "max_lon", "min_lat", "max_lat"),
        Index("ix_unit_cell_grid", "grid_id"),
        Index("ix_unit_cell_lattice", "adcode", "col", "row", unique=True),
    )


# --- organisation ------------------------------------------------------------


class Department(Base):
    """处置单位: a department that handles dispatched cases."""

    __tablename__ = "department"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Category(Base):
    """部件/事件 category tree (CJ/T 214): kind → class → sub-category."""

    __tablename__ = "category"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # component | event
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"))
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    default_department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    __table_args__ = (CheckConstraint("kind IN ('component', 'event')", name="kind"),)


class TimeLimit(Base):
    """Hours allowed per stage for a sub-category at one severity."""

    __tablename__ = "time_limit"
    category_id: Mapped[int] = mapped_column(
        ForeignKey("category.id", ondelete="CASCADE"), primary_key=True
    )
    severity: Mapped[str] = mapped_column(String(12), primary_key=True)
    accept_h: Mapped[float] = mapped_column(Float)
    file_h: Mapped[float] = mapped_column(Float)
    dispatch_h: Mapped[float] = mapped_column(Float)
    handle_h: Mapped[float] = mapped_column(Float)
    verify_h: Mapped[float] = mapped_column(Float)
    close_h: Mapped[float] = mapped_column(Float)


class Worker(Base):
    """A field worker (网格员) or a member of a grid's roster."""

    __tablename__ = "worker"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    phone: Mapped[str | None] = mapped_column(String(30))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    roster_role: Mapped[str] = mapped_column(
        String(20), default="full_time", server_default=text("'full_time'")
    )
    status: Mapped[str] = mapped_column(
        String(20), default="off_duty", server_default=text("'off_duty'")
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Device(Base):
    """A GPS terminal, phone or vehicle unit that reports positions."""

    __tablename__ = "device"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="phone", server_default=text("'phone'"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    registered_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    key_hash: Mapped[str | None] = mapped_column(Text)  # SHA-256 of the device key (0005)


class AppUser(Base):
    """A console login. Passwords are argon2 hashes, never plain text."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(60))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(Text)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (
        CheckConstraint(
            "role IN ('intake','dispatcher','department','verifier','leader','admin','wall',"
            "'system')",
            name="role",
        ),
    )


# --- cases -------------------------------------------------------------------


class Case(Base):
    """One case (案件). ``version`` rises by one with every action on it."""

    __tablename__ = "case"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    source: Mapped[str] = mapped_column(String(20))
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id"))
    severity: Mapped[str] = mapped_column(
        String(12), default="normal", server_default=text("'normal'")
    )
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    address: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))
    description: Mapped[str] = mapped_column(Text)
    reporter: Mapped[str] = mapped_column(String(60), default="", server_default=text("''"))
    reporter_phone: Mapped[str] = mapped_column(String(30), default="", server_default=text("''"))
    status: Mapped[str] = mapped_column(String(24), index=True)
    onsite: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"))
    escalation: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    rework_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    return_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    extension_pending_h: Mapped[float | None] = mapped_column(Float)
    extended_h: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0.0"))
    stage_started_at: Mapped[datetime] = mapped_column(TS)
    stage_due_at: Mapped[datetime | None] = mapped_column(TS, index=True)
    close_due_at: Mapped[datetime | None] = mapped_column(TS)
    reported_at: Mapped[datetime] = mapped_column(TS)
    filed_at: Mapped[datetime | None] = mapped_column(TS)
    dispatched_at: Mapped[datetime | None] = mapped_column(TS)
    feedback_at: Mapped[datetime | None] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    evaluation: Mapped[str | None] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    # Revision 0006: history loaded from a legacy system (the owner's only), and the
    # grid worker who reported the case (the ranking by worker).
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reporter_worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("worker.id", ondelete="SET NULL")
    )
    __table_args__ = (
        CheckConstraint("lon BETWEEN -180 AND 180 AND lat BETWEEN -90 AND 90", name="lonlat"),
        CheckConstraint("escalation BETWEEN 0 AND 2", name="escalation"),
        CheckConstraint(
            "status IN ('reported','accepted','filed','dispatched','in_progress',"
            "'awaiting_verification','closed','archived','rejected','merged')",
            name="status",
        ),
        CheckConstraint("severity IN ('normal','urgent','emergency')", name="severity"),
        Index("ix_case_grid", "grid_id"),
        Index("ix_case_category", "category_id"),
        Index("ix_case_reported_at", "reported_at"),
    )


class CaseAssignment(Base):
    """One department's part in a dispatched case (lead, or co-handling in 联动)."""

    __tablename__ = "case_assignment"
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"))
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
    is_lead: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    assigned_at: Mapped[datetime] = mapped_column(TS)
    acknowledged_at: Mapped[datetime | None] = mapped_column(TS)
    fed_back_at: Mapped[datetime | None] = mapped_column(TS)
    feedback: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (PrimaryKeyConstraint("case_id", "department_id"),)


class CaseLog(Base):
    """Append-only history of every action; a trigger refuses UPDATE/DELETE."""

    __tablename__ = "case_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    case_number: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(30))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    case_version: Mapped[int] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_name: Mapped[str] = mapped_column(String(60))
    actor_role: Mapped[str] = mapped_column(String(20))
    workstation: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    reason: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    # Revision 0005: where the server saw the action come from, and the hash chain
    # (each entry's hash covers its content and the previous entry's hash).
    client_addr: Mapped[str | None] = mapped_column(Text)
    client_app: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    __table_args__ = (Index("ix_case_log_case_version", "case_id", "case_version"),)


class Attachment(Base):
    """A photo or document attached to a case (evidence), stored in the database."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"), index=True)
    log_seq: Mapped[int | None] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(200))
    mime: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class CaseCounter(Base):
    """Per-day counter behind human-readable case numbers (YYYYMMDD-NNNNN)."""

    __tablename__ = "case_counter"
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


# --- field force, cameras, layouts -------------------------------------------


class Camera(Base):
    __tablename__ = "camera"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    url: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    heading: Mapped[float | None] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Revision 0007 (the video wall): ``url`` is the main stream, ``sub_url`` the
    # sub-stream shown in the grid; the view angle; groups (street, key site, event).
    sub_url: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    view_angle: Mapped[float | None] = mapped_column(Float)
    groups: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default=text("'{}'")
    )
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (
        Index("ix_camera_lonlat", "lon", "lat"),
        CheckConstraint("view_angle IS NULL OR (view_angle > 0 AND view_angle <= 360)",
                        name="view_angle"),
        CheckConstraint("heading IS NULL OR (heading >= 0 AND heading < 360)", name="heading"),
        CheckConstraint("lon BETWEEN -180 AND 180 AND lat BETWEEN -90 AND 90", name="lonlat"),
    )


class LatestPosition(Base):
    """The newest position of each device, kept current by the gateway."""

    __tablename__ = "latest_position"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("device.id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[datetime] = mapped_column(TS)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    course: Mapped[float | None] = mapped_column(Float)
    altitude: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    battery: Mapped[float | None] = mapped_column(Float)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class SavedLayout(Base):
    """A user's window layout, so it follows the operator to any workstation."""

    __tablename__ = "saved_layout"
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(60))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (PrimaryKeyConstraint("user_id", "name"),)


# ``positions`` is partitioned by day, which SQLAlchemy's DDL does not express;
# the migration creates it, and this Table lets queries and COPY name it.
POSITION_COLUMNS = (
    "device_id",
    "ts",
    "lon",
    "lat",
    "speed_kmh",
    "course",
    "altitude",
    "accuracy",
    "battery",
    "attributes",
    "received_at",
)

# --- trust (revision 0005) ----------------------------------------------------


class WorkflowRule(Base):
    """The lifecycle as the database enforces it: who may take an action, from where to
    where, and which columns it may change (written from ``db.workflow`` by 0005)."""

    __tablename__ = "workflow_rule"
    action: Mapped[str] = mapped_column(Text, primary_key=True)
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text))
    from_statuses: Mapped[list[str]] = mapped_column(ARRAY(Text))
    to_statuses: Mapped[list[str]] = mapped_column(ARRAY(Text))
    columns: Mapped[list[str]] = mapped_column(ARRAY(Text))
    own_department: Mapped[bool] = mapped_column(Boolean)


class GridSession(Base):
    """A login: only the hash of its token is kept; consoles cannot read this table."""

    __tablename__ = "grid_session"
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TS)
    revoked_at: Mapped[datetime | None] = mapped_column(TS)
    client_addr: Mapped[str | None] = mapped_column(Text)
    client_app: Mapped[str | None] = mapped_column(Text)
    workstation: Mapped[str | None] = mapped_column(Text)


class GridMeta(Base):
    """Facts about this database itself, e.g. that it is the demo (``demo``)."""

    __tablename__ = "grid_meta"
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())


class AuditCheck(Base):
    """One run of ``audit verify``: which entries, and whether the chain held."""

    __tablename__ = "audit_check"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    from_seq: Mapped[int] = mapped_column(BigInteger)
    to_seq: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    first_bad_seq: Mapped[int | None] = mapped_column(BigInteger)
    checked_by: Mapped[str] = mapped_column(Text, server_default=text("SESSION_USER"))


__all__ = [
    "AppUser",
    "Attachment",
    "AuditCheck",
    "Base",
    "Camera",
    "Case",
    "CaseAssignment",
    "CaseCounter",
    "CaseFact",
    "CaseFactCloseDue",
    "CaseImport",
    "CaseLog",
    "Category",
    "Community",
    "Department",
    "Device",
    "District",
    "Grid",
    "GridMeta",
    "GridSession",
    "HandoverLog",
    "LatestPosition",
    "Presence",
    "SavedFilter",
    "SavedLayout",
    "ShiftHandover",
    "Street",
    "TimeLimit",
    "UnitCell",
    "Worker",
    "WorkerEvent",
    "WorkflowRule",
]


# --- gateway (revision 0003) -------------------------------------------------


class WorkerEvent(Base):
    """A field-force event the gateway derived from positions: left or returned
    to the own grid, went offline or came back.  ``id`` orders the events, so
    a console catches up with ``id > last_seen`` after a notification."""

    __tablename__ = "worker_event"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(TS)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grid.id", ondelete="SET NULL"))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict] = mapped_column(JSONB, default=dict, server_default=text("'{}'::jsonb"))
    __table_args__ = (
        CheckConstraint("kind IN ('left_grid','returned_to_grid','offline','online')", name="kind"),
        Index("ix_worker_event_device_at", "device_id", "at"),
        Index("ix_worker_event_worker_at", "worker_id", "at"),
    )


class SavedFilter(Base):
    """A named case-queue filter of one user (revision 0004)."""

    __tablename__ = "saved_filter"
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(60))
    criteria: Mapped[dict] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (PrimaryKeyConstraint("user_id", "name"),)


class Presence(Base):
    """Which case a user has on screen at a workstation (revision 0004)."""

    __tablename__ = "presence"
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    workstation: Mapped[str] = mapped_column(String(100))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"))
    seen_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "workstation"),
        Index("ix_presence_case", "case_id"),
    )


# --- evaluation (revision 0006) ---------------------------------------------------


class CaseImport(Base):
    """Where an imported case came from, and the deadlines its file gave (if any)."""

    __tablename__ = "case_import"
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    source_file: Mapped[str] = mapped_column(Text)
    line: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    imported_by: Mapped[str] = mapped_column(Text, server_default=text("SESSION_USER"))
    due_file: Mapped[datetime | None] = mapped_column(TS)
    due_dispatch: Mapped[datetime | None] = mapped_column(TS)
    due_handle: Mapped[datetime | None] = mapped_column(TS)
    due_close: Mapped[datetime | None] = mapped_column(TS)
    record: Mapped[dict] = mapped_column(JSONB)


class CaseFact(Base):
    """One case's times and the deadlines in force at its steps, folded from its log.

    Written only by ``grid_metrics_refresh`` (``db.metrics``); every metric of
    docs/DOMAIN.md §2 is a condition on these columns and the period.
    """

    __tablename__ = "case_fact"
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    grid_id: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(Integer)
    imported: Mapped[bool] = mapped_column(Boolean, server_default=false())
    reported_at: Mapped[datetime] = mapped_column(TS)
    filed_at: Mapped[datetime | None] = mapped_column(TS)
    file_due: Mapped[datetime | None] = mapped_column(TS)
    dispatched_at: Mapped[datetime | None] = mapped_column(TS)
    dispatch_due: Mapped[datetime | None] = mapped_column(TS)
    fed_back_at: Mapped[datetime | None] = mapped_column(TS)
    handle_due: Mapped[datetime | None] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    close_due: Mapped[datetime | None] = mapped_column(TS)
    close_base: Mapped[datetime | None] = mapped_column(TS)
    close_changed_at: Mapped[datetime | None] = mapped_column(TS)
    ended_at: Mapped[datetime | None] = mapped_column(TS)
    returned_at: Mapped[datetime | None] = mapped_column(TS)
    reworked_at: Mapped[datetime | None] = mapped_column(TS)
    lead_at: Mapped[datetime | None] = mapped_column(TS)
    lead_department_id: Mapped[int | None] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        # the few cases an extension moved: a report finds them without a scan
        Index("ix_case_fact_close_changed_at", "close_changed_at",
              postgresql_where=text("close_changed_at IS NOT NULL")),
    )


class CaseFactCloseDue(Base):
    """The close deadline from ``from_at`` on, for cases an approved extension moved."""

    __tablename__ = "case_fact_close_due"
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    from_at: Mapped[datetime] = mapped_column(TS)
    due_at: Mapped[datetime] = mapped_column(TS)
    __table_args__ = (PrimaryKeyConstraint("case_id", "seq"),)


# --- the evaluation's daily rollup (revision 0010) -----------------------------------

class KpiDay(Base):
    """Per hall day and grid (dim 1), department with the day of the first dispatch (2) or
    worker (3): the counts of the steps that came that day (``db.kpi_rollup``).  Written
    only by the statement triggers on ``case_fact``."""

    __tablename__ = "kpi_day"
    dim: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key: Mapped[int] = mapped_column(Integer, primary_key=True)
    dday: Mapped[date] = mapped_column(Date, primary_key=True)
    reported: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    filed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    filed_timely: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    dispatched: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    dispatched_timely: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    dispatched_returned: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fed_back: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fed_back_ontime: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    closed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    closed_ontime: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    hours_n: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    closed_us: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    lo: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lor: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    hi: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    hir: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class KpiCase(Base):
    """Per case what a report reads beside the rollup: groups, handling hours, the due
    interval (``backlog``) and the instants its figures differ from the rollup's (``xwin``)."""

    __tablename__ = "kpi_case"
    case_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    grid_id: Mapped[int | None] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(Integer)
    dispatched_at: Mapped[datetime | None] = mapped_column(TS)
    closed_at: Mapped[datetime | None] = mapped_column(TS)
    close_day: Mapped[date | None] = mapped_column(Date)
    hours: Mapped[float | None] = mapped_column(Float)
    lo_at: Mapped[datetime | None] = mapped_column(TS)
    hi_at: Mapped[datetime | None] = mapped_column(TS)
    lor_at: Mapped[datetime | None] = mapped_column(TS)
    backlog = mapped_column(TSTZRANGE, nullable=True)
    xwin = mapped_column(TSTZRANGE, nullable=True)
    irregular: Mapped[bool] = mapped_column(Boolean, server_default=false())
    __table_args__ = (
        Index("ix_kpi_case_closed_at", "closed_at",
              postgresql_include=["grid_id", "department_id", "worker_id", "hours"],
              postgresql_where=text("closed_at IS NOT NULL")),
        # all cases, or those of no grid, department or worker (the group key None)
        Index("ix_kpi_case_hours", "hours",
              postgresql_include=["closed_at", "grid_id", "department_id", "worker_id"],
              postgresql_where=text("hours IS NOT NULL")),
        Index("ix_kpi_case_grid_hours", "grid_id", "hours", postgresql_include=["closed_at"],
              postgresql_where=text("hours IS NOT NULL")),
        Index("ix_kpi_case_department_hours", "department_id", "hours",
              postgresql_include=["closed_at"], postgresql_where=text("hours IS NOT NULL")),
        Index("ix_kpi_case_worker_hours", "worker_id", "hours",
              postgresql_include=["closed_at"], postgresql_where=text("hours IS NOT NULL")),
        Index("ix_kpi_case_day_hours", "close_day", "hours", postgresql_include=["closed_at"],
              postgresql_where=text("hours IS NOT NULL")),
        Index("ix_kpi_case_backlog", "backlog", postgresql_using="gist",
              postgresql_where=text("backlog IS NOT NULL")),
        Index("ix_kpi_case_xwin", "xwin", postgresql_using="gist",
              postgresql_where=text("xwin IS NOT NULL")),
        Index("ix_kpi_case_open_lo", "lo_at",
              postgresql_where=text("hi_at IS NULL AND lo_at IS NOT NULL")),
    )


class ShiftHandover(Base):
    """A shift handed over (交接班): what it held, the notes, who took it over."""

    __tablename__ = "shift_handover"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shift_start: Mapped[datetime] = mapped_column(TS)
    shift_end: Mapped[datetime] = mapped_column(TS)
    summary: Mapped[dict] = mapped_column(JSONB)
    notes: Mapped[str] = mapped_column(Text, server_default=text("''"))
    outgoing_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    outgoing_name: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    incoming_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    incoming_name: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(TS)
    ack_note: Mapped[str | None] = mapped_column(Text)


class HandoverLog(Base):
    """Both steps of every handover, hash-chained like the case log."""

    __tablename__ = "handover_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("shift_handover.id"))
    action: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(Text)
    actor_role: Mapped[str] = mapped_column(Text)
    workstation: Mapped[str] = mapped_column(Text, server_default=text("''"))
    at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    notes: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    __table_args__ = (CheckConstraint("action IN ('handover','acknowledge')", name="action"),)


# --- field force (revision 0008) ------------------------------------------------


class DutySchedule(Base):
    """A worker's duty days (ISO weekdays 1–7) and hours; an administrator sets it
    (``grid_duty_schedule_set``); an end before the start runs past midnight."""

    __tablename__ = "duty_schedule"
    worker_id: Mapped[int] = mapped_column(
        ForeignKey("worker.id", ondelete="CASCADE"), primary_key=True
    )
    days: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (
        CheckConstraint(
            "cardinality(days) BETWEEN 1 AND 7 AND days <@ ARRAY[1,2,3,4,5,6,7]::smallint[]",
            name="days",
        ),
        CheckConstraint("start_time <> end_time", name="hours"),
    )


class PatrolDay(Base):
    """One worker's patrol figures for one closed local day (revision 0009), reused by the
    patrol report while the terminal, the own grid and the session parameters match;
    a late fix of that day deletes the row (trigger on ``positions``)."""

    __tablename__ = "patrol_day"
    worker_id: Mapped[int] = mapped_column(
        ForeignKey("worker.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    params: Mapped[str] = mapped_column(Text, primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int] = mapped_column(Integer)
    day_start: Mapped[datetime] = mapped_column(TS)
    until: Mapped[datetime] = mapped_column(TS)
    patrol_s: Mapped[float] = mapped_column(Float)
    outside_s: Mapped[float] = mapped_column(Float)
    cells_visited: Mapped[int] = mapped_column(Integer)
    sessions: Mapped[list[float]] = mapped_column(ARRAY(Float))
    fixes: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(TS, server_default=func.now())
    __table_args__ = (
        CheckConstraint("until > day_start", name="window"),
        Index("ix_patrol_day_device_until", "device_id", "until"),
        Index("ix_patrol_day_until", "until"),
    )
