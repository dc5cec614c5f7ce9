"""Every format terminals send is stored with the right time, place, speed and battery.

Real HTTP on loopback into a real gateway and a real database: each test
sends what a terminal sends and reads back what ``positions`` holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from tests.gateway_support import (
    Client,
    add_devices,
    gateway,  # noqa: F401  (fixture)
    position_rows,
)

BASE = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
EPOCH = int(BASE.timestamp())


@pytest.fixture
def client(gateway, engine):  # noqa: F811
    add_devices(engine, ["t1", "t2", "t3"])
    c = Client(gateway.port)
    yield c
    c.close()


def stored(gateway, engine, device="t1") -> list[dict]:  # noqa: F811
    assert gateway.wait_drained(10)
    return position_rows(engine, device)


def test_osmand_query_get_with_every_field(gateway, engine, client):  # noqa: F811
    status, body = client.get(
        id="t1",
        lat="39.9042",
        lon="116.4074",
        timestamp=str(EPOCH),
        speed="10",
        bearing="90.5",
        altitude="48.2",
        accuracy="5",
        batt="81",
        hdop="1.2",
        charge="true",
        driverUniqueId="00123",
        note="巡查中",
    )
    assert (status, body) == (200, "")
    [row] = stored(gateway, engine)
    assert row["ts"] == BASE
    assert (row["lat"], row["lon"]) == (39.9042, 116.4074)
    assert row["speed_kmh"] == pytest.approx(18.52, abs=1e-4)  # 10 knots
    assert row["course"] == pytest.approx(90.5)
    assert row["altitude"] == pytest.approx(48.2, abs=1e-4)
    assert row["accuracy"] == 5 and row["battery"] == 81
    assert row["attributes"] == {
        "hdop": 1.2,
        "charge": True,
        "driverUniqueId": "00123",  # leading zeros: stays text
        "note": "巡查中",
    }


@pytest.mark.parametrize(
    "stamp",
    [
        str(EPOCH),  # Unix seconds
        str(EPOCH * 1000),  # Unix milliseconds
        BASE.strftime("%Y-%m-%dT%H:%M:%SZ"),
        BASE.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        BASE.strftime("%Y-%m-%d %H:%M:%S"),  # space, no zone: UTC
        BASE.strftime("%Y-%m-%dT%H:%M:%S"),
        (BASE + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        (BASE - timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S-05:00"),
    ],
    # Named by format, not by value: the stamps move with the clock, and parallel
    # workers must collect the same test ids.
    ids=["unix-s", "unix-ms", "iso-z", "iso-ms-z", "space-utc", "iso-naive", "iso+08", "space-05"],
)
def test_every_time_format_lands_at_the_same_utc_instant(gateway, engine, client, stamp):  # noqa: F811
    # quote() encodes "+" as %2B and " " as %20: the zone survives.
    status, body = client.request(
        "GET", f"/?id=t1&lat=39.9&lon=116.4&timestamp={quote(stamp, safe='')}"
    )
    assert status == 200, body
    [row] = stored(gateway, engine)
    assert row["ts"] == BASE


def test_form_encoded_plus_for_space_and_unencoded_plus_in_zone(gateway, engine, client):  # noqa: F811
    local = (BASE + timedelta(hours=8)).strftime("%Y-%m-%d+%H:%M:%S")
    # "+" is a space in a query: 2026-11-21+18:00:00 is "2026-11-21 18:00:00" (UTC, no zone).
    assert client.request("GET", f"/?id=t1&lat=39.9&lon=116.4&timestamp={local}")[0] == 200
    # A zone sent unencoded ("+08:00" arrives as " 08:00") is still understood.
    zoned = (BASE + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    assert client.request("GET", f"/?id=t2&lat=39.9&lon=116.4&timestamp={zoned}")[0] == 200
    assert stored(gateway, engine, "t1")[0]["ts"] == BASE + timedelta(hours=8)
    assert stored(gateway, engine, "t2")[0]["ts"] == BASE


def test_location_parameter_deviceid_and_heading(gateway, engine, client):  # noqa: F811
    status, _ = client.get(
        deviceid="t2", location="31.2304,121.4737", timestamp=str(EPOCH), heading="-1"
    )
    assert status == 200
    [row] = stored(gateway, engine, "t2")
    assert (row["lat"], row["lon"]) == (31.2304, 121.4737)
    assert row["course"] is None  # -1: the terminal does not know its heading


def test_post_form_body_and_post_with_query_only(gateway, engine, client):  # noqa: F811
    assert client.post_form(id="t1", lat="39.91", lon="116.41", timestamp=str(EPOCH))[0] == 200
    path = f"/?id=t1&lat=39.92&lon=116.42&timestamp={EPOCH + 60}&speed=0"
    assert client.request("POST", path, b"", {"Content-Length": "0"})[0] == 200
    rows = stored(gateway, engine)
    assert [(r["lat"], r["lon"]) for r in rows] == [(39.91, 116.41), (39.92, 116.42)]
    assert rows[1]["speed_kmh"] == 0


def test_missing_timestamp_means_now(gateway, engine, client):  # noqa: F811
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert client.get(id="t1", lat="39.9", lon="116.4")[0] == 200
    [row] = stored(gateway, engine)
    assert before <= row["ts"] <= datetime.now(UTC) + timedelta(seconds=1)


def traccar_json(device: str, when: datetime, **overrides) -> dict:
    location = {
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "coords": {
            "latitude": 39.9163,
            "longitude": 116.3972,
            "accuracy": 4.5,
            "speed": 2.5,
            "heading": 271.3,
            "altitude": 51.0,
            "speed_accuracy": 0.8,
            "heading_accuracy": 12.0,
            "altitude_accuracy": 3.0,
            "ellipsoidal_altitude": 42.1,
        },
        "is_moving": True,
        "event": "motionchange",
        "odometer": 1534.2,
        "uuid": "b1c1-42",
        "mock": False,
        "activity": {"type": "walking", "confidence": 87},
        "battery": {"level": 0.55, "is_charging": False},
        "extras": {"shift": "早班"},
    }
    location.update(overrides)
    return {"location": location, "device_id": device}


def test_traccar_client_json(gateway, engine, client):  # noqa: F811
    status, body = client.post_json(traccar_json("t3", BASE))
    assert (status, body) == (200, "")
    [row] = stored(gateway, engine, "t3")
    assert row["ts"] == BASE
    assert (row["lat"], row["lon"]) == (39.9163, 116.3972)
    assert row["speed_kmh"] == pytest.approx(9.0, abs=1e-4)  # 2.5 m/s
    assert row["course"] == pytest.approx(271.3, abs=1e-4)
    assert row["altitude"] == 51.0 and row["accuracy"] == 4.5
    assert row["battery"] == pytest.approx(55.0)
    attrs = row["attributes"]
    assert attrs["charge"] is False and attrs["is_moving"] is True
    assert attrs["event"] == "motionchange" and attrs["odometer"] == 1534.2
    assert attrs["activity"] == {"type": "walking", "confidence": 87}
    assert attrs["extras"] == {"shift": "早班"}
    assert attrs["speed_accuracy"] == 0.8 and attrs["ellipsoidal_altitude"] == 42.1
    assert attrs["uuid"] == "b1c1-42" and attrs["mock"] is False


def test_json_unknown_speed_and_battery_and_a_buffered_list(gateway, engine, client):  # noqa: F811
    first = traccar_json("t3", BASE)["location"]
    second = traccar_json("t3", BASE + timedelta(seconds=30))["location"]
    second["coords"]["speed"] = -1
    second["battery"] = {"level": -1, "is_charging": True}
    doc = {"location": [first, second], "device_id": "t3", "app_version": "9.2"}
    assert client.post_json(doc)[0] == 200
    rows = stored(gateway, engine, "t3")
    assert [r["ts"] for r in rows] == [BASE, BASE + timedelta(seconds=30)]
    assert rows[1]["speed_kmh"] is None and rows[1]["battery"] is None
    assert rows[1]["attributes"]["charge"] is True
    assert rows[0]["attributes"]["app_version"] == "9.2"


def test_json_device_id_from_the_query(gateway, engine, client):  # noqa: F811
    doc = traccar_json("ignored", BASE)
    del doc["device_id"]
    assert client.post_json(doc, path="/?id=t2")[0] == 200
    assert len(stored(gateway, engine, "t2")) == 1


def test_repeated_report_is_stored_once(gateway, engine, client):  # noqa: F811
    for _ in range(3):
        assert client.get(id="t1", lat="39.9", lon="116.4", timestamp=str(EPOCH))[0] == 200
    doc = traccar_json("t1", BASE + timedelta(seconds=5))
    assert client.post_json(doc)[0] == 200
    assert client.post_json(doc)[0] == 200
    assert len(stored(gateway, engine)) == 2
    assert gateway.stats()["duplicates"] == 3


def test_latest_position_is_the_newest_fix_not_the_last_arrival(gateway, engine, client):  # noqa: F811
    from sqlalchemy import text

    assert client.get(id="t1", lat="39.95", lon="116.45", timestamp=str(EPOCH + 120))[0] == 200
    assert gateway.wait_drained(10)
    assert client.get(id="t1", lat="39.90", lon="116.40", timestamp=str(EPOCH))[0] == 200
    assert gateway.wait_drained(10)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT lp.ts, lp.lat FROM latest_position lp "
                "JOIN device d ON d.id = lp.device_id WHERE d.identifier = 't1'"
            )
        ).one()
    assert row.ts == BASE + timedelta(seconds=120) and row.lat == 39.95
    assert len(position_rows(engine, "t1")) == 2


def test_json_body_is_kept_as_json_in_attributes(gateway, engine, client):  # noqa: F811
    doc = traccar_json("t1", BASE, extras={"nested": {"list": [1, "二", None]}})
    assert client.post_json(doc)[0] == 200
    [row] = stored(gateway, engine)
    assert row["attributes"]["extras"] == {"nested": {"list": [1, "二", None]}}
    json.dumps(row["attributes"])  # round-trips
