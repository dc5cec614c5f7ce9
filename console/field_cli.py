"""The field force's commands: ``patrol report|schedule|summarize`` and ``field at|gpx``
(see console/cli.py).

Kept beside the main command module so that module stays a table of commands; the work
is ``db.field`` (the data, the schedule through the database's administrator check) and
``maps.patrol`` (what counts as patrolling).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

from console.cli import EXIT_OK, _admin, _engine, _print_json
from db.errors import BadInput
from maps.patrol import RULES


def add_parser(sub) -> None:
    """The ``patrol`` command and its sub-commands (called by ``console.cli``)."""
    pp = sub.add_parser("patrol", help="patrol compliance (巡查) of the field force")
    ps = pp.add_subparsers(dest="patrol_command", required=True)
    pr = ps.add_parser("report", help="sessions, coverage, time outside, compliance per day")
    pr.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD (hall's zone)")
    pr.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD, exclusive")
    pr.add_argument("--street", help="one street's workers (street code)")
    pr.add_argument("--rule", default="daily", help="daily (default) or quanke (全科网格)")
    pr.add_argument("--min-patrols", type=int, help="patrols a day needs")
    pr.add_argument("--min-minutes", type=float, help="minutes a session needs to be a patrol")
    pr.add_argument("--days-per-week", type=int, help="complying days a week needs")
    pr.add_argument("--json", action="store_true")
    sc = ps.add_parser("schedule", help="set a worker's duty schedule (an administrator's)")
    sc.add_argument("worker", help="the worker's code")
    sc.add_argument("--days", help="ISO weekdays: 1-5 or 1,3,5")
    sc.add_argument("--hours", help="HH:MM-HH:MM (end before start: overnight)")
    sc.add_argument("--clear", action="store_true", help="remove the schedule")
    sc.add_argument("--admin", help="administrator's login (password in GRID_ADMIN_PASSWORD)")
    sc.add_argument("--as-owner", action="store_true", help="act with the owner's credentials")
    su = ps.add_parser("summarize", help="keep the patrol figures of closed days (patrol_day)")
    su.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD (hall's zone)")
    su.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD, exclusive")
    su.add_argument("--as-owner", action="store_true",
                    help="act with the owner's credentials (default: the gateway's role)")

    fp = sub.add_parser("field", help="where the field force was: who was at a place, GPX")
    fs = fp.add_subparsers(dest="field_command", required=True)
    at = fs.add_parser("at", help="who was within a radius of a point during a window")
    at.add_argument("--lon", type=float, required=True, help="WGS-84 longitude")
    at.add_argument("--lat", type=float, required=True, help="WGS-84 latitude")
    at.add_argument("--radius", type=float, default=200.0, help="metres (default 200)")
    at.add_argument("--from", dest="time_from", required=True,
                    help="ISO time (without a zone: the hall's)")
    at.add_argument("--to", dest="time_to", required=True, help="ISO time, inclusive")
    at.add_argument("--json", action="store_true")
    gx = fs.add_parser("gpx", help="a worker's trail in a window as a GPX 1.1 file")
    gx.add_argument("worker", help="the worker's code")
    gx.add_argument("--from", dest="time_from", required=True,
                    help="ISO time (without a zone: the hall's)")
    gx.add_argument("--to", dest="time_to", required=True, help="ISO time, inclusive")
    gx.add_argument("out", help="the .gpx file to write")


def _lang(args) -> str:
    return args.lang or os.environ.get("GRID_LANG", "zh")


def cmd_patrol(args) -> int:
    if args.patrol_command == "schedule":
        return _schedule(args)
    if args.patrol_command == "summarize":
        return _summarize(args)
    from db.field import patrol_report
    from db.metrics import parse_date

    start, end = parse_date(args.date_from, "--from"), parse_date(args.date_to, "--to")
    if args.rule not in RULES:
        raise BadInput(f"未知巡查规则“{args.rule}”，可用：{', '.join(RULES)}。",
                       f"Unknown patrol rule '{args.rule}'; use one of {', '.join(RULES)}.")
    for name in ("min_patrols", "min_minutes", "days_per_week"):
        value = getattr(args, name)
        if value is not None and not (0 <= value <= (7 if name == "days_per_week" else 10_000)):
            flag = "--" + name.replace("_", "-")
            raise BadInput(f"{flag} 超出范围：{value}。", f"{flag} is out of range: {value}.")
    rule = RULES[args.rule].with_changes(min_patrols=args.min_patrols,
                                         min_minutes=args.min_minutes,
                                         days_per_week=args.days_per_week)
    rep = patrol_report(_engine(args), start, end, args.street, rule)
    if args.json:
        _print_json(rep)
        return EXIT_OK
    zh = _lang(args) == "zh"
    print(f"{'巡查' if zh else 'patrol'} [{rep['from']}, {rep['to']}) "
          f"{'规则' if zh else 'rule'} {rule.name}: {rule.min_patrols}×≥{rule.min_minutes:g} min, "
          f"{rule.days_per_week}/{'周' if zh else 'week'}")
    head = (["网格员", "姓名", "网格", "达标天数", "应达标", "巡查分钟", "平均覆盖率", "达标"] if zh
            else ["worker", "name", "grid", "days_ok", "days_needed", "patrol_min",
                  "mean_coverage", "compliant"])
    print("\t".join(head))
    for w in rep["workers"]:
        cov = [d["coverage"] for d in w["days"] if d["coverage"] is not None]
        mean = f"{sum(cov) / len(cov):.0%}" if cov else "—"
        yes = ("是" if w["compliant"] else "否") if zh else ("yes" if w["compliant"] else "no")
        print("\t".join(str(x) for x in (w["worker"], w["name"], w["grid"], w["compliant_days"],
                                          w["required_days"], f"{w['patrol_minutes']:.0f}",
                                          mean, yes)))
    return EXIT_OK


def _schedule(args) -> int:
    from db.field import parse_days, parse_hours, set_schedule

    if args.clear:
        days, start, end = None, None, None
    else:
        if not args.days or not args.hours:
            raise BadInput("请给出 --days 与 --hours（或 --clear）。",
                           "Give --days and --hours (or --clear).")
        days = parse_days(args.days)
        start, end = parse_hours(args.hours)
    engine = _engine(args, role="owner" if args.as_owner else "console")
    set_schedule(engine, _admin(args, engine), args.worker, days, start, end)
    print("ok", file=sys.stderr)
    return EXIT_OK


def _summarize(args) -> int:
    from db.field import summarize_patrol_days
    from db.metrics import parse_date

    start, end = parse_date(args.date_from, "--from"), parse_date(args.date_to, "--to")
    engine = _engine(args, role="owner" if args.as_owner else "gateway")
    rows = summarize_patrol_days(engine, start, end)
    print(f"{rows}", file=sys.stderr)
    return EXIT_OK


def cmd_field(args) -> int:
    from db.field import parse_instant

    t0, t1 = parse_instant(args.time_from, "--from"), parse_instant(args.time_to, "--to")
    if args.field_command == "gpx":
        return _gpx(args, t0, t1)
    from db.clock import hall_timezone
    from db.field import who_was_at

    found = who_was_at(_engine(args), args.lon, args.lat, args.radius, t0, t1)
    tz = hall_timezone()
    if args.json:  # times in the hall's zone, as the patrol report gives them
        _print_json({"lon": args.lon, "lat": args.lat, "radius_m": args.radius,
                     "from": t0.astimezone(tz), "to": t1.astimezone(tz),
                     "workers": [{k: v.astimezone(tz) if isinstance(v, datetime) else v
                                  for k, v in h.items()} for h in found]})
        return EXIT_OK
    zh = _lang(args) == "zh"
    print(f"{'半径' if zh else 'within'} {args.radius:g} m {'内' if zh else 'of'} "
          f"{args.lon:.6f},{args.lat:.6f} [{t0.isoformat()}, {t1.isoformat()}]: "
          f"{len(found)} {'人' if zh else 'terminal(s)'}")
    print("\t".join(["网格员", "姓名", "网格", "终端", "首次", "末次", "定位数", "最近（米）"] if zh
                    else ["worker", "name", "grid", "device", "first", "last", "fixes",
                          "closest_m"]))
    for h in found:
        print("\t".join(str(x) for x in (
            h["worker"] or "—", h["name"] or "—", h["grid"] or "—", h["device"],
            h["first"].astimezone(tz).isoformat(timespec="seconds"),
            h["last"].astimezone(tz).isoformat(timespec="seconds"), h["fixes"],
            f"{h['closest_m']:.1f}")))
    return EXIT_OK


def _gpx(args, t0, t1) -> int:
    from pathlib import Path

    from db.field import worker_track
    from maps.replay import gpx

    out = Path(args.out)
    if not out.parent.is_dir():
        raise BadInput(f"目录不存在：{out.parent}", f"No such folder: {out.parent}")
    name, tracks = worker_track(_engine(args), args.worker, t0, t1)
    out.write_text(gpx(f"{args.worker} {name}", tracks.t, tracks.lon, tracks.lat),
                   encoding="utf-8")
    print(f"{len(tracks)} {'个定位' if _lang(args) == 'zh' else 'fixes'} → {out}",
          file=sys.stderr)
    return EXIT_OK
