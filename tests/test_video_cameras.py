"""Cameras: an administrator's to change, any console's to read; the nearest to a case.

README (Video wall, "Cameras"): add, edit, disable in the console or with
``camera add|list|edit|disable|import``; the database refuses anyone but an
administrator (``grid_camera_save``); a CSV is imported whole or not at all, its bad
line named.  The nearest cameras of a point come with those whose view covers it
first; the geometry is worked out by hand here.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from sqlalchemy import text

from db.cameras import (
    add_camera,
    edit_camera,
    import_cameras,
    list_cameras,
    nearest_cameras,
    set_camera_enabled,
)
from db.errors import BadInput, Forbidden, NotFound
from db.users import authenticate
from maps.camera_view import angle_between, bearing_deg, covers, rank_cameras
from tests.cli_runner import cli
from tests.conftest import PASSWORD

M_PER_DEG_LAT = 111_195.0  # metres per degree of latitude on the console's sphere


@pytest.fixture
def console(db_url):
    from db.engine import make_engine, role_url

    if os.environ.get("GRID_DATABASE_URL"):
        pytest.skip("a shared server's grid_console needs its password")
    eng = make_engine(role_url(db_url, "grid_console"))
    yield eng
    eng.dispose()


def login(console, name: str):
    return authenticate(console, name, PASSWORD, f"ws-{name}")


def cameras_table(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM camera ORDER BY code")).all()


# --- geometry (maps/) ----------------------------------------------------------------


def test_bearings_and_the_view_wedge():
    assert bearing_deg(116.4, 39.9, 116.4, 39.91) == pytest.approx(0.0, abs=1e-9)  # north
    assert bearing_deg(116.4, 39.9, 116.41, 39.9) == pytest.approx(90.0, abs=0.01)  # east
    assert bearing_deg(116.4, 39.9, 116.4, 39.89) == pytest.approx(180.0, abs=1e-9)
    assert bearing_deg(116.4, 39.9, 116.39, 39.9) == pytest.approx(270.0, abs=0.01)
    assert angle_between(350, 10) == 20 and angle_between(10, 350) == 20
    assert covers(90, 60, 119.9) and not covers(90, 60, 120.1)  # ±30° around east
    assert covers(0, 90, 315) and not covers(0, 90, 314)  # the wedge wraps north
    assert not covers(None, 60, 0)  # no direction known: it covers nothing by direction
    assert covers(123, 360, 300)  # a 360° camera sees all round


def test_the_covering_cameras_come_first_then_the_nearest():
    lon, lat = 116.40, 39.90
    k = M_PER_DEG_LAT * math.cos(math.radians(lat))
    cams = [
        # 50 m north of the point, looking north (away): in range, does not see it.
        {"code": "N50", "lon": lon, "lat": lat + 50 / M_PER_DEG_LAT, "heading": 0,
         "view_angle": 60},
        # 120 m east, looking west (toward it): sees it.
        {"code": "E120", "lon": lon + 120 / k, "lat": lat, "heading": 270, "view_angle": 60},
        # 80 m south, looking north (toward it): sees it, and nearer than E120.
        {"code": "S80", "lon": lon, "lat": lat - 80 / M_PER_DEG_LAT, "heading": 0,
         "view_angle": 40},
        # 400 m west: out of a 300 m range.
        {"code": "W400", "lon": lon - 400 / k, "lat": lat, "heading": 90, "view_angle": 60},
        # 30 m east, no direction known: ranked among those that do not see it.
        {"code": "E30", "lon": lon + 30 / k, "lat": lat, "heading": None, "view_angle": None},
    ]
    ranked = rank_cameras(lon, lat, cams, radius_m=300)
    assert [c.code for c in ranked] == ["S80", "E120", "E30", "N50"]
    assert [c.covers for c in ranked] == [True, True, False, False]
    assert ranked[0].distance_m == pytest.approx(80, abs=0.5)
    assert ranked[1].bearing_deg == pytest.approx(270, abs=0.1)  # from the camera to it


def test_nearest_cameras_from_the_database(engine):
    lon, lat = 116.41, 39.92
    k = M_PER_DEG_LAT * math.cos(math.radians(lat))
    add_camera(engine, None, code="LOOKS", name="朝向案件", lon=lon + 150 / k, lat=lat,
               heading=270, view_angle=50)
    add_camera(engine, None, code="NEAR", name="背向案件", lon=lon + 20 / k, lat=lat,
               heading=90, view_angle=50)
    add_camera(engine, None, code="OFF", name="停用", lon=lon, lat=lat, heading=0,
               enabled=False)
    add_camera(engine, None, code="FAR", name="远处", lon=lon + 900 / k, lat=lat, heading=270)
    got = nearest_cameras(engine, lon, lat, radius_m=300)
    assert [c["code"] for c in got] == ["LOOKS", "NEAR"]  # disabled and far ones left out
    assert got[0]["covers"] and not got[1]["covers"]
    assert got[0]["distance_m"] == pytest.approx(150, abs=1)


# --- who may change cameras ----------------------------------------------------------


def test_an_administrator_adds_edits_disables_and_enables(engine, console):
    admin = login(console, "admin1")
    cam = add_camera(console, admin, code="CAM-A", name="东单路口", lon="116.418",
                     lat="39.915", heading="90", view_angle="60",
                     url="rtsp://cam.hall/main", sub_url="rtsp://cam.hall/sub",
                     groups="东单;重点部位")
    assert cam["groups"] == ["东单", "重点部位"] and cam["enabled"]
    cam = edit_camera(console, admin, "CAM-A", name="东单北口", heading=180)
    assert (cam["name"], cam["heading"], cam["url"]) == ("东单北口", 180.0, "rtsp://cam.hall/main")
    assert set_camera_enabled(console, admin, "CAM-A", False)["enabled"] is False
    assert [c["code"] for c in list_cameras(console)] == []
    assert [c["code"] for c in list_cameras(console, include_disabled=True)] == ["CAM-A"]
    assert set_camera_enabled(console, admin, "CAM-A", True)["enabled"] is True
    assert [c["code"] for c in list_cameras(console, group="重点部位")] == ["CAM-A"]


@pytest.mark.parametrize("who", ["dispatcher1", "leader1", "wall1"])
def test_nobody_else_changes_a_camera(engine, console, who):
    add_camera(engine, None, code="CAM-B", name="既有", lon=116.41, lat=39.92)
    before = cameras_table(engine)
    actor = login(console, who)
    with pytest.raises(Forbidden):
        add_camera(console, actor, code="CAM-X", name="新", lon=116.41, lat=39.92)
    with pytest.raises(Forbidden):
        edit_camera(console, actor, "CAM-B", name="改")
    with pytest.raises(Forbidden):
        set_camera_enabled(console, actor, "CAM-B", False)
    assert cameras_table(engine) == before


def test_a_console_cannot_write_the_camera_table_itself(engine, console):
    add_camera(engine, None, code="CAM-B", name="既有", lon=116.41, lat=39.92)
    admin = login(console, "admin1")
    before = cameras_table(engine)
    with console.connect() as conn:
        conn.execute(text("SELECT set_config('grid.session', :t, false)"), {"t": admin.token})
        with pytest.raises(Exception) as err:
            conn.execute(text("UPDATE camera SET url = 'rtsp://evil/' WHERE code = 'CAM-B'"))
    assert "permission denied" in str(err.value)
    assert cameras_table(engine) == before


@pytest.mark.parametrize("fields,what", [
    ({"code": "bad code!"}, "编号"),
    ({"name": ""}, "名称"),
    ({"lon": "181"}, "经度"),
    ({"lat": "abc"}, "纬度"),
    ({"heading": "360"}, "朝向"),
    ({"view_angle": "0"}, "视角"),
    ({"url": "javascript://x"}, "不支持"),
    ({"sub_url": "rtsp://a b"}, "无效"),
    ({"name": "路口\u202e口路"}, "控制字符"),  # a bidi override reverses what the wall shows
    ({"name": "路\u0085口"}, "控制字符"),
    ({"groups": "重点\u2066部位"}, "控制字符"),
])
def test_bad_camera_fields_are_one_clear_line_and_change_nothing(engine, console, fields, what):
    admin = login(console, "admin1")
    base = {"code": "CAM-OK", "name": "路口", "lon": 116.41, "lat": 39.92}
    before = cameras_table(engine)
    with pytest.raises(BadInput) as err:
        add_camera(console, admin, **{**base, **fields})
    assert what in err.value.zh and "\n" not in err.value.zh
    assert cameras_table(engine) == before


def test_a_code_is_added_once(engine, console):
    admin = login(console, "admin1")
    add_camera(console, admin, code="CAM-D", name="一", lon=116.41, lat=39.92)
    with pytest.raises(BadInput) as err:
        add_camera(console, admin, code="CAM-D", name="二", lon=116.41, lat=39.92)
    assert "已存在" in err.value.zh
    with pytest.raises(NotFound):
        edit_camera(console, admin, "CAM-NONE", name="x")


def test_a_csv_is_imported_whole_or_not_at_all(engine, console, tmp_path):
    admin = login(console, "admin1")
    add_camera(console, admin, code="CAM-1", name="旧名", lon=116.41, lat=39.92)
    good = tmp_path / "good.csv"
    good.write_text("\ufeffcode,name,lon,lat,heading,view_angle,url,sub_url,groups,enabled\n"
                    "CAM-1,新名,116.41,39.92,90,60,rtsp://a/main,rtsp://a/sub,东四;重点,true\n"
                    "CAM-2,二号,116.42,39.93,,,,,,false\n", "utf-8")
    summary = import_cameras(console, admin, good)
    assert (summary.added, summary.updated, summary.lines) == (1, 1, 2)
    rows = {c["code"]: c for c in list_cameras(console, include_disabled=True)}
    assert rows["CAM-1"]["name"] == "新名" and rows["CAM-1"]["groups"] == ["东四", "重点"]
    assert rows["CAM-2"]["enabled"] is False and rows["CAM-2"]["heading"] is None
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,lon,lat\nCAM-3,三号,116.41,39.92\nCAM-4,四号,500,39.92\n", "utf-8")
    before = cameras_table(engine)
    with pytest.raises(BadInput) as err:
        import_cameras(console, admin, bad)
    assert err.value.zh.startswith("第 3 行") and "经度" in err.value.zh
    assert cameras_table(engine) == before  # CAM-3 of line 2 is not there either
    twice = tmp_path / "twice.csv"
    twice.write_text("code,name,lon,lat\nCAM-5,五,116.41,39.92\nCAM-5,五,116.41,39.92\n")
    with pytest.raises(BadInput, match=r"twice|重复"):
        import_cameras(console, admin, twice)
    header = tmp_path / "header.csv"
    header.write_text("code,name,longitude,lat\n")
    with pytest.raises(BadInput) as err:
        import_cameras(console, admin, header)
    assert "lon" in err.value.en
    assert cameras_table(engine) == before


# --- the command line ----------------------------------------------------------------


def test_camera_commands_as_printed(db_url, tmp_path):
    env = {"GRID_ADMIN_PASSWORD": PASSWORD}
    r = cli(db_url, "camera add CAM-C --name 东华门 --lon 116.401 --lat 39.914 --heading 90 "
            "--view-angle 60 --url rtsp://user:secret@10.0.0.5/main --group 重点部位 "
            "--admin admin1", PASSWORD, **env)
    assert r.returncode == 0, r.stderr
    assert "secret" not in r.stdout and "***" in r.stdout  # a password in a URL is masked
    r = cli(db_url, "camera list --json", PASSWORD)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [c["code"] for c in listed] == ["CAM-C"] and "secret" not in r.stdout
    r = cli(db_url, "camera edit CAM-C --heading 400 --admin admin1", PASSWORD, **env)
    assert r.returncode == 2 and "朝向" in r.stderr and "Traceback" not in r.stderr
    r = cli(db_url, "camera disable CAM-C --admin admin1 --lang en", PASSWORD, **env)
    assert r.returncode == 0 and "(disabled)" in r.stdout
    r = cli(db_url, "camera disable CAM-C --admin dispatcher1", PASSWORD, **env)
    assert r.returncode == 4 and "管理员" in r.stderr
    csv_file = tmp_path / "cams.csv"
    csv_file.write_text("code,name,lon,lat\nCAM-E,甲,116.41,39.92\n", "utf-8")
    r = cli(db_url, f"camera import {csv_file} --admin admin1 --json", PASSWORD, **env)
    assert r.returncode == 0 and json.loads(r.stdout) == {"added": 1, "updated": 0, "lines": 1}
    r = cli(db_url, f"camera import {tmp_path / 'missing.csv'} --admin admin1", PASSWORD, **env)
    assert r.returncode == 2 and "不存在" in r.stderr


# --- the console's dialog ----------------------------------------------------------------


def test_the_administrator_manages_cameras_in_the_console(qtbot, engine, console, tmp_path):
    from widgets.video.panel import VideoPanel

    admin = login(console, "admin1")
    panel = VideoPanel(console, admin, "zh", keep_layout=False)
    qtbot.addWidget(panel)
    panel.start()
    assert panel.findChild(type(panel.wall.snapshot_button), "videoManageCameras") is not None
    dialog = panel.manage_cameras()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 0, timeout=5_000)
    for key, value in (("code", "CAM-G"), ("name", "东四路口"), ("lon", "116.41"),
                       ("lat", "39.92"), ("heading", "90"), ("groups", "东四;重点部位")):
        dialog.fields[key].setText(value)
    dialog.add_button.click()
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=10_000)
    qtbot.waitUntil(lambda: "CAM-G" in panel.directory.cameras, timeout=10_000)  # the wall's
    dialog.table.selectRow(0)
    dialog.fields["heading"].setText("400")
    dialog.save_button.click()
    qtbot.waitUntil(lambda: "朝向" in dialog.error.text(), timeout=10_000)
    assert list_cameras(engine)[0]["heading"] == 90.0  # the bad edit changed nothing
    dialog.toggle_button.click()
    qtbot.waitUntil(lambda: list_cameras(engine) == [], timeout=10_000)  # disabled
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("code,name,lon,lat\nCAM-H,乙,116.41,39.92\n", "utf-8")
    dialog.import_csv(str(csv_file))
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 2, timeout=10_000)
    dialog.close()
    panel.shutdown()


def test_only_an_administrator_sees_the_camera_dialog(qtbot, console):
    from widgets.video.panel import VideoPanel

    panel = VideoPanel(console, login(console, "dispatcher1"), "zh", keep_layout=False)
    qtbot.addWidget(panel)
    assert panel.findChild(type(panel.wall.snapshot_button), "videoManageCameras") is None
    panel.shutdown()
