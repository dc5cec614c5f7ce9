"""Command line: the console window, database operations, users and cases.

Exit codes are part of the interface for scripts: 0 success, 2 bad input,
3 conflict (someone else changed the case), 4 not permitted (role, login),
5 database unavailable, 6 schema newer than this console.  Messages go to
stderr in the chosen language (``--lang``, default Chinese).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import text

from console.config import Settings, basemap_spec, workstation_name
from db.clock import hall_timezone
from db.errors import BadInput, Forbidden, GridError
from db.workflow import ACTION_NAMES, ROLE_LABELS, SEVERITIES, SOURCES

EXIT_OK = 0


def _add_common(p: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes, before or after the command's name.

    Below the top level their default is "not given", so ``screenshot OUT --lang en``
    and ``--lang en screenshot OUT`` mean the same and neither overrides the other.
    """
    default = None if top else argparse.SUPPRESS
    p.add_argument(
        "--database-url",
        default=default,
        help="shared PostgreSQL server, without a password (else --database-url-file, "
        "else GRID_DATABASE_URL, else the embedded server)",
    )
    p.add_argument(
        "--database-url-file",
        default=default,
        metavar="PATH",
        help="a file only its owner can read (chmod 600) holding the database URL "
        "with its password",
    )
    p.add_argument(
        "--data-dir",
        default=default,
        help="where the embedded server keeps its data "
        "(else GRID_DATA_DIR, else the user's data directory)",
    )
    p.add_argument(
        "--lang", choices=["zh", "en"], default=default,
        help="language of messages and the window",
    )


def _add_common_below(p: argparse.ArgumentParser) -> None:
    """Give every command and sub-command the common options."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_common(child, top=False)
                _add_common_below(child)


BASEMAP_HELP = (
    "the map's basemap: an XYZ template http://host/{z}/{x}/{y}.png, a .mbtiles or "
    ".pmtiles file, or none (else GRID_BASEMAP, else the demo's built basemap if any)"
)


class _Parser(argparse.ArgumentParser):
    """argparse, but its error line (which quotes what was typed) never shows a password.

    ``main.py db url postgresql://u:pw@host/db`` (the flag forgotten) would
    otherwise print the URL back as an unrecognised argument.  Sub-parsers are
    made of the same class.
    """

    def error(self, message: str):
        from console.credentials import scrub

        super().error(scrub(message))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python main.py",
        description="网格指挥调度台 Grid Command Console. Without a command, opens the console.",
    )
    _add_common(p, top=True)
    sub = p.add_subparsers(dest="command")

    op = sub.add_parser("open", help="open the console window (the default)")
    op.add_argument(
        "--no-simulate",
        action="store_true",
        help="on the embedded demo, do not run the simulator behind the window",
    )
    op.add_argument("--basemap", help=BASEMAP_HELP)

    dbp = sub.add_parser("db", help="database operations")
    dbs = dbp.add_subparsers(dest="db_command", required=True)
    dbs.add_parser("upgrade", help="apply migrations up to this console's schema")
    dbs.add_parser("url", help="print the database URL in use")
    st = dbs.add_parser("status", help="schema revision, case and log counts")
    st.add_argument("--json", action="store_true")

    up = sub.add_parser("users", help="console users")
    ups = up.add_subparsers(dest="users_command", required=True)
    ua = ups.add_parser("add", help="add a user (password from GRID_PASSWORD or a prompt)")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=list(ROLE_LABELS))
    ua.add_argument("--display-name")
    ua.add_argument("--department", help="department code, for the department role")
    ul = ups.add_parser("list", help="list users")
    ul.add_argument("--json", action="store_true")
    upw = ups.add_parser(
        "passwd", help="change a password (new one from GRID_NEW_PASSWORD or a prompt)"
    )
    upw.add_argument("name")
    for verb in ("disable", "enable"):
        what = "ends its sessions" if verb == "disable" else "again"
        ud = ups.add_parser(verb, help=f"{verb} a login ({what})")
        ud.add_argument("name")
    for child in (ua, ul, upw, *[ups.choices[v] for v in ("disable", "enable")]):
        child.add_argument(
            "--admin", help="administrator acting (password from GRID_ADMIN_PASSWORD)"
        )
        child.add_argument(
            "--as-owner", action="store_true",
            help="act with the database URL's own credentials (the owner's)",
        )

    cp = sub.add_parser("case", help="list, show and act on cases")
    cs = cp.add_subparsers(dest="case_command", required=True)
    cl = cs.add_parser("list", help="newest cases first")
    cl.add_argument("--status")
    cl.add_argument("--overdue", action="store_true")
    cl.add_argument("--text")
    cl.add_argument("--limit", type=int, default=50)
    cl.add_argument("--json", action="store_true")
    sh = cs.add_parser("show", help="one case with its timeline")
    sh.add_argument("number")
    sh.add_argument("--json", action="store_true")
    ca = cs.add_parser("act", help="take an action on a case (NUMBER '-' for report)")
    ca.add_argument("number")
    ca.add_argument("action", choices=ACTION_NAMES)
    ca.add_argument("--user", required=True, help="acting user (password from GRID_PASSWORD)")
    ca.add_argument(
        "--expect-version",
        type=int,
        help="the case version you last saw (required except for report)",
    )
    ca.add_argument("--workstation", default=None)
    ca.add_argument("--json", action="store_true")
    ca.add_argument("--reason")
    ca.add_argument("--note")
    ca.add_argument("--department")
    ca.add_argument("--co-department", action="append", default=[])
    ca.add_argument("--worker", help="dispatch/reassign: the field worker; report: the "
                    "reporting grid worker's code (with --source patrol only)")
    ca.add_argument("--into", help="merge: the case to merge into")
    ca.add_argument("--level", type=int, help="escalate: 1 督办, 2 挂牌督办")
    ca.add_argument("--hours", help="request_extension: hours asked for")
    ca.add_argument("--reject", action="store_true", help="approve_extension: refuse it")
    ca.add_argument("--evidence")
    ca.add_argument("--attach", action="append", default=[], help="image file (repeatable)")
    ca.add_argument("--category")
    ca.add_argument("--severity", choices=SEVERITIES)
    ca.add_argument("--source", choices=SOURCES)
    ca.add_argument("--lon")
    ca.add_argument("--lat")
    ca.add_argument("--address")
    ca.add_argument("--description")
    ca.add_argument("--reporter")
    ca.add_argument("--phone")
    ca.add_argument("--onsite", action="store_true", help="report: handled on the spot")
    ca.add_argument("--evaluation")
    cs.add_parser("escalate-overdue", help="escalate overdue cases now (as the system user)")
    ci = cs.add_parser(
        "import", help="load cases with their history from a legacy system (JSON lines; "
        "the owner's credentials)"
    )
    ci.add_argument("file", help="one JSON object a line (README: History import)")
    ci.add_argument("--dry-run", action="store_true", help="check every line, write nothing")
    ci.add_argument("--json", action="store_true")

    kp = sub.add_parser("kpi", help="evaluation (综合评价) from the case log, for a period")
    kp.add_argument("--from", dest="date_from", required=True, metavar="DATE",
                    help="first day (YYYY-MM-DD, the hall's time zone)")
    kp.add_argument("--to", dest="date_to", required=True, metavar="DATE",
                    help="the day after the last (exclusive)")
    kp.add_argument("--by", default="district",
                    choices=["district", "department", "street", "community", "grid", "worker"])
    kp.add_argument("--rank-by", metavar="METRIC",
                    help="what the rows are ranked by (default 按期结案率; workers by reports)")
    kp.add_argument("--json", action="store_true")
    kp.add_argument("--xlsx", metavar="OUT", help="write every grouping to an XLSX workbook")
    kp.add_argument("--pdf", metavar="OUT", help="write the report (tables, charts) as PDF")

    hp = sub.add_parser("handover", help="the shift handover (交接班): report, notes, acknowledge")
    hp.add_argument("--shift-end", metavar="TIME",
                    help="end of the shift (ISO time, the hall's zone; default now)")
    hp.add_argument("--hours", type=float, default=12.0, help="length of the shift (default 12)")
    hp.add_argument("--pdf", metavar="OUT", help="write the handover report as PDF")
    hp.add_argument("--json", action="store_true")
    hp.add_argument("--user", help="the duty leader acting (password from GRID_PASSWORD)")
    hp.add_argument("--notes", help="hand the shift over with these notes (outgoing leader)")
    hp.add_argument("--ack", action="store_true",
                    help="take the shift over: acknowledge the newest open handover")
    hp.add_argument("--id", type=int, help="--ack: which handover (default the newest open)")

    ap = sub.add_parser("audit", help="the case log's hash chain")
    aps = ap.add_subparsers(dest="audit_command", required=True)
    av = aps.add_parser("verify", help="recompute the chain; name the first entry that differs")
    av.add_argument("--from", dest="from_seq", type=int, default=0, help="first log sequence")
    av.add_argument("--json", action="store_true")

    dp = sub.add_parser("district", help="territory: import a real district boundary")
    dps = dp.add_subparsers(dest="district_command", required=True)
    di = dps.add_parser("import", help="build unit cells, streets, communities, grids")
    di.add_argument("file", help="GeoJSON boundary (Polygon/MultiPolygon)")
    di.add_argument(
        "--crs",
        choices=["gcj02", "wgs84"],
        default="gcj02",
        help="coordinate system of the file (default gcj02, as amap's)",
    )
    di.add_argument("--cell", type=float, default=100.0, help="unit cell size in metres")
    di.add_argument("--streets", type=int)
    di.add_argument("--communities", type=int)
    di.add_argument("--grids", type=int)
    di.add_argument("--adcode", help="6-digit code, if the file's properties lack one")
    di.add_argument("--name")
    di.add_argument("--replace", action="store_true", help="replace an imported district")
    di.add_argument("--json", action="store_true")
    dl = dps.add_parser("list", help="imported districts")
    dl.add_argument("--json", action="store_true")

    gp = sub.add_parser("grid", help="territory lookups")
    gps = gp.add_subparsers(dest="grid_command", required=True)
    gl = gps.add_parser("locate", help="unit cell, grid, community and street of a point")
    gl.add_argument("lon", type=float)
    gl.add_argument("lat", type=float)
    gl.add_argument("--crs", choices=["wgs84", "gcj02"], default="wgs84")
    gl.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="the demo district")
    demos = demo.add_subparsers(dest="demo_command", required=True)
    ds = demos.add_parser("seed", help="build the demo district with a month of history")
    ds.add_argument("--days", type=int, default=30)
    ds.add_argument("--per-day", type=int, default=600)
    ds.add_argument(
        "--overdue-share", type=float, default=None,
        help="share of dispatched cases whose handling overran its time limit "
        "(escalated, most closed late since; default 0.02)",
    )
    ds.add_argument("--json", action="store_true")
    dt = demos.add_parser("tracks", help="the terminals' history of today (the simulator's "
                          "patrols, walked in the past) for the replay")
    dt.add_argument("--hours", type=float, help="the last HOURS instead of today from 08:00")
    ds.add_argument(
        "--force", action="store_true",
        help="seed a shared server's empty database (the URL must carry the owner's login)",
    )

    sim = sub.add_parser("simulate", help="keep the demo district alive (patrols, cases)")
    sim.add_argument("--speed", type=float, default=1.0, help="how much faster life runs")
    sim.add_argument("--gateway", help="send positions to this gateway URL (OsmAnd protocol)")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument(
        "--force", action="store_true",
        help="run on a database not marked as the demo (the URL must carry the owner's login)",
    )
    sim.add_argument(
        "--no-operators",
        action="store_true",
        help="leave accepting, filing and dispatching to people at consoles",
    )
    sim.add_argument("--cases-per-day", type=float, default=600.0)

    gw = sub.add_parser("gateway", help="GPS gateway: OsmAnd protocol over HTTP")
    gw.add_argument("--host", default="127.0.0.1")
    gw.add_argument("--port", type=int, default=5055)
    gw.add_argument(
        "--register-unknown",
        action="store_true",
        help="register reports from unknown devices as unassigned",
    )
    gw.add_argument("--queue-dir", help="local write-ahead queue (default: data dir/gateway)")
    gw.add_argument("--retention-days", type=int,
                    help="days of positions kept (default 90, or GRID_GATEWAY_RETENTION_DAYS)")
    gw.add_argument("--offline-minutes", type=float,
                    help="silence before a terminal counts as offline (default 10)")
    gw.add_argument("--max-backlog", type=int,
                    help="reports waiting for the database before answering 503 (default 20000)")
    gw.add_argument("--require-keys", action="store_true",
                    help="refuse reports of devices without a key of their own (device key ID)")
    gw.add_argument("--allow", action="append", default=[], metavar="NET",
                    help="accept clients from this network only, e.g. 10.0.0.0/8 (repeatable)")
    gw.add_argument("--enrol-key", help=argparse.SUPPRESS)  # refused: see GatewayConfig
    gw.add_argument("--enrol-key-file", metavar="PATH",
                    help="owner-only file with the enrolment key that lets --register-unknown "
                    "add a device (else GRID_ENROL_KEY)")
    gw.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    gw.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")

    dv = sub.add_parser("device", help="GPS terminals: keys")
    dvs = dv.add_subparsers(dest="device_command", required=True)
    dk = dvs.add_parser(
        "key", help="give a device a new key (printed once) or remove it; an admin's login"
    )
    dk.add_argument("device", help="the device id the terminal reports as")
    dk.add_argument("--create", action="store_true", help="register the device if it is new")
    dk.add_argument("--clear", action="store_true", help="remove the key instead")
    dk.add_argument("--admin", help="administrator acting (password from GRID_ADMIN_PASSWORD)")
    dk.add_argument("--as-owner", action="store_true",
                    help="act with the database URL's own credentials (the owner's)")

    em = sub.add_parser(
        "export-map", help="a self-contained situation map (HTML, folium) of the territory"
    )
    em.add_argument("out", help="the .html file to write")
    scope = em.add_mutually_exclusive_group()
    scope.add_argument("--street", help="one street (街道) by code")
    scope.add_argument("--grid", help="one grid by code")
    scope.add_argument("--case", help="one case by number, with what is within 1 km")
    em.add_argument("--offline", action="store_true",
                    help="reference no internet address: Leaflet inlined, tiles embedded or none")
    em.add_argument("--basemap", help=BASEMAP_HELP)
    em.add_argument("--leaflet-url",
                    help="where Leaflet's files are when not --offline (else GRID_LEAFLET_URL)")
    em.add_argument("--no-cluster", action="store_true", help="never cluster case markers")

    tp = sub.add_parser("tiles", help="basemap tiles: build one from the territory")
    tps = tp.add_subparsers(dest="tiles_command", required=True)
    tb = tps.add_parser(
        "build", help="render the district, streets and communities into an MBTiles file"
    )
    tb.add_argument("out", help="the .mbtiles file to write (replaced if it exists)")
    tb.add_argument("--min-zoom", type=int, default=11)
    tb.add_argument("--max-zoom", type=int, default=16)
    tb.add_argument("--datum", choices=["gcj02", "wgs84"], default="gcj02",
                    help="datum the basemap is drawn in (default gcj02, as Chinese basemaps)")
    tb.add_argument("--district", help="adcode of one district (default: every district)")
    tb.add_argument("--threads", type=int, help="rendering threads (default: the cores, ≤ 4)")

    from console.camera_cli import add_parser as add_camera_parser

    add_camera_parser(sub)

    from console.field_cli import add_parser as add_field_parser

    add_field_parser(sub)

    sc = sub.add_parser("screenshot", help="render a view offscreen to a PNG")
    sc.add_argument("out")
    sc.add_argument("--view", default="console",
                    choices=["console", "kpi", "workers", "status", "map", "video", "replay"])
    sc.add_argument("--user", help="console view: whose console (default dispatcher)")
    sc.add_argument("--size", default="1280x800")
    sc.add_argument("--center", help="map view: LON,LAT (WGS-84) at the middle")
    sc.add_argument("--zoom", type=float, help="map view: web zoom level (e.g. 14)")
    sc.add_argument("--at", help="replay view: the instant T (ISO, e.g. 2026-12-01T10:30; "
                    "without a zone the hall's)")
    sc.add_argument("--basemap", help=BASEMAP_HELP)
    sc.add_argument("--layout", choices=["1", "2x2", "3x3", "4x4", "1+5", "1+7"],
                    help="video view: the wall's layout (default 3x3)")
    _add_common_below(p)
    return p


def _settings(args) -> Settings:
    from console.credentials import database_url

    url = database_url(args.database_url, getattr(args, "database_url_file", None))
    return Settings.from_env(url, args.data_dir, args.lang)


def _engine(args, upgrade: bool = True, role: str = "console"):
    """The database as ``role``: consoles' checked role unless a command needs the owner."""
    from console.bootstrap import open_database

    return open_database(_settings(args), upgrade=upgrade, role=role)


def _admin(args, engine):
    """Log the administrator named by ``--admin`` in (GRID_ADMIN_PASSWORD or a prompt).

    ``--as-owner`` instead acts with the database URL's own credentials, which must be
    the owner's (on the embedded demo, this machine's own server): the database, not
    this program, decides whether they are.
    """
    from db.users import authenticate

    if getattr(args, "as_owner", False):
        return None
    name = getattr(args, "admin", None)
    if not name:
        raise Forbidden(
            "需要管理员登录：--admin 管理员用户名（或以数据库属主身份 --as-owner）。",
            "An administrator's login is needed: --admin NAME (or --as-owner with the "
            "owner's credentials).",
        )
    password = os.environ.get("GRID_ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin or not sys.stdin.isatty():
            raise Forbidden(
                "请通过 GRID_ADMIN_PASSWORD 提供管理员密码。",
                "Give the administrator's password in GRID_ADMIN_PASSWORD.",
            )
        password = getpass.getpass(f"password for {name}: ")
    actor = authenticate(engine, name, password, workstation_name())
    if actor.role != "admin":
        raise Forbidden("只有管理员可以管理用户。", "Only an administrator may manage users.")
    return actor


def _password(prompt: str, confirm: bool = False) -> str:
    env = os.environ.get("GRID_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin or not sys.stdin.isatty():
        raise BadInput("请通过 GRID_PASSWORD 提供密码。", "Give the password in GRID_PASSWORD.")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise BadInput("两次输入的密码不一致。", "The passwords do not match.")
    return first


def _print_json(value) -> None:
    def default(o):
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, bytes | memoryview):
            return None
        return str(o)

    print(json.dumps(value, ensure_ascii=False, default=default, indent=None))


# --- commands ----------------------------------------------------------------


def cmd_db(args) -> int:
    from console.bootstrap import redact

    if args.db_command == "url":
        from db.engine import resolve_url

        s = _settings(args)
        print(redact(resolve_url(s.database_url, s.data_dir)))  # never the password
        return EXIT_OK
    if args.db_command == "upgrade":
        from db import migrate

        engine = _engine(args, upgrade=False, role="owner")
        rev = migrate.upgrade(engine)
        from db.reference import ensure_reference

        ensure_reference(engine)
        print(f"schema at {rev} ({redact(str(engine.url.render_as_string(False)))})")
        from db.clock import hall_timezone
        from db.kpi_rollup import align_zone

        rebuilt = align_zone(engine)  # the evaluation's days in this hall's GRID_TZ
        if rebuilt is not None:
            print(f"evaluation rollup rebuilt for {hall_timezone().key} ({rebuilt} cases)")
        return EXIT_OK
    from console.status import database_status

    engine = _engine(args)
    status = database_status(engine)
    if args.json:
        _print_json(status)
    else:
        for key, value in status.items():
            print(f"{key}: {value}")
    return EXIT_OK


def cmd_users(args) -> int:
    from db.users import add_user, list_users, set_active, set_password

    engine = _engine(args, role="owner" if getattr(args, "as_owner", False) else "console")
    admin = _admin(args, engine) if args.users_command != "passwd" or args.admin else None
    if args.users_command == "add":
        pw = _password(f"password for {args.name}: ", confirm=True)
        actor = add_user(
            engine, args.name, args.role, pw, args.display_name, args.department, by=admin
        )
        print(f"added {actor.name} ({actor.role})")
        return EXIT_OK
    if args.users_command == "passwd":
        by = admin
        if by is None and not args.as_owner:
            # The user themself: GRID_PASSWORD is the current password.
            from db.users import authenticate

            current = _password(f"current password for {args.name}: ")
            by = authenticate(engine, args.name, current, workstation_name())
        new = os.environ.get("GRID_NEW_PASSWORD")
        if new is None:
            if not sys.stdin or not sys.stdin.isatty():
                raise BadInput(
                    "请通过 GRID_NEW_PASSWORD 提供新密码。",
                    "Give the new password in GRID_NEW_PASSWORD.",
                )
            new = getpass.getpass(f"new password for {args.name}: ")
        set_password(engine, args.name, new, by=by)
        print(f"password of {args.name} changed; its other sessions ended")
        return EXIT_OK
    if args.users_command in ("disable", "enable"):
        set_active(engine, args.name, args.users_command == "enable", by=admin)
        print(f"{args.name} {args.users_command}d")
        return EXIT_OK
    rows = list_users(engine)
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            state = "active" if r["active"] else "disabled"
            print(f"{r['name']}\t{r['display_name']}\t{r['role']}\t{state}")
    return EXIT_OK


def _action_params(args) -> dict:
    params: dict = {}
    simple = {
        "reason": args.reason,
        "note": args.note,
        "department": args.department,
        "worker": args.worker,
        "into": args.into,
        "level": args.level,
        "hours": args.hours,
        "evidence": args.evidence,
        "category": args.category,
        "severity": args.severity,
        "source": args.source,
        "lon": args.lon,
        "lat": args.lat,
        "address": args.address,
        "description": args.description,
        "reporter": args.reporter,
        "reporter_phone": args.phone,
        "evaluation": args.evaluation,
    }
    params.update({k: v for k, v in simple.items() if v is not None})
    if args.co_department:
        params["co_departments"] = args.co_department
    if args.onsite:
        params["onsite"] = True
    if args.action == "approve_extension":
        params["approved"] = not args.reject
    from db.validation import read_attachment_file

    # Regular files only, never more than the limit read (/dev/zero, a FIFO, 50 MB).
    files = [read_attachment_file(path) for path in args.attach]
    if files:
        params["attachments"] = files
    return params


def cmd_case(args) -> int:
    from db import case_queries

    if args.case_command == "import":
        return cmd_case_import(args)
    engine = _engine(args)
    if args.case_command == "list":
        rows = case_queries.list_cases(engine, args.status, args.overdue, args.text, args.limit)
        if args.json:
            _print_json([r.as_json() for r in rows])
        else:
            for r in rows:
                print(
                    f"{r.number}\t{r.status}\t{r.category}\t{r.category_name}\t"
                    f"v{r.version}\t{r.description[:40]}"
                )
        return EXIT_OK
    if args.case_command == "show":
        detail = case_queries.case_detail(engine, args.number)
        if args.json:
            _print_json(detail)
        else:
            for key, value in detail.items():
                if key != "log":
                    print(f"{key}: {value}")
            for e in detail["log"]:
                when = e["at"].astimezone(hall_timezone())
                print(
                    f"  #{e['seq']} {when:%Y-%m-%d %H:%M} {e['actor_name']} "
                    f"{e['action']} {e['from_status']}→{e['to_status']} {e['reason'] or ''}"
                )
        return EXIT_OK
    if args.case_command == "escalate-overdue":
        from db.deadlines import escalate_overdue

        done = escalate_overdue(engine)
        print(f"escalated {len(done)} case(s)")
        return EXIT_OK
    from db.case_actions import perform
    from db.users import authenticate

    params = _action_params(args)
    try:
        password = _password(f"password for {args.user}: ")
    except BadInput as exc:
        raise Forbidden(exc.zh, exc.en) from None
    station = args.workstation or workstation_name()
    actor = authenticate(engine, args.user, password, station)
    number = None if args.action == "report" else args.number
    result = perform(engine, actor, args.action, number, args.expect_version, **params)
    if args.json:
        _print_json(
            {
                "number": result.number,
                "action": result.action,
                "status": result.status,
                "version": result.version,
                "seq": result.seq,
            }
        )
    else:
        print(f"{result.number}\t{result.status}\tv{result.version}")
    return EXIT_OK


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` → (width, height), refused with one line when it is not one."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if not (1 <= w <= 16384 and 1 <= h <= 16384):
        raise BadInput(
            "尺寸格式应为 宽x高，例如 1920x1080。",
            "The size is WIDTHxHEIGHT, for example 1920x1080.",
        )
    return w, h


class WindowCommands(Protocol):
    """What the composition root hands in for the commands that open windows.

    The console package holds no views (the house: ``console`` never imports
    ``widgets``); ``main.py`` gives ``main`` an object with these methods.
    """

    def open(self, settings: Settings) -> int: ...

    def screenshot(
        self, settings: Settings, out: str, view: str, size: tuple[int, int], user: str | None,
        **map_view,
    ) -> int: ...

    def tiles_build(
        self, settings: Settings, out: str, min_zoom: int, max_zoom: int, datum: str,
        district: str | None, threads: int | None,
    ) -> int: ...


def cmd_open(args, window: WindowCommands) -> int:
    settings = _settings(args)
    settings.simulate = not getattr(args, "no_simulate", False)
    settings.basemap = basemap_spec(settings, getattr(args, "basemap", None))
    return window.open(settings)


def cmd_screenshot(args, window: WindowCommands) -> int:
    size = parse_size(args.size)
    settings = _settings(args)
    settings.basemap = basemap_spec(settings, args.basemap)
    map_view = {}
    if args.center is not None or args.zoom is not None:
        map_view = {"center": parse_lonlat(args.center) if args.center else None,
                    "zoom": args.zoom}
        if map_view["zoom"] is not None and not (1 <= map_view["zoom"] <= 22):
            raise BadInput("缩放级别须在 1–22 之间。", "The zoom level must be 1–22.")
    if args.view == "video":
        map_view["layout"] = args.layout or "3x3"
    if args.view == "replay":
        from db.field import parse_instant  # the replay's other commands read times so too

        map_view["at"] = parse_instant(args.at, "--at")
    return window.screenshot(settings, args.out, args.view, size, args.user, **map_view)


def parse_lonlat(text: str) -> tuple[float, float]:
    """``"116.41,39.92"`` → (116.41, 39.92); a clear message for anything else."""
    import math

    try:
        lon, lat = (float(v) for v in text.split(","))
    except ValueError:
        raise BadInput(
            f"中心点格式应为 经度,纬度（例如 116.41,39.92），收到 {text!r}。",
            f"The centre is LON,LAT (for example 116.41,39.92), got {text!r}.",
        ) from None
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 85:
        raise BadInput("中心点经纬度超出范围。", "The centre's coordinates are out of range.")
    return lon, lat


def cmd_tiles(args, window: WindowCommands) -> int:
    """``tiles build``: rendering needs QtGui, so it runs in ``widgets`` (a window command)."""
    from maps.tiles import TileError

    if not (0 <= args.min_zoom <= args.max_zoom <= 20):
        raise BadInput(
            "缩放级别须满足 0 ≤ --min-zoom ≤ --max-zoom ≤ 20。",
            "Zoom levels must satisfy 0 ≤ --min-zoom ≤ --max-zoom ≤ 20.",
        )
    if args.threads is not None and not (1 <= args.threads <= 64):
        raise BadInput("--threads 须在 1–64 之间。", "--threads must be 1–64.")
    try:
        return window.tiles_build(
            _settings(args), args.out, args.min_zoom, args.max_zoom, args.datum,
            args.district, args.threads,
        )
    except TileError as exc:
        raise BadInput(exc.zh, exc.en) from None


def cmd_audit(args) -> int:
    """``audit verify``: exit 0 when the chain holds, 3 at the first entry that does not."""
    from db.audit import verify

    if args.from_seq < 0:
        raise BadInput("--from 须为非负整数。", "--from must be 0 or more.")
    engine = _engine(args)
    settings = _settings(args)
    result = verify(engine, args.from_seq, settings.data_dir / "audit-anchors.jsonl")
    if args.json:
        _print_json(result.as_json())
    elif result.ok:
        print(
            f"chain holds: {result.entries} entries, seq {result.from_seq}..{result.to_seq}, "
            f"head {result.head_hash[:16]}… ({result.anchors_checked} anchors checked, "
            f"{result.seconds:.2f} s)"
        )
    if not result.ok:
        print(
            f"审计链在第 {result.first_bad_seq} 条不符：{result.reason}"
            if (args.lang or os.environ.get("GRID_LANG", "zh")) == "zh"
            else f"the chain breaks at entry {result.first_bad_seq}: {result.reason}",
            file=sys.stderr,
        )
        return 3
    return EXIT_OK


def _evaluation():
    """The evaluation commands (kpi, handover, case import) live in console.evaluation_cli."""
    from console import evaluation_cli

    return evaluation_cli


def _camera_cli():
    """``camera …`` lives in console.camera_cli (the video wall's cameras)."""
    from console import camera_cli

    return camera_cli


def _field_cli():
    """``patrol …`` and ``field …`` live in console.field_cli (the field force)."""
    from console import field_cli

    return field_cli


def cmd_case_import(args) -> int:
    return _evaluation().cmd_case_import(args)


def cmd_export_map(args) -> int:
    from console.situation_export import export_situation

    settings = _settings(args)
    summary = export_situation(
        _engine(args),
        args.out,
        street=args.street,
        grid=args.grid,
        case=args.case,
        offline=args.offline,
        basemap=basemap_spec(settings, args.basemap),
        leaflet_url=args.leaflet_url,
        lang=settings.lang,
        cluster=not args.no_cluster,
        cache_dir=Path(settings.data_dir) / "tiles",
    )
    for note in summary.notes:
        print(note, file=sys.stderr)
    print(summary.line())
    return EXIT_OK


def cmd_district(args) -> int:
    # Reading the territory is any console's; building it is the owner's.
    engine = _engine(args, role="console" if args.district_command == "list" else "owner")
    if args.district_command == "list":
        from db.territory_queries import districts

        rows = districts(engine)
        if args.json:
            _print_json(rows)
        else:
            for d in rows:
                print(
                    f"{d['adcode']}\t{d['name']}\t{d['area_km2']:.2f} km²\t"
                    f"{d['streets']}/{d['communities']}/{d['grids']}\t{d['unit_cells']}"
                )
        return EXIT_OK
    from db.territory import import_district

    summary = import_district(
        engine,
        args.file,
        args.crs,
        args.cell,
        args.streets,
        args.communities,
        args.grids,
        args.replace,
        args.adcode,
        args.name,
    )
    if args.json:
        _print_json(summary.as_json())
    else:
        s = summary
        print(
            f"{s.adcode} {s.name}: {s.area_km2:.2f} km², {s.streets} streets, "
            f"{s.communities} communities, {s.grids} grids, {s.cells} unit cells "
            f"in {s.seconds:.1f} s"
        )
    return EXIT_OK


def cmd_grid(args) -> int:
    from db.territory_queries import locate_point

    engine = _engine(args)
    answer = locate_point(engine, args.lon, args.lat, args.crs)
    if args.json:
        _print_json(answer)
    elif answer["inside"]:
        print(
            f"{answer['cell']}\t{answer['grid']['code']} {answer['grid']['name']}\t"
            f"{answer['community']['name']}\t{answer['street']['name']}"
        )
    else:
        print(answer["message"])
    return EXIT_OK


def cmd_demo(args) -> int:
    from db.demo_seed import DEFAULT_OVERDUE_SHARE, seed_demo

    if args.demo_command == "tracks":
        from console.demo_tracks import cmd_tracks

        if args.hours is not None and not 0 < args.hours <= 72:
            raise BadInput("--hours 须在 0–72 之间。", "--hours must be between 0 and 72.")
        done = cmd_tracks(_engine(args, role="owner"), args.hours)
        print(f"{done['fixes']} fixes of {done['workers']} workers, {done['from']} – "
              f"{done['to']}")
        return EXIT_OK

    if not (1 <= args.days <= 366 and 1 <= args.per_day <= 20_000):
        raise BadInput(
            "天数须为 1–366，每日案件数 1–20000。", "Days must be 1–366 and cases per day 1–20,000."
        )
    if _settings(args).database_url is not None and not args.force:
        raise Forbidden(
            "演示数据只建在内置演示数据库里；在共享服务器上请以属主身份加 --force。",
            "The demo is built only in the embedded demo database; on a shared server add "
            "--force with the owner's credentials.",
        )
    share = DEFAULT_OVERDUE_SHARE if args.overdue_share is None else args.overdue_share
    if not 0.0 <= share <= 1.0:
        raise BadInput("超时比例须在 0–1 之间。", "The overdue share must be between 0 and 1.")
    summary = seed_demo(
        _engine(args, role="owner"), days=args.days, cases_per_day=args.per_day,
        overdue_share=share,
    )
    if args.json:
        _print_json(summary.as_json())
        return EXIT_OK
    s = summary
    print(
        f"demo district {s.adcode}: {s.grids} grids, {s.workers} workers, {s.devices} "
        f"terminals, {s.cameras} cameras; {s.cases} cases ({s.open_cases} open, "
        f"{s.overdue_cases} overdue), {s.log_entries} log entries, in {s.seconds:.1f} s"
    )
    print("logins (user / role / password):")
    for name, role, password in s.users:
        print(f"  {name:<11} {role:<11} {password}")
    return EXIT_OK


def cmd_simulate(args) -> int:
    from console.simulator import Simulator

    if not (0 < args.speed <= 10_000):
        raise BadInput("速度倍数须在 0–10000 之间。", "The speed must be between 0 and 10000.")
    from db.demo_accounts import is_demo

    engine = _engine(args, role="owner" if args.force else "console")
    if not is_demo(engine):
        if not args.force:
            raise Forbidden(
                "这不是演示数据库：模拟器只在演示数据上运行（属主可加 --force）。",
                "This is not the demo database: the simulator runs only on the demo "
                "(the owner may add --force).",
            )
        with engine.connect() as conn:
            owner = conn.execute(
                text("SELECT pg_has_role(current_user, 'grid_owner', 'MEMBER')")
            ).scalar()
        if not owner:
            raise Forbidden(
                "--force 需要数据库属主的凭据。", "--force needs the owner's credentials."
            )
    positions = None if args.force else _engine(args, role="gateway")
    sim = Simulator(
        engine, args.speed, args.gateway, not args.no_operators, args.cases_per_day,
        position_engine=positions,
    ).load()
    if not sim.walkers:
        raise BadInput(
            "没有带终端的网格员，请先运行 demo seed。",
            "No workers with terminals: run 'demo seed' first.",
        )
    print(
        f"simulating {len(sim.walkers)} workers at {args.speed:g}× "
        f"({'via ' + args.gateway if args.gateway else 'direct ingest'}); Ctrl-C to stop"
    )
    try:
        stats = sim.run(args.duration)
    except KeyboardInterrupt:
        stats = sim.stats
    print(
        f"positions {stats.positions}, reports {stats.reports}, case steps {stats.actions}, "
        f"conflicts {stats.conflicts}, problems {len(stats.errors)}"
    )
    return EXIT_OK


def cmd_gateway(args) -> int:
    from console.gateway import serve

    return serve(_settings(args), args)


def cmd_device(args) -> int:
    """``device key ID``: a new key, printed once (stdout), or ``--clear`` to remove it.

    Like ``users``, an administrator's login (``--admin``) or the owner's
    credentials (``--as-owner``); the database has the last word on either.
    """
    from db.devices import clear_device_key, set_device_key

    engine = _engine(args, role="owner" if args.as_owner else "console")
    admin = _admin(args, engine)
    if args.clear:
        clear_device_key(engine, args.device, by=admin)
        print(f"key of {args.device} removed")
        return EXIT_OK
    key = set_device_key(engine, args.device, create=args.create, by=admin)
    print(key)
    print(
        f"the terminal's URL: http(s)://GATEWAY:5055/?id={args.device}&key={key} "
        "(shown only now; run again to replace it)",
        file=sys.stderr,
    )
    return EXIT_OK


WINDOW_COMMANDS = {
    "open": cmd_open,
    "screenshot": cmd_screenshot,
    "tiles": cmd_tiles,
    None: cmd_open,
}

COMMANDS = {
    "db": cmd_db,
    "users": cmd_users,
    "case": cmd_case,
    "gateway": cmd_gateway,
    "device": cmd_device,
    "demo": cmd_demo,
    "simulate": cmd_simulate,
    "district": cmd_district,
    "audit": cmd_audit,
    "grid": cmd_grid,
    "export-map": cmd_export_map,
    "camera": lambda args: _camera_cli().cmd_camera(args),
    "patrol": lambda args: _field_cli().cmd_patrol(args),
    "field": lambda args: _field_cli().cmd_field(args),
    "kpi": lambda args: _evaluation().cmd_kpi(args),
    "handover": lambda args: _evaluation().cmd_handover(args),
}


def main(argv: list[str] | None = None, window: WindowCommands | None = None) -> int:
    """Run one command line; ``window`` opens windows (given by ``main.py``)."""
    from console.credentials import remember, scrub

    for name in ("GRID_PASSWORD", "GRID_ADMIN_PASSWORD", "GRID_NEW_PASSWORD", "GRID_ENROL_KEY"):
        remember(os.environ.get(name))  # masked in every message below
    args = build_parser().parse_args(argv)
    lang = args.lang or os.environ.get("GRID_LANG", "zh")
    try:
        if args.command in WINDOW_COMMANDS:
            if window is None:
                raise BadInput(
                    "窗口命令请通过 main.py 运行。", "Window commands run through main.py."
                )
            return WINDOW_COMMANDS[args.command](args, window)
        return COMMANDS[args.command](args)
    except GridError as exc:
        print(scrub(exc.message(lang)), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line, never a traceback that may quote a secret
        from db.session import grid_error

        known = grid_error(exc)  # a driver's error: lost database, busy case, refused data
        if known is not None:
            print(scrub(known.message(lang)), file=sys.stderr)
            return known.exit_code
        print(scrub(_unexpected(exc, lang)), file=sys.stderr)
        return EXIT_UNEXPECTED


EXIT_UNEXPECTED = 1


def _unexpected(exc: BaseException, lang: str) -> str:
    """One line for an error nobody foresaw; the whole (scrubbed) trace with GRID_DEBUG=1."""
    if os.environ.get("GRID_DEBUG"):
        import traceback

        return "".join(traceback.format_exception(exc)).rstrip()
    orig = getattr(exc, "orig", exc)
    first = (str(orig).strip().splitlines() or [""])[0][:300]
    what = f"{type(orig).__name__}: {first}" if first else type(orig).__name__
    if lang == "zh":
        return f"内部错误（{what}）；设 GRID_DEBUG=1 可看详情。"
    return f"Internal error ({what}); set GRID_DEBUG=1 for details."
