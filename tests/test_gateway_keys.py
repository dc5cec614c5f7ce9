"""Who may report to the gateway: device keys, client networks, enrolment, TLS, /health.

The rules are issue 9 item 7 and the README's "GPS gateway" section: a device
with a key is accepted only with that key (401 without one, 403 with a wrong
one) and nothing of a refused report is stored; ``--require-keys`` extends
that to devices without a key; ``--allow`` refuses clients outside its
networks; ``--register-unknown`` creates a device only for a report carrying
the enrolment key or coming from an ``--allow`` network (without ``--allow``,
from this machine); keys are stored as SHA-256 hex; ``/health`` tells its
figures only to a loopback client.

Real HTTP: the gateway listens on loopback, and where a client must come from
somewhere else, on a non-loopback address of this machine (a connection from
that address to itself has it as its peer address, which is what the gateway
judges).  The same rules are also checked directly on the decision functions
with forged addresses, so they hold on a machine without such an address.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.gateway.access import AccessPolicy, health_answer
from console.gateway.http import Peer
from db.devices import set_device_key
from tests.cli_runner import cli
from tests.conftest import PASSWORD, wait_for
from tests.gateway_support import add_devices, count_positions, position_rows, running_gateway

EPOCH = int(time.time()) - 600
ENROL = "enrol-key-for-the-tests-0123456789"


def report(device: str, key: str | None = None, ts: int = EPOCH) -> str:
    params = {"id": device, "lat": "39.9", "lon": "116.4", "timestamp": ts}
    if key is not None:
        params["key"] = key
    return "/?" + urlencode(params)


def get(
    port: int, path: str, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """One request on a fresh connection (a peer address of the caller's choosing)."""
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=tls)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8")
    finally:
        conn.close()


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def stored_hash(engine, device: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT key_hash FROM device WHERE identifier = :d"), {"d": device}
        ).scalar_one()


def device_exists(engine, device: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT count(*) FROM device WHERE identifier = :d"), {"d": device}
            ).scalar_one()
            == 1
        )


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback that a socket can bind, or None.

    A UDP ``connect`` sends nothing; it only asks the routing table which
    local address would be used.
    """
    for probe in ("192.0.2.1", "198.51.100.1", "10.255.255.254", "172.31.255.254"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                addr = s.getsockname()[0]
            if ipaddress.ip_address(addr).is_loopback or addr == "0.0.0.0":
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind((addr, 0))
            return addr
        except OSError:
            continue
    return None


ELSEWHERE = non_loopback_address()
needs_elsewhere = pytest.mark.skipif(
    ELSEWHERE is None,
    reason="this machine has no non-loopback address; the decision tests below cover it",
)


# --- device keys over HTTP ----------------------------------------------------------------


def test_a_keyed_device_is_refused_without_its_key_and_nothing_is_stored(engine, tmp_path, caplog):
    key = set_device_key(engine, "k1", create=True)
    assert stored_hash(engine, "k1") == sha256_hex(key)  # only the SHA-256 hex is kept
    caplog.set_level(logging.INFO)
    with running_gateway(engine, tmp_path / "q") as gw:
        status, body = get(gw.port, report("k1"))
        assert status == 401 and "key" in body.lower()
        status, body = get(gw.port, report("k1", "not-" + key, EPOCH + 1))
        assert status == 403 and "wrong" in body.lower()
        assert get(gw.port, report("k1", "", EPOCH + 2))[0] == 401
        assert gw.wait_drained(5)
        assert count_positions(engine) == 0
        assert get(gw.port, report("k1", key, EPOCH + 3))[0] == 200
        assert gw.wait_drained(5)
    rows = position_rows(engine, "k1")
    assert len(rows) == 1 and rows[0]["ts"].timestamp() == EPOCH + 3
    assert "key" not in rows[0]["attributes"] and key not in json.dumps(rows[0]["attributes"])
    assert key not in caplog.text and "refused 401" in caplog.text


def test_require_keys_refuses_devices_without_a_key(engine, tmp_path):
    add_devices(engine, ["plain"])
    with running_gateway(engine, tmp_path / "q0") as gw:  # keys not required: as before
        assert get(gw.port, report("plain"))[0] == 200
        assert gw.wait_drained(5)
    assert count_positions(engine) == 1
    policy = AccessPolicy.build(require_keys=True)
    with running_gateway(engine, tmp_path / "q1", access=policy, unknown_ttl=0.2) as gw:
        assert get(gw.port, report("plain", ts=EPOCH + 1))[0] == 401
        assert get(gw.port, report("plain", "made-up-key", EPOCH + 2))[0] == 403
        key = set_device_key(engine, "plain")
        # Set while the gateway runs: a refusal makes it read the device again
        # (at most once per unknown_ttl), long before the next full reload.
        assert wait_for(lambda: get(gw.port, report("plain", key, EPOCH + 3))[0] == 200, 5)
        assert gw.wait_drained(5)
    assert [r["ts"].timestamp() for r in position_rows(engine, "plain")] == [EPOCH, EPOCH + 3]


def test_a_replaced_key_stops_working_at_the_next_reload_and_the_new_one_works(engine, tmp_path):
    old = set_device_key(engine, "rot", create=True)
    with running_gateway(engine, tmp_path / "q", reload_devices_every=0.2) as gw:
        assert get(gw.port, report("rot", old))[0] == 200
        new = set_device_key(engine, "rot")
        assert new != old
        # Nothing was refused, so only the reload of the device list (every 0.2 s
        # here, a minute by default) retires the old key.
        assert wait_for(lambda: get(gw.port, report("rot", old, EPOCH + 2))[0] == 403, 5)
        assert get(gw.port, report("rot", new, EPOCH + 1))[0] == 200
        assert gw.wait_drained(5)
    stored = {r["ts"].timestamp() for r in position_rows(engine, "rot")}
    assert {EPOCH, EPOCH + 1} <= stored <= {EPOCH, EPOCH + 1, EPOCH + 2}


# --- networks ---------------------------------------------------------------------------------


def test_a_client_outside_the_allowed_networks_is_refused(engine, tmp_path):
    add_devices(engine, ["n1"])
    outside = AccessPolicy.build(allow=["10.0.0.0/8", "192.168.0.0/16"])
    with running_gateway(engine, tmp_path / "q1", access=outside) as gw:
        status, body = get(gw.port, report("n1"))  # from 127.0.0.1
        assert status == 403 and "address" in body.lower()
        assert get(gw.port, "/health")[0] == 403
        assert gw.wait_drained(5)
    assert count_positions(engine) == 0
    inside = AccessPolicy.build(allow=["10.0.0.0/8", "127.0.0.1/32"])
    with running_gateway(engine, tmp_path / "q2", access=inside) as gw:
        assert get(gw.port, report("n1"))[0] == 200
        assert gw.wait_drained(5)
    assert count_positions(engine) == 1


@needs_elsewhere
def test_an_address_of_this_machine_outside_the_allow_list_is_refused(engine, tmp_path):
    add_devices(engine, ["n2"])
    policy = AccessPolicy.build(allow=["127.0.0.1/32"])
    with running_gateway(engine, tmp_path / "q", host=ELSEWHERE, access=policy) as gw:
        status, body = get(gw.port, report("n2"), host=ELSEWHERE)
        assert status == 403 and "address" in body.lower()
        assert gw.wait_drained(5)
    assert count_positions(engine) == 0


# --- registering unknown devices ---------------------------------------------------------


@needs_elsewhere
def test_register_unknown_from_elsewhere_needs_the_enrolment_key(engine, tmp_path):
    devices_before = _device_count(engine)
    with running_gateway(engine, tmp_path / "q1", host=ELSEWHERE, register_unknown=True) as gw:
        status, body = get(gw.port, report("stranger"), host=ELSEWHERE)
        assert status == 403 and "enrol" in body.lower()
        assert gw.wait_drained(5)
    assert not device_exists(engine, "stranger") and _device_count(engine) == devices_before

    policy = AccessPolicy.build(enrol_key=ENROL)
    with running_gateway(
        engine, tmp_path / "q2", host=ELSEWHERE, register_unknown=True, access=policy
    ) as gw:
        assert get(gw.port, report("stranger", "wrong-" + ENROL), host=ELSEWHERE)[0] == 403
        assert not device_exists(engine, "stranger")
        assert get(gw.port, report("stranger", ENROL), host=ELSEWHERE)[0] == 200
        assert gw.wait_drained(5)
    assert device_exists(engine, "stranger") and stored_hash(engine, "stranger") is None
    rows = position_rows(engine, "stranger")
    assert len(rows) == 1 and ENROL not in json.dumps(rows[0]["attributes"])


@needs_elsewhere
def test_register_unknown_from_an_allowed_network_needs_no_key(engine, tmp_path):
    policy = AccessPolicy.build(allow=[f"{ELSEWHERE}/32"])
    with running_gateway(
        engine, tmp_path / "q", host=ELSEWHERE, register_unknown=True, access=policy
    ) as gw:
        assert get(gw.port, report("fieldphone"), host=ELSEWHERE)[0] == 200
        assert gw.wait_drained(5)
    assert device_exists(engine, "fieldphone") and count_positions(engine) == 1


def test_register_unknown_with_required_keys_takes_only_the_enrolment_key(engine, tmp_path):
    policy = AccessPolicy.build(require_keys=True, enrol_key=ENROL)
    with running_gateway(engine, tmp_path / "q", register_unknown=True, access=policy) as gw:
        # From loopback registering is permitted, but the first report would be
        # refused for want of a key: no device is created for it.
        status, body = get(gw.port, report("newbie"))
        assert status == 403 and "enrol" in body.lower()
        assert not device_exists(engine, "newbie")
        assert get(gw.port, report("newbie", ENROL))[0] == 200
        assert gw.wait_drained(5)
    assert device_exists(engine, "newbie") and count_positions(engine) == 1


def _device_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM device")).scalar_one()


# --- /health ---------------------------------------------------------------------------------


@needs_elsewhere
def test_health_from_elsewhere_tells_no_internals(engine, tmp_path):
    with running_gateway(engine, tmp_path / "q", host=ELSEWHERE) as gw:
        status, body = get(gw.port, "/health", host=ELSEWHERE)
    assert (status, body) == (200, "ok\n")


def test_health_from_loopback_tells_the_figures(engine, tmp_path):
    with running_gateway(engine, tmp_path / "q") as gw:
        status, body = get(gw.port, "/health")
    figures = json.loads(body)
    assert status == 200 and figures["db_available"] is True and figures["backlog"] == 0


# --- TLS ---------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the ``openssl`` command (skip without it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        try:
            import cryptography  # noqa: F401
        except ImportError:
            pytest.skip("neither the openssl command nor the cryptography package is here")
        pytest.skip("no openssl command (making a certificate with cryptography not written)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=grid-gateway-test",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def plain_http_accepted(port: int, path: str) -> bool:
    try:
        return get(port, path)[0] == 200
    except (http.client.HTTPException, OSError):
        return False


def test_tls_round_trip(engine, tmp_path):
    cert, key = self_signed(tmp_path)
    device_key = set_device_key(engine, "tls1", create=True)
    trust = ssl.create_default_context(cafile=str(cert))  # checks the name: IP 127.0.0.1
    with running_gateway(engine, tmp_path / "q", tls_cert=cert, tls_key=key) as gw:
        assert get(gw.port, report("tls1", device_key), tls=trust) == (200, "")
        assert not plain_http_accepted(gw.port, report("tls1", device_key, EPOCH + 1))
        with pytest.raises(ssl.SSLCertVerificationError):
            get(gw.port, "/health", tls=ssl.create_default_context())  # an untrusted cert
        assert gw.wait_drained(5)
    assert [r["ts"].timestamp() for r in position_rows(engine, "tls1")] == [EPOCH]


def test_a_bad_certificate_is_one_clear_line(db_url, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    result = cli(db_url, f"gateway --port 0 --queue-dir {tmp_path / 'q'} --tls-cert {bad}", "")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "TLS" in result.stderr


# --- the decisions themselves, with forged client addresses ----------------------------------


def ip(text_: str):
    return Peer((text_, 5055)).ip


def test_networks_and_registering_decided_on_forged_addresses():
    open_ = AccessPolicy.build(enrol_key=ENROL)
    assert open_.network_allowed(ip("203.0.113.9")) and open_.network_allowed(None)
    assert not open_.may_register(ip("203.0.113.9"), None)
    assert not open_.may_register(ip("203.0.113.9"), "wrong-" + ENROL)
    assert open_.may_register(ip("203.0.113.9"), ENROL)
    assert open_.may_register(ip("127.0.0.1"), None) and open_.may_register(ip("::1"), None)

    hall = AccessPolicy.build(allow=["10.0.0.0/8", "2001:db8::/32"])
    assert hall.network_allowed(ip("10.20.30.40")) and hall.network_allowed(ip("2001:db8::7"))
    assert not hall.network_allowed(ip("11.0.0.1")) and not hall.network_allowed(None)
    assert not hall.network_allowed(ip("127.0.0.1"))  # loopback only when listed
    # An IPv4 client of a dual-stack listener is judged by its IPv4 address.
    assert Peer(("::ffff:10.1.2.3", 5055, 0, 0)).ip == ipaddress.ip_address("10.1.2.3")
    assert hall.network_allowed(Peer(("::ffff:10.1.2.3", 5055, 0, 0)).ip)
    assert hall.may_register(ip("10.9.9.9"), None)
    assert not hall.may_register(ip("127.0.0.1"), None)  # with --allow, only its networks


def test_key_decisions():
    keyed = sha256_hex("the-device-key")
    loose = AccessPolicy.build()
    strict = AccessPolicy.build(require_keys=True, enrol_key=ENROL)
    for policy in (loose, strict):
        assert policy.key_refusal(keyed, "the-device-key") is None
        assert policy.key_refusal(keyed, None)[0] == 401
        assert policy.key_refusal(keyed, "")[0] == 401
        assert policy.key_refusal(keyed, "the-device-kez")[0] == 403
        assert policy.key_refusal(keyed, ENROL)[0] == 403  # a device's own key, nothing else
    assert loose.key_refusal(None, None) is None
    assert strict.key_refusal(None, None)[0] == 401
    assert strict.key_refusal(None, "anything")[0] == 403
    assert strict.key_refusal(None, ENROL) is None
    with pytest.raises(Exception, match="16"):
        AccessPolicy.build(enrol_key="short")


def test_health_decided_on_forged_addresses():
    figures = {"backlog": 7, "db_available": True, "queue_files": 2}
    for elsewhere in ("203.0.113.9", "10.0.0.5", "2001:db8::1", "::ffff:198.51.100.4"):
        assert health_answer(ip(elsewhere), True, lambda: figures) == (200, "ok\n")
        assert health_answer(ip(elsewhere), False, lambda: figures) == (503, "unavailable\n")
    assert health_answer(None, True, lambda: figures) == (200, "ok\n")
    for local in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        status, body = health_answer(ip(local), True, lambda: figures)
        assert status == 200 and json.loads(body) == figures


# --- the key command -----------------------------------------------------------------------


def device_key(db_url: str, line: str, admin_password: str = PASSWORD):
    return cli(db_url, f"device key {line}", "", GRID_ADMIN_PASSWORD=admin_password)


def test_device_key_command_prints_a_key_once_and_stores_its_hash(db_url, engine):
    result = device_key(db_url, "van-7 --create --admin admin1")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(key) >= 32 and "\n" not in key
    assert stored_hash(engine, "van-7") == sha256_hex(key)
    again = device_key(db_url, "van-7 --as-owner")
    assert again.returncode == 0 and again.stdout.strip() != key
    assert stored_hash(engine, "van-7") == sha256_hex(again.stdout.strip())
    cleared = device_key(db_url, "van-7 --clear --admin admin1")
    assert cleared.returncode == 0 and stored_hash(engine, "van-7") is None


def test_device_key_command_needs_an_administrator(db_url, engine):
    add_devices(engine, ["van-8"])
    for line, password in [
        ("van-8 --admin dispatcher1", PASSWORD),  # not an administrator
        ("van-8 --admin admin1", "not-the-password"),
        ("van-8", PASSWORD),  # nobody named
    ]:
        result = device_key(db_url, line, password)
        assert result.returncode == 4, (line, result.stderr)
        assert result.stdout == ""
    assert stored_hash(engine, "van-8") is None
    unknown = device_key(db_url, "nobody --admin admin1")
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
