"""Who may report to the gateway, and what ``/health`` tells whom.

Pure decisions on plain values (a client address, a presented key, a stored
key hash), so each can be tested with any address, forged ones included,
without a socket.  ``console.gateway.server`` asks them for every request:

1. **Networks.** With ``--allow NET`` (repeatable) a client whose address is
   in none of the networks is refused with 403 before anything else is read;
   without it every address may report.
2. **Device keys.** A device with a key (``device.key_hash``, set by
   ``python main.py device key``) is accepted only with that key
   (``key=...`` in the URL): 401 when the report carries none, 403 when it
   is wrong.  A device without a key is accepted as before, unless
   ``--require-keys``: then it needs a key of its own, or, while it has none,
   the enrolment key.
3. **Registering.** ``--register-unknown`` adds an unknown device only when
   its report carries the enrolment key (``GRID_ENROL_KEY``) or comes from a
   network named by ``--allow`` (without ``--allow``: from this machine
   only); otherwise 403 and no device is created.
4. **Health.** From a loopback address ``/health`` answers the gateway's
   figures (queue, backlog, database state) as JSON; from anywhere else only
   ``ok`` (200) or ``unavailable`` (503), which is all a load balancer needs.
   A reverse proxy on the same machine makes every client look local: put
   ``/health`` behind its own rule there.

Keys are compared as SHA-256 hashes with ``hmac.compare_digest``
(``db.devices.key_matches``), and no decision's reason quotes a key.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from db.devices import hash_key, key_matches
from db.errors import BadInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Refusal = tuple[int, str]

NOT_ALLOWED: Refusal = (403, "该地址不允许上报 / This address may not report")
KEY_MISSING: Refusal = (
    401,
    "需要设备密钥（URL 中的 key 参数） / Device key required (the key parameter in the URL)",
)
KEY_WRONG: Refusal = (403, "设备密钥错误 / Wrong device key")
NO_DEVICE_KEY: Refusal = (
    403,
    "该设备尚未设置密钥 / This device has no key yet (python main.py device key ID)",
)
ENROL_REFUSED: Refusal = (
    403,
    "登记新设备需要登记密钥或受信网络 / Registering a device needs the enrolment key "
    "or a trusted network",
)
MIN_ENROL_KEY = 16


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``--allow`` values to networks; a bare address is a /32 (or /128).

    Raises ``BadInput`` naming the first value that is not a network.
    """
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise BadInput(
                f"--allow 的值不是网络地址：{value!r}（例如 10.0.0.0/8）",
                f"--allow takes a network such as 10.0.0.0/8, not {value!r}",
            ) from None
    return tuple(out)


@dataclass(frozen=True)
class AccessPolicy:
    """The gateway's access settings; see the module docstring for the rules."""

    require_keys: bool = False
    allow: tuple[Network, ...] = ()
    enrol_hash: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        require_keys: bool = False,
        allow: Iterable[str | Network] = (),
        enrol_key: str | None = None,
    ) -> AccessPolicy:
        """From settings; an enrolment key shorter than 16 characters is refused."""
        if enrol_key is not None and len(enrol_key) < MIN_ENROL_KEY:
            raise BadInput(
                f"登记密钥至少 {MIN_ENROL_KEY} 个字符。",
                f"The enrolment key must be at least {MIN_ENROL_KEY} characters.",
            )
        nets = tuple(a for a in allow if not isinstance(a, str))
        nets += parse_networks(a for a in allow if isinstance(a, str))
        return cls(require_keys, nets, hash_key(enrol_key) if enrol_key else None)

    def network_allowed(self, ip: Address | None) -> bool:
        """Step 1: no ``--allow`` lets every address in; with it, only its networks."""
        if not self.allow:
            return True
        return ip is not None and any(ip in net for net in self.allow)

    def enrol_key_valid(self, key: str | None) -> bool:
        return key_matches(key, self.enrol_hash)

    def may_register(self, ip: Address | None, key: str | None) -> bool:
        """Step 3: the enrolment key, or an address in ``--allow`` (without it, loopback)."""
        if self.enrol_key_valid(key):
            return True
        if ip is None:
            return False
        if self.allow:
            return any(ip in net for net in self.allow)
        return ip.is_loopback

    def key_refusal(self, key_hash: str | None, key: str | None) -> Refusal | None:
        """Step 2 for a device whose stored hash is ``key_hash``: None to accept."""
        if key_hash is not None:
            if key is None or key == "":
                return KEY_MISSING
            return None if key_matches(key, key_hash) else KEY_WRONG
        if not self.require_keys:
            return None
        if self.enrol_key_valid(key):
            return None
        return KEY_MISSING if not key else NO_DEVICE_KEY


def health_answer(
    ip: Address | None, db_available: bool, figures: Callable[[], dict]
) -> tuple[int, str]:
    """Step 4: (status, body) of ``/health`` for a client at ``ip``."""
    status = 200 if db_available else 503
    if ip is not None and ip.is_loopback:
        return status, json.dumps(figures()) + "\n"
    return status, "ok\n" if db_available else "unavailable\n"
