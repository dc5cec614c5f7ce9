"""The video wall: cameras with their streams, snapshots as case evidence, wall layouts.

* **Cameras** get a sub-stream address (``sub_url``; ``url`` stays the main stream), a
  horizontal view angle (``view_angle``, degrees; ``heading`` is the view direction),
  groups (``groups``: a street, a key site, an event …) and ``updated_at``.  Consoles
  change cameras only through ``grid_camera_save`` / ``grid_camera_set_active``, which
  need an administrator's session (``grid_require_admin``) and NOTIFY ``grid_cameras``
  so every console's camera list follows.
* **Snapshots**: ``grid_attach_snapshot`` attaches a frame to an open case as evidence.
  An attachment is history, so it goes to the log: the function checks the session and
  its role (hall operators; a department only on its own cases), locks the case, raises
  its version by one, appends an ``attach_snapshot`` entry (camera, the frame's time, the
  image's SHA-256: the hash chain then covers the evidence) and stores the attachment
  under that entry's sequence number, as the owner.  The triggers of 0005 step aside for
  the owner's own functions; the deferred ``case_logged`` check still finds the entry.
* **Wall layouts**: a wall display's login reads its layout from ``saved_layout`` (its own
  row, ``name`` ``video``); a duty leader or an administrator arranges it through
  ``grid_video_wall_layout``.  Operators keep theirs in their own rows (RLS of 0005).
* **The demo**: the embedded demo's cameras play generated scenes (``demo://CODE/main``,
  ``demo://CODE/sub``, which the console resolves to the simulator's MJPEG server).

Revision ID: 0007
Revises: 0006
Created: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LOG_ORDER_LOCK = 0x6C6F67  # as in 0005 and db.case_actions
MAX_SNAPSHOT_BYTES = 10 * 1024 * 1024  # db.validation.MAX_ATTACHMENT_BYTES

SCHEMA_SQL = [
    "ALTER TABLE camera ADD COLUMN sub_url text NOT NULL DEFAULT ''",
    "ALTER TABLE camera ADD COLUMN view_angle double precision",
    "ALTER TABLE camera ADD COLUMN groups text[] NOT NULL DEFAULT '{}'",
    "ALTER TABLE camera ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()",
    "ALTER TABLE camera ADD CONSTRAINT ck_camera_view_angle "
    "CHECK (view_angle IS NULL OR (view_angle > 0 AND view_angle <= 360))",
    "ALTER TABLE camera ADD CONSTRAINT ck_camera_heading "
    "CHECK (heading IS NULL OR (heading >= 0 AND heading < 360))",
    "ALTER TABLE camera ADD CONSTRAINT ck_camera_lonlat "
    "CHECK (lon BETWEEN -180 AND 180 AND lat BETWEEN -90 AND 90)",
    "CREATE INDEX ix_camera_lonlat ON camera (lon, lat)",
    # The embedded demo's cameras had no stream: give them their generated scenes.
    """
    UPDATE camera SET url = 'demo://' || code || '/main', sub_url = 'demo://' || code || '/sub'
     WHERE url = '' AND EXISTS (SELECT 1 FROM grid_meta WHERE key = 'demo')
    """,
]

FUNCTIONS_SQL = [
    """
    CREATE FUNCTION grid_camera_save(
        p_code text, p_name text, p_lon double precision, p_lat double precision,
        p_grid_id integer, p_url text, p_sub_url text, p_heading double precision,
        p_view_angle double precision, p_groups text[], p_active boolean, p_mode text)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        cid integer;
    BEGIN
        PERFORM grid_require_admin();
        IF p_code IS NULL OR p_code !~ '^[A-Za-z0-9_.-]{1,40}$' THEN
            RAISE EXCEPTION 'a camera code is 1-40 letters, digits, _ . -'
                USING ERRCODE = 'check_violation';
        END IF;
        IF p_mode = 'add' THEN
            INSERT INTO camera (code, name, lon, lat, grid_id, url, sub_url, heading, view_angle,
                                groups, active, updated_at)
            VALUES (p_code, p_name, p_lon, p_lat, p_grid_id, coalesce(p_url, ''),
                    coalesce(p_sub_url, ''), p_heading, p_view_angle, coalesce(p_groups, '{}'),
                    coalesce(p_active, true), now())
            RETURNING id INTO cid;
        ELSIF p_mode IN ('edit', 'upsert') THEN
            UPDATE camera SET name = p_name, lon = p_lon, lat = p_lat, grid_id = p_grid_id,
                   url = coalesce(p_url, ''), sub_url = coalesce(p_sub_url, ''),
                   heading = p_heading, view_angle = p_view_angle,
                   groups = coalesce(p_groups, '{}'), active = coalesce(p_active, active),
                   updated_at = now()
             WHERE code = p_code
            RETURNING id INTO cid;
            IF cid IS NULL AND p_mode = 'upsert' THEN
                INSERT INTO camera (code, name, lon, lat, grid_id, url, sub_url, heading,
                                    view_angle, groups, active, updated_at)
                VALUES (p_code, p_name, p_lon, p_lat, p_grid_id, coalesce(p_url, ''),
                        coalesce(p_sub_url, ''), p_heading, p_view_angle,
                        coalesce(p_groups, '{}'), coalesce(p_active, true), now())
                RETURNING id INTO cid;
            ELSIF cid IS NULL THEN
                RAISE EXCEPTION 'unknown camera' USING ERRCODE = 'no_data_found';
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown mode %', p_mode USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM pg_notify('grid_cameras', p_code);
        RETURN cid;
    END $$
    """,
    """
    CREATE FUNCTION grid_camera_set_active(p_code text, p_active boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        cid integer;
    BEGIN
        PERFORM grid_require_admin();
        UPDATE camera SET active = p_active, updated_at = now() WHERE code = p_code
        RETURNING id INTO cid;
        IF cid IS NULL THEN
            RAISE EXCEPTION 'unknown camera' USING ERRCODE = 'no_data_found';
        END IF;
        PERFORM pg_notify('grid_cameras', p_code);
    END $$
    """,
    f"""
    CREATE FUNCTION grid_attach_snapshot(
        p_case text, p_camera text, p_taken_at timestamptz, p_data bytea, p_filename text,
        p_workstation text,
        OUT attachment_id bigint, OUT log_seq bigint, OUT case_version integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        c record;
        cam record;
        mime text;
        digest text;
    BEGIN
        SELECT * INTO a FROM grid_require_session();
        IF NOT (a.role = ANY (ARRAY['intake', 'dispatcher', 'verifier', 'leader',
                                    'department'])) THEN
            PERFORM grid_refuse(format('role %s may not attach evidence', a.role));
        END IF;
        SELECT id, number, status, version, stage_due_at, close_due_at INTO c
          FROM "case" WHERE number = p_case FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown case' USING ERRCODE = 'no_data_found';
        END IF;
        IF c.status NOT IN ('reported', 'accepted', 'filed', 'dispatched', 'in_progress',
                            'awaiting_verification') THEN
            PERFORM grid_refuse(format('case %s is %s: evidence goes to open cases',
                                       c.number, c.status));
        END IF;
        IF a.role = 'department' AND NOT EXISTS (
                SELECT 1 FROM case_assignment
                 WHERE case_id = c.id AND department_id = a.department_id) THEN
            PERFORM grid_refuse('the case is not assigned to this department');
        END IF;
        SELECT code, name INTO cam FROM camera WHERE code = p_camera;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown camera' USING ERRCODE = 'no_data_found';
        END IF;
        IF p_taken_at IS NULL OR p_taken_at > now() + interval '1 minute'
           OR p_taken_at < now() - interval '1 day' THEN
            PERFORM grid_refuse('a snapshot is taken within the last day, not in the future');
        END IF;
        IF p_data IS NULL OR length(p_data) = 0 OR length(p_data) > {MAX_SNAPSHOT_BYTES} THEN
            PERFORM grid_refuse('a snapshot is an image of at most 10 MB');
        END IF;
        IF substring(p_data FROM 1 FOR 3) = '\\xffd8ff'::bytea THEN
            mime := 'image/jpeg';
        ELSIF substring(p_data FROM 1 FOR 8) = '\\x89504e470d0a1a0a'::bytea THEN
            mime := 'image/png';
        ELSE
            PERFORM grid_refuse('a snapshot is a JPEG or PNG image');
        END IF;
        digest := encode(sha256(p_data), 'hex');
        UPDATE "case" SET version = c.version + 1, updated_at = now() WHERE id = c.id;
        PERFORM pg_advisory_xact_lock({LOG_ORDER_LOCK});
        INSERT INTO case_log (case_id, case_number, action, from_status, to_status,
            case_version, actor_id, actor_name, actor_role, workstation, reason, payload)
        VALUES (c.id, c.number, 'attach_snapshot', c.status, c.status, c.version + 1,
            a.user_id, a.display_name, a.role, left(coalesce(p_workstation, ''), 100), NULL,
            jsonb_build_object('camera', cam.code, 'camera_name', cam.name,
                               'taken_at', p_taken_at, 'sha256', digest,
                               'size', length(p_data), 'mime', mime,
                               'stage_due', c.stage_due_at, 'close_due', c.close_due_at))
        RETURNING seq INTO log_seq;
        INSERT INTO attachment (case_id, log_seq, filename, mime, size, sha256, data,
                                uploaded_by)
        VALUES (c.id, log_seq, left(coalesce(nullif(p_filename, ''), cam.code), 200), mime,
                length(p_data), digest, p_data, a.display_name)
        RETURNING id INTO attachment_id;
        case_version := c.version + 1;
    END $$
    """,
    """
    CREATE FUNCTION grid_video_wall_layout(p_wall text, p_state bytea) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        a record;
        target integer;
    BEGIN
        SELECT * INTO a FROM grid_require_session();
        IF NOT (a.role = ANY (ARRAY['leader', 'admin'])) THEN
            PERFORM grid_refuse('a wall''s layout is arranged by a duty leader or an administrator');
        END IF;
        SELECT id INTO target FROM app_user WHERE name = p_wall AND role = 'wall';
        IF target IS NULL THEN
            RAISE EXCEPTION 'unknown wall' USING ERRCODE = 'no_data_found';
        END IF;
        IF p_state IS NULL OR length(p_state) > 262144 THEN
            PERFORM grid_refuse('a layout is at most 256 KiB');
        END IF;
        INSERT INTO saved_layout (user_id, name, state, updated_at)
        VALUES (target, 'video', p_state, now())
        ON CONFLICT (user_id, name) DO UPDATE SET state = EXCLUDED.state, updated_at = now();
    END $$
    """,
]

GRANTS_SQL = [
    "REVOKE EXECUTE ON FUNCTION grid_camera_save(text, text, double precision, double precision, "
    "integer, text, text, double precision, double precision, text[], boolean, text), "
    "grid_camera_set_active(text, boolean), "
    "grid_attach_snapshot(text, text, timestamptz, bytea, text, text), "
    "grid_video_wall_layout(text, bytea) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION grid_camera_save(text, text, double precision, double precision, "
    "integer, text, text, double precision, double precision, text[], boolean, text), "
    "grid_camera_set_active(text, boolean), "
    "grid_attach_snapshot(text, text, timestamptz, bytea, text, text), "
    "grid_video_wall_layout(text, bytea) TO grid_console",
    # Readers see the cameras' new columns (a table grant covers them; said for clarity).
    "GRANT SELECT ON camera TO grid_console, grid_wall",
]


def upgrade() -> None:
    for statement in SCHEMA_SQL + FUNCTIONS_SQL + GRANTS_SQL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION grid_video_wall_layout(text, bytea)")
    op.execute("DROP FUNCTION grid_attach_snapshot(text, text, timestamptz, bytea, text, text)")
    op.execute("DROP FUNCTION grid_camera_set_active(text, boolean)")
    op.execute(
        "DROP FUNCTION grid_camera_save(text, text, double precision, double precision, "
        "integer, text, text, double precision, double precision, text[], boolean, text)"
    )
    op.execute("DROP INDEX ix_camera_lonlat")
    for ck in ("ck_camera_view_angle", "ck_camera_heading", "ck_camera_lonlat"):
        op.execute(f"ALTER TABLE camera DROP CONSTRAINT {ck}")
    for col in ("sub_url", "view_angle", "groups", "updated_at"):
        op.execute(f"ALTER TABLE camera DROP COLUMN {col}")
