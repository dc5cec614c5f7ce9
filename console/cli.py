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

from console.config import Settings, hall_timezone, workstation_name
from console.workflow import ACTION_NAMES, ROLE_LABELS, SEVERITIES, SOURCES
from db.errors import BadInput, Forbidden, GridError

EXIT_OK = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python main.py",
        description="网格指挥调度台 Grid Command Console. Without a command, opens the console.",
    )
    p.add_argument(
        "--database-url",
        help="shared PostgreSQL server (else GRID_DATABASE_URL, else the embedded server)",
    )
    p.add_argument(
        "--data-dir",
        help="where the embedded server keeps its data "
        "(else GRID_DATA_DIR, else the user's data directory)",
    )
    p.add_argument("--lang", choices=["zh", "en"], help="language of messages and the window")
    sub = p.add_subparsers(dest="command")

    op = sub.add_parser("open", help="open the console window (the default)")
    op.add_argument(
        "--no-simulate",
        action="store_true",
        help="on the embedded demo, do not run the simulator behind the window",
    )

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
    ca.add_argument("--worker")
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
    ds.add_argument("--json", action="store_true")

    sim = sub.add_parser("simulate", help="keep the demo district alive (patrols, cases)")
    sim.add_argument("--speed", type=float, default=1.0, help="how much faster life runs")
    sim.add_argument("--gateway", help="send positions to this gateway URL (OsmAnd protocol)")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
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

    sc = sub.add_parser("screenshot", help="render a view offscreen to a PNG")
    sc.add_argument("out")
    sc.add_argument("--view", default="console", choices=["console", "status"])
    sc.add_argument("--user", help="console view: whose console (default dispatcher)")
    sc.add_argument("--size", default="1280x800")
    return p


def _settings(args) -> Settings:
    return Settings.from_env(args.database_url, args.data_dir, args.lang)


def _engine(args, upgrade: bool = True):
    from console.bootstrap import open_database

    return open_database(_settings(args), upgrade=upgrade)


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
        print(resolve_url(s.database_url, s.data_dir))
        return EXIT_OK
    if args.db_command == "upgrade":
        from db import migrate

        engine = _engine(args, upgrade=False)
        rev = migrate.upgrade(engine)
        from db.reference import ensure_reference

        ensure_reference(engine)
        print(f"schema at {rev} ({redact(str(engine.url.render_as_string(False)))})")
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
    from db.users import add_user

    engine = _engine(args)
    if args.users_command == "add":
        pw = _password(f"password for {args.name}: ", confirm=True)
        actor = add_user(engine, args.name, args.role, pw, args.display_name, args.department)
        print(f"added {actor.name} ({actor.role})")
        return EXIT_OK
    from sqlalchemy import select

    from db.models import AppUser

    with engine.connect() as conn:
        rows = conn.execute(
            select(AppUser.name, AppUser.display_name, AppUser.role, AppUser.active)
            .where(AppUser.role != "system")
            .order_by(AppUser.name)
        ).all()
    if args.json:
        _print_json([dict(r._mapping) for r in rows])
    else:
        for r in rows:
            print(f"{r.name}\t{r.display_name}\t{r.role}\t{'active' if r.active else 'disabled'}")
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
    files = []
    for path in args.attach:
        try:
            files.append((Path(path).name, Path(path).read_bytes()))
        except OSError as exc:
            raise BadInput(
                f"无法读取附件 {path}：{exc.strerror}",
                f"Cannot read attachment {path}: {exc.strerror}",
            ) from None
    if files:
        params["attachments"] = files
    return params


def cmd_case(args) -> int:
    from db import case_queries

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


def cmd_open(args) -> int:
    from console.app import run_window

    settings = _settings(args)
    settings.simulate = not getattr(args, "no_simulate", False)
    return run_window(settings)


def cmd_screenshot(args) -> int:
    from console.app import screenshot

    try:
        w, h = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise BadInput(
            "尺寸格式应为 宽x高，例如 1920x1080。",
            "The size is WIDTHxHEIGHT, for example 1920x1080.",
        ) from None
    return screenshot(_settings(args), args.out, args.view, (w, h), args.user)


def cmd_district(args) -> int:
    engine = _engine(args)
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
    from db.demo_seed import seed_demo

    if not (1 <= args.days <= 366 and 1 <= args.per_day <= 20_000):
        raise BadInput(
            "天数须为 1–366，每日案件数 1–20000。", "Days must be 1–366 and cases per day 1–20,000."
        )
    summary = seed_demo(_engine(args), days=args.days, cases_per_day=args.per_day)
    if args.json:
        _print_json(summary.as_json())
        return EXIT_OK
    s = summary
    print(
        f"demo district {s.adcode}: {s.grids} grids, {s.workers} workers, {s.devices} "
        f"terminals, {s.cameras} cameras; {s.cases} cases ({s.open_cases} open), "
        f"{s.log_entries} log entries, in {s.seconds:.1f} s"
    )
    print("logins (user / role / password):")
    for name, role, password in s.users:
        print(f"  {name:<11} {role:<11} {password}")
    return EXIT_OK


def cmd_simulate(args) -> int:
    from console.simulator import Simulator

    if not (0 < args.speed <= 10_000):
        raise BadInput("速度倍数须在 0–10000 之间。", "The speed must be between 0 and 10000.")
    engine = _engine(args)
    sim = Simulator(
        engine, args.speed, args.gateway, not args.no_operators, args.cases_per_day
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


COMMANDS = {
    "db": cmd_db,
    "users": cmd_users,
    "case": cmd_case,
    "open": cmd_open,
    "screenshot": cmd_screenshot,
    "gateway": cmd_gateway,
    "demo": cmd_demo,
    "simulate": cmd_simulate,
    "district": cmd_district,
    "grid": cmd_grid,
    None: cmd_open,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    lang = args.lang or os.environ.get("GRID_LANG", "zh")
    try:
        return COMMANDS[args.command](args)
    except GridError as exc:
        print(exc.message(lang), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
