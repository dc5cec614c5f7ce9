"""``python main.py camera add|list|edit|disable|enable|import``: the cameras of the wall.

Listing is any console's; changing is an administrator's (``--admin NAME`` with the
password in ``GRID_ADMIN_PASSWORD``, or ``--as-owner``), and the database decides
(``grid_camera_save``, revision 0007).  Stream addresses are printed with any
password in them masked.
"""

from __future__ import annotations

import argparse

from console.credentials import scrub
from db.errors import Forbidden

EXIT_OK = 0


def add_parser(sub) -> None:
    """The ``camera`` command and its sub-commands (called by ``console.cli``)."""
    cp = sub.add_parser("camera", help="cameras of the video wall: list, add, edit, disable, "
                        "import a CSV (an administrator's)")
    cs = cp.add_subparsers(dest="camera_command", required=True)
    cl = cs.add_parser("list", help="cameras by code (enabled ones unless --all)")
    cl.add_argument("--all", action="store_true", help="disabled cameras too")
    cl.add_argument("--group", help="only this group's cameras")
    cl.add_argument("--json", action="store_true")
    ca = cs.add_parser("add", help="add a camera")
    ca.add_argument("code")
    ca.add_argument("--name", required=True)
    ca.add_argument("--lon", required=True, help="WGS-84 longitude")
    ca.add_argument("--lat", required=True, help="WGS-84 latitude")
    ce = cs.add_parser("edit", help="change the fields given")
    ce.add_argument("code")
    ce.add_argument("--name")
    ce.add_argument("--lon")
    ce.add_argument("--lat")
    for p in (ca, ce):
        p.add_argument("--heading", help="view direction, degrees clockwise from north")
        p.add_argument("--view-angle", help="horizontal view angle, degrees")
        p.add_argument("--url", help="main stream (rtsp://, http(s):// MJPEG, a file …)")
        p.add_argument("--sub-url", help="sub-stream, shown in the grid of the wall")
        p.add_argument("--group", action="append", default=None,
                       help="a group (street, key site, event); repeatable")
        p.add_argument("--json", action="store_true")
    ca.add_argument("--disabled", action="store_true", help="add it disabled")
    for verb in ("disable", "enable"):
        cv = cs.add_parser(verb, help=f"{verb} a camera (it leaves/returns to every wall)")
        cv.add_argument("code")
    ci = cs.add_parser("import", help="add or update cameras from a CSV, all lines or none "
                       "(header: code,name,lon,lat[,heading,view_angle,url,sub_url,groups,"
                       "enabled]; groups split on ;)")
    ci.add_argument("file")
    ci.add_argument("--json", action="store_true")
    for child in (ca, ce, ci, cs.choices["disable"], cs.choices["enable"]):
        child.add_argument("--admin", help="administrator acting (password from "
                           "GRID_ADMIN_PASSWORD)")
        child.add_argument("--as-owner", action="store_true",
                           help="act with the database URL's own credentials (the owner's)")


def _line(c: dict) -> str:
    heading = "-" if c["heading"] is None else f"{c['heading']:g}°"
    angle = "" if c["view_angle"] is None else f"/{c['view_angle']:g}°"
    state = "" if c["enabled"] else "\t(disabled)"
    return (f"{c['code']}\t{c['name']}\t{c['lon']:.6f},{c['lat']:.6f}\t{heading}{angle}\t"
            f"{c['grid_code'] or '-'}\t{';'.join(c['groups']) or '-'}\t"
            f"{scrub(c['url']) or '-'}\t{scrub(c['sub_url']) or '-'}{state}")


def _public(c: dict) -> dict:
    out = {k: v for k, v in c.items() if k not in ("id", "updated_at")}
    out["url"], out["sub_url"] = scrub(c["url"]), scrub(c["sub_url"])
    out["updated_at"] = c["updated_at"].isoformat() if c.get("updated_at") else None
    return out


def cmd_camera(args: argparse.Namespace) -> int:
    from console import cli
    from db import cameras

    sub = args.camera_command
    if sub == "list":
        rows = cameras.list_cameras(cli._engine(args), include_disabled=args.all,
                                    group=args.group)
        if args.json:
            cli._print_json([_public(c) for c in rows])
        else:
            for c in rows:
                print(_line(c))
        return EXIT_OK
    engine = cli._engine(args, role="owner" if args.as_owner else "console")
    try:
        admin = cli._admin(args, engine)
    except Forbidden as exc:
        if exc.zh.startswith("只有管理员"):  # a login that is not an administrator's
            raise Forbidden("只有管理员可以管理摄像头。",
                            "Only an administrator may manage cameras.") from None
        raise
    if sub == "import":
        summary = cameras.import_cameras(engine, admin, args.file)
        if args.json:
            cli._print_json(summary.as_json())
        else:
            print(f"{summary.lines} camera(s): {summary.added} added, {summary.updated} updated")
        return EXIT_OK
    if sub in ("disable", "enable"):
        cam = cameras.set_camera_enabled(engine, admin, args.code, sub == "enable")
        print(_line(cam))
        return EXIT_OK
    fields = {"name": args.name, "lon": args.lon, "lat": args.lat, "heading": args.heading,
              "view_angle": args.view_angle, "url": args.url, "sub_url": args.sub_url,
              "groups": args.group}
    if sub == "add":
        cam = cameras.add_camera(engine, admin, code=args.code, enabled=not args.disabled,
                                 **fields)
    else:
        cam = cameras.edit_camera(engine, admin, args.code, **fields)
    if args.json:
        cli._print_json(_public(cam))
    else:
        print(_line(cam))
    return EXIT_OK
