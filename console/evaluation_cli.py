"""The evaluation's commands: ``kpi``, ``handover`` and ``case import`` (see console/cli.py).

Kept beside the main command module so that module stays a table of commands; the
options are parsed there, the work is ``db.metrics``, ``db.handover`` and
``db.history_import``, the layout ``console.kpi_export`` and ``console.handover_report``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from console.cli import EXIT_OK, _engine, _password, _print_json
from console.config import workstation_name
from db.clock import hall_timezone
from db.errors import BadInput, Forbidden

EXIT_REFUSED_LINES = 2


def _lang(args) -> str:
    return args.lang or os.environ.get("GRID_LANG", "zh")


# --- kpi ----------------------------------------------------------------------------------


def _public(row: dict) -> dict:
    """A report row as ``kpi --json`` prints it (without the rates' parts)."""
    return {k: v for k, v in row.items() if k != "parts"}


def cmd_kpi(args) -> int:
    from db.metrics import Period, check_metric, parse_date, report

    period = Period(parse_date(args.date_from, "--from"), parse_date(args.date_to, "--to"))
    if args.rank_by:
        check_metric(args.rank_by)
    engine = _engine(args)
    lang = _lang(args)
    if args.xlsx or args.pdf:
        from console.kpi_export import gather, write_pdf, write_xlsx

        ev = gather(engine, period, rank_by=args.rank_by)
        if args.xlsx:
            print(f"xlsx: {write_xlsx(ev, args.xlsx, lang)}", file=sys.stderr)
        if args.pdf:
            print(f"pdf: {write_pdf(ev, args.pdf, lang)}", file=sys.stderr)
        rep = ev.reports[args.by]
    else:
        rep = report(engine, period, args.by, args.rank_by)
    if args.json:
        _print_json({**rep, "rows": [_public(r) for r in rep["rows"]]})
        return EXIT_OK
    _print_table(rep, lang)
    return EXIT_OK


def _print_table(rep: dict, lang: str) -> None:
    from console.kpi_export import _fmt, label
    from db.metrics import METRICS

    zh = lang == "zh"
    print(f"{'综合评价' if zh else 'evaluation'} [{rep['from']}, {rep['to']}) "
          f"{'分组' if zh else 'by'} {label(rep['by'], lang)}")
    cols = ["rank", "key", "name", *METRICS]
    print("\t".join(label(c, lang) if c in METRICS else c for c in cols))
    for row in rep["rows"]:
        print("\t".join(
            str(row.get(c) if row.get(c) is not None else "—") if c in ("rank", "key", "name")
            else _fmt(c, row.get(c), lang) for c in cols))


# --- case import ----------------------------------------------------------------------------


def cmd_case_import(args) -> int:
    from db.history_import import import_history

    lang = _lang(args)
    engine = _engine(args, role="owner")
    summary = import_history(engine, args.file, dry_run=args.dry_run)
    for refusal in summary.refused:
        print(refusal.message(lang), file=sys.stderr)
    if args.json:
        _print_json(summary.as_json())
    else:
        print(summary.line(lang))
    return EXIT_REFUSED_LINES if summary.refused else EXIT_OK


# --- handover -------------------------------------------------------------------------------


def _shift(args) -> tuple[datetime, datetime]:
    tz = hall_timezone()
    if args.shift_end:
        try:
            end = datetime.fromisoformat(args.shift_end.strip())
        except ValueError:
            raise BadInput(
                f"--shift-end 须为时间（例如 2026-11-21T08:00），收到“{args.shift_end}”。",
                f"--shift-end must be a time (e.g. 2026-11-21T08:00), got '{args.shift_end}'.",
            ) from None
        if end.tzinfo is None:
            end = end.replace(tzinfo=tz)
    else:
        end = datetime.now(tz)
    if not (0 < args.hours <= 48):
        raise BadInput("--hours 须在 0–48 之间。", "--hours must be between 0 and 48.")
    return end - timedelta(hours=args.hours), end


def _leader(args, engine):
    from db.users import authenticate

    if not args.user:
        raise Forbidden("交接班需要值班长登录：--user 用户名（密码在 GRID_PASSWORD）。",
                        "Handing over needs a duty leader's login: --user NAME "
                        "(password in GRID_PASSWORD).")
    try:
        password = _password(f"password for {args.user}: ")
    except BadInput as exc:
        raise Forbidden(exc.zh, exc.en) from None
    return authenticate(engine, args.user, password, workstation_name())


def cmd_handover(args) -> int:
    from console.handover_report import text_lines, write_pdf
    from db import handover

    lang = _lang(args)
    if args.notes is not None and args.ack:
        raise BadInput("--notes（交班）与 --ack（接班）不能同时使用。",
                       "--notes (hand over) and --ack (take over) are two steps.")
    engine = _engine(args)
    if args.ack:
        actor = _leader(args, engine)
        hid = handover.acknowledge(engine, actor, args.id, "")
        print(f"handover {hid} acknowledged by {actor.display_name}")
        return EXIT_OK
    start, end = _shift(args)
    report = handover.shift_report(engine, start, end)
    outgoing = ""
    if args.notes is not None:
        actor = _leader(args, engine)
        hid = handover.submit(engine, actor, start, end, args.notes, report)
        outgoing = actor.display_name
        print(f"handover {hid} submitted by {actor.display_name}", file=sys.stderr)
    if args.pdf:
        write_pdf(report, args.pdf, args.notes or "", outgoing, lang)
        print(f"pdf: {args.pdf}", file=sys.stderr)
    if args.json:
        _print_json(handover.summary_json(report))
    else:
        for line in text_lines(report, args.notes, lang):
            print(line)
    return EXIT_OK
