"""Helpers and fixtures for the gateway tests: a gateway on loopback, a plain HTTP client.

The fixtures are imported by the ``test_gateway*.py`` modules (conftest.py is
shared and left alone).  Every gateway started here is stopped by its fixture.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, text

from console.gateway import Gateway, GatewayConfig


def add_devices(engine: Engine, identifiers: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO device (identifier) SELECT unnest(CAST(:ids AS text[])) "
                "ON CONFLICT DO NOTHING"
            ),
            {"ids": identifiers},
        )


def position_rows(engine: Engine, device: str | None = None) -> list[dict]:
    sql = (
        "SELECT d.identifier AS device, p.ts, p.lon, p.lat, p.speed_kmh, p.course, p.altitude, "
        "p.accuracy, p.battery, p.attributes, p.grid_id, p.received_at "
        "FROM positions p JOIN device d ON d.id = p.device_id"
    )
    params = {}
    if device is not None:
        sql += " WHERE d.identifier = :d"
        params["d"] = device
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql + " ORDER BY p.ts"), params)]


def count_positions(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM positions")).scalar_one()


@contextmanager
def running_gateway(engine: Engine, queue_dir: Path, **options) -> Iterator[Gateway]:
    config = GatewayConfig(queue_dir=queue_dir, port=0, **options)
    gateway = Gateway(engine, config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def gateway(engine, tmp_path) -> Iterator[Gateway]:
    with running_gateway(engine, tmp_path / "queue") as gw:
        yield gw


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway on loopback."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, str]:
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return resp.status, data.decode("utf-8")

    def get(self, **params) -> tuple[int, str]:
        return self.request("GET", "/?" + urlencode(params))

    def post_form(self, **params) -> tuple[int, str]:
        return self.request(
            "POST",
            "/",
            urlencode(params).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )

    def post_json(self, doc, path: str = "/") -> tuple[int, str]:
        import json

        return self.request(
            "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"}
        )

    def close(self) -> None:
        self.conn.close()


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0, half_close: bool = True) -> bytes:
    """Send raw bytes (then end the sending side), read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            pass
        return b"".join(chunks)


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
