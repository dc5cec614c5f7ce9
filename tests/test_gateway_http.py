"""The gateway over HTTP: refusals with reasons, limits, timeouts, keep-alive, back-pressure."""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from console.gateway.http import Limits
from tests.conftest import wait_for
from tests.gateway_support import (
    Client,
    add_devices,
    count_positions,
    gateway,  # noqa: F401  (fixture)
    raw_exchange,
    running_gateway,
    status_of,
)

EPOCH = int(time.time()) - 600


def q(device="t1", ts=EPOCH, **extra) -> str:
    from urllib.parse import urlencode

    return "/?" + urlencode({"id": device, "lat": "39.9", "lon": "116.4", "timestamp": ts, **extra})


@pytest.fixture
def client(gateway, engine):  # noqa: F811
    add_devices(engine, ["t1"])
    c = Client(gateway.port)
    yield c
    c.close()


REFUSALS = [
    ("/?lat=39.9&lon=116.4", "device id"),
    ("/?id=t1", "position"),
    ("/?id=t1&lat=39.9", "lat and lon"),
    ("/?id=t1&lat=91&lon=116.4", "latitude is out of range"),
    ("/?id=t1&lat=39.9&lon=-180.5", "longitude is out of range"),
    ("/?id=t1&lat=NaN&lon=116.4", "not a number"),
    ("/?id=t1&lat=39.9&lon=inf", "not a number"),
    ("/?id=t1&lat=0&lon=0", "no fix"),
    ("/?id=t1&lat=39.9&lon=116.4&timestamp=2100-01-01T00:00:00Z", "future"),
    (f"/?id=t1&lat=39.9&lon=116.4&timestamp={EPOCH + 3 * 86400}", "future"),
    (f"/?id=t1&lat=39.9&lon=116.4&timestamp={(EPOCH + 3 * 86400) * 1000}", "future"),
    ("/?id=t1&lat=39.9&lon=116.4&timestamp=915148800", "before 2000"),
    ("/?id=t1&lat=39.9&lon=116.4&timestamp=yesterday", "Unrecognised time"),
    ("/?id=t1&lat=39.9&lon=116.4&speed=fast", "speed is not a number"),
    ("/?id=t1&lat=39.9&lon=116.4&batt=250", "battery"),
    ("/?id=%FF%FE&lat=39.9&lon=116.4", "UTF-8"),
]


def test_refused_with_400_and_a_plain_reason(gateway, engine, client):  # noqa: F811
    for k, (path, reason) in enumerate(REFUSALS):
        status, body = client.request("GET", path)
        assert status == 400, path
        assert reason in body and " / " in body, body  # bilingual: 中文 / English
        assert "Traceback" not in body
        assert client.request("GET", q(ts=EPOCH + k))[0] == 200  # same connection, still served
    assert gateway.wait_drained(5) and count_positions(engine) == len(REFUSALS)


def test_json_refusals(gateway, client):  # noqa: F811
    post = lambda body: client.request(  # noqa: E731
        "POST", "/", body, {"Content-Type": "application/json"}
    )
    assert post(b"{not json")[0] == 400
    assert post(b'{"device_id": "t1"}')[0] == 400
    assert (
        post(b'{"device_id": "t1", "location": {"coords": {"latitude": NaN, "longitude": 1}}}')[0]
        == 400
    )
    assert (
        post(b'{"device_id":"t1","location":{"coords":{"latitude":1e999,"longitude":1}}}')[0] == 400
    )
    assert post(b"[" * 50000 + b"]" * 50000)[0] in (400, 413)
    assert (
        post(
            b'{"device_id": "t1", "location": {"coords": {"latitude": 39.9, '
            b'"longitude": 116.4}, "extras": {"x": "\\u0000"}}}'
        )[0]
        == 400
    )
    assert (
        post(
            b'{"device_id": "t1", "location": {"coords": {"latitude": 39.9, '
            b'"longitude": 116.4}, "extras": {"x": "\\ud800"}}}'
        )[0]
        == 400
    )
    assert post(b"\xff\xfe{}")[0] == 400


def test_unknown_device_is_404_unless_registering(engine, tmp_path):
    with running_gateway(engine, tmp_path / "q") as gw:
        c = Client(gw.port)
        status, body = c.request("GET", q("stranger"))
        assert status == 404 and "stranger" in body
        assert c.request("GET", q("stranger"))[0] == 404  # remembered, still refused
        c.close()
    with running_gateway(engine, tmp_path / "q2", register_unknown=True) as gw:
        c = Client(gw.port)
        assert c.request("GET", q("stranger"))[0] == 200
        assert gw.wait_drained(5)
        c.close()
    with engine.connect() as conn:
        row = conn.execute(text("SELECT worker_id FROM device WHERE identifier = 'stranger'")).one()
    assert row.worker_id is None and count_positions(engine) == 1


def test_device_registered_later_is_accepted_after_the_unknown_ttl(engine, tmp_path):
    with running_gateway(engine, tmp_path / "q", unknown_ttl=0.2) as gw:
        c = Client(gw.port)
        assert c.request("GET", q("late"))[0] == 404
        assert c.request("GET", q("late"))[0] == 404  # remembered as unknown
        add_devices(engine, ["late"])
        # Once the gateway stops remembering it as unknown, it asks the database again.
        assert wait_for(lambda: not gw.directory.recently_unknown("late"), 5)
        assert c.request("GET", q("late"))[0] == 200
        c.close()


def test_body_over_the_limit_is_413_without_reading_it(gateway, client):  # noqa: F811
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000\r\n\r\n"
    )
    reply = raw_exchange(gateway.port, head + b"{" * 1000)
    assert status_of(reply) == 413 and b"Connection: close" in reply
    big = b"id=t1&lat=39.9&lon=116.4&pad=" + b"x" * (70 << 10)
    assert client.request("POST", "/", big)[0] == 413
    assert client.request("GET", q())[0] == 200


def test_chunked_bodies(gateway, client):  # noqa: F811
    body = f"id=t1&lat=39.9&lon=116.4&timestamp={EPOCH}".encode()
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
        + b"0\r\n\r\n"
    )
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    assert status_of(raw_exchange(gateway.port, head + chunked)) == 200
    huge = b"".join(b"8000\r\n" + b"a" * 0x8000 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    assert status_of(raw_exchange(gateway.port, head + huge)) == 413


def test_header_too_large_and_garbage(gateway, client):  # noqa: F811
    reply = raw_exchange(gateway.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_of(reply) == 431
    assert status_of(raw_exchange(gateway.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")) == 400
    assert status_of(raw_exchange(gateway.port, b"GET / HTTP/2.0\r\n\r\n")) == 505
    reply = raw_exchange(gateway.port, b"PUT / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 405
    assert client.request("GET", q())[0] == 200


def test_keep_alive_pipelining_and_http10(gateway, client):  # noqa: F811
    for k in range(50):
        assert client.request("GET", q(ts=EPOCH + k))[0] == 200
    two = (
        f"GET {q(ts=EPOCH + 100)} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET {q(ts=EPOCH + 101)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode()
    reply = raw_exchange(gateway.port, two)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    reply = raw_exchange(gateway.port, f"GET {q(ts=EPOCH + 102)} HTTP/1.0\r\n\r\n".encode())
    assert status_of(reply) == 200 and b"Connection: close" in reply
    assert gateway.wait_drained(5)
    assert gateway.stats()["stored"] == 53


def test_expect_100_continue(gateway, client):  # noqa: F811
    body = f"id=t1&lat=39.9&lon=116.4&timestamp={EPOCH}".encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 OK")


def test_slowloris_is_cut_off_and_others_are_served(engine, tmp_path):
    add_devices(engine, ["t1"])
    limits = Limits(request_timeout=1.0, idle_timeout=1.5)
    with running_gateway(engine, tmp_path / "q", limits=limits) as gw:
        slow = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        idle = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        c = Client(gw.port)
        started = time.monotonic()
        slow.sendall(b"GET /?id=t1")
        for _ in range(3):
            time.sleep(0.4)
            try:
                slow.sendall(b"&x=1")
            except OSError:
                break
            assert c.request("GET", q(ts=EPOCH + int(time.monotonic() * 1000) % 1000))[0] == 200
        reply = slow.recv(1000)
        assert status_of(reply) == 408
        assert time.monotonic() - started < 3.0
        assert idle.recv(100) == b""  # closed without a request, no bytes
        slow.close()
        idle.close()
        c.close()


def test_too_many_connections_get_503(engine, tmp_path):
    add_devices(engine, ["t1"])
    with running_gateway(engine, tmp_path / "q", limits=Limits(max_connections=2)) as gw:
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
        assert wait_for(lambda: len(gw.http.connections) == 2, 5)  # both accepted
        assert status_of(raw_exchange(gw.port, b"")) == 503
        for s in held:
            s.close()
        assert wait_for(lambda: len(gw.http.connections) == 0, 5)  # both gone
        c = Client(gw.port)
        assert c.request("GET", q())[0] == 200
        c.close()


def test_backlog_full_is_503(engine, tmp_path):
    add_devices(engine, ["t1"])
    with running_gateway(engine, tmp_path / "q", max_backlog=3) as gw:
        c = Client(gw.port)
        now = datetime.now(UTC)
        locations = [
            {
                "timestamp": (now - timedelta(seconds=k)).isoformat(),
                "coords": {"latitude": 39.9, "longitude": 116.4},
            }
            for k in range(4)
        ]
        status, body = c.post_json({"device_id": "t1", "location": locations})
        assert status == 503 and "busy" in body
        assert c.post_json({"device_id": "t1", "location": locations[:3]})[0] == 200
        assert gw.wait_drained(5) and count_positions(engine) == 3
        c.close()


def test_health(gateway, client):  # noqa: F811
    import json

    status, body = client.request("GET", "/health")
    assert status == 200 and json.loads(body)["db_available"] is True


def test_a_deleted_device_is_refused_after_the_reload(engine, tmp_path):
    add_devices(engine, ["gone"])
    with running_gateway(engine, tmp_path / "q", reload_devices_every=0.2) as gw:
        c = Client(gw.port)
        assert c.request("GET", q("gone"))[0] == 200
        assert gw.wait_drained(5)
        assert "gone" in gw.directory.known
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM device WHERE identifier = 'gone'"))
        assert wait_for(lambda: "gone" not in gw.directory.known, 5)  # the list was reloaded
        assert c.request("GET", q("gone", ts=EPOCH + 1))[0] == 404
        c.close()


def test_pipelined_answers_come_back_in_request_order(gateway, client):  # noqa: F811
    # 400s are answered at once and 200s only after the fsync: order must still hold.
    requests = []
    for k in range(12):
        lat = "39.9" if k % 2 == 0 else "91"
        requests.append(
            f"GET /?id=t1&lat={lat}&lon=116.4&timestamp={EPOCH + 500 + k} HTTP/1.1\r\n"
            f"Host: x\r\n{'Connection: close' + chr(13) + chr(10) if k == 11 else ''}\r\n"
        )
    reply = raw_exchange(gateway.port, "".join(requests).encode())
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)]
    assert statuses == [200, 400] * 6
