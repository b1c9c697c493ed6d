"""Who may do what on the broker: the one source of its accounts, client ids and ACLs.

The broker runs Mosquitto's dynamic security plugin (``smartcity up``, the tests and
docker-compose alike); its configuration is generated from this module by
:mod:`smartcity.dynsec` (the file the broker starts with) and :mod:`smartcity.broker_accounts`
(devices added while it runs).

Two limits of the plugin in Mosquitto 2.0.11 shape it, both tried on the real broker
(``tests/test_broker_accounts.py``):

* a client may be bound to **one** client id, and the broker then refuses any other; so every
  account is bound to its own id, and a device's id is its username. The ingester's
  ``--workers N`` processes each need a login of their own: worker *i* logs in as ``ingest-i``
  (client id ``smartcity-ingest-i``), sharing the ``ingest`` password and role, for up to
  :data:`INGEST_WORKERS` workers.
* ACL topics are literal: ``%u``/``%c`` are not substituted (that came in 2.1). A device's
  rules therefore name its own id, so each device has a role of its own, made from its
  kind's channels by :func:`device_account`.

Writes are confined to the configured city: nothing outside ``smartcity/v1/<city>/`` (or the
ingester's own dead-letter and shutdown-barrier topics) is accepted, so no publish under
another city (``milano``, ``Cremona``) is accepted only to be dropped unread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from smartcity import lorawan_profiles
from smartcity.contract import (
    DEADLETTER_TOPIC,
    DEVICE_ID_PATTERN,
    INGESTED_CHANNELS,
    ROOT,
    VERSION,
)
from smartcity.devices import DEVICE_TYPES

#: What a device sends, and what the ingester stores of it.
DEVICE_SENDS = ("telemetry", "events", "status", "health", "cmd_result")
INGESTED = INGESTED_CHANNELS
#: The ingester's shutdown barrier, ``ingest/service.py`` SYNC_TOPIC_PREFIX/<client id> (the
#: core may not import the ingester; a test checks the two agree).
INGEST_SYNC = "smartcity/v1/_ingest/sync/+"
#: The plugin's control topic; only the admin account may use it.
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
#: The account the project's own code administers the broker with.
ADMIN = "smartcity-admin"
#: Role names: ``smartcity-<service account>``, ``device-<device id>``.
SERVICE_ROLE_PREFIX = "smartcity-"
DEVICE_ROLE_PREFIX = "device-"


@dataclass(frozen=True)
class Rule:
    """``read`` (subscribe and receive) or ``write`` (publish) on a topic filter."""

    access: Literal["read", "write"]
    topic: str


@dataclass(frozen=True)
class Account:
    username: str
    #: The only client id the broker accepts for this login.
    clientid: str
    rules: tuple[Rule, ...]
    #: The service account whose password and role this login shares (an ingester worker's).
    shares: str | None = None

    @property
    def role(self) -> str:
        owner = self.shares or self.username
        prefix = SERVICE_ROLE_PREFIX if owner in SERVICE_ACCOUNTS else DEVICE_ROLE_PREFIX
        return prefix + owner


#: The platform's service accounts; each gets a password from ``smartcity up``
#: (var/mosquitto/passwords/) or from .env (scripts/compose-env).
SERVICE_ACCOUNTS = (
    "ingest", "simulator", "api", "monitor", "observer", "lorawan", "chirpstack", "ocpp", ADMIN,
)  # fmt: skip
#: ChirpStack v4's MQTT integration topics (``application/{application id}/device/{DevEUI}/...``).
CHIRPSTACK_EVENTS = "application/+/device/+/event/+"
CHIRPSTACK_DOWN = "application/+/device/+/command/down"
#: The device type whose devices the OCPP gateway (``smartcity ocpp``) publishes for.
OCPP_DEVICE_TYPE = "evcharger"
#: The ingester's client id (``smartcity ingest --client-id``'s default).
INGEST_CLIENT_ID = "smartcity-ingest"
#: How many ``smartcity ingest --workers`` processes the platform's accounts serve.
INGEST_WORKERS = 8
#: Every login the platform itself uses: no device may take one of these names.
SERVICE_LOGINS = (*SERVICE_ACCOUNTS, *(f"ingest-{i}" for i in range(1, INGEST_WORKERS + 1)))


def _level(what: str, value: str) -> str:
    """``value`` as one literal topic level: a ``+``, ``#`` or ``/`` in it would widen a rule."""
    if not value or any(c in value for c in "+#/\0"):
        raise ValueError(f"{what} {value!r} must be one topic level, without + # or /")
    return value


def _topic(city: str, device_type: str, device_id: str, channel: str) -> str:
    return f"{ROOT}/{VERSION}/{city}/{device_type}/{device_id}/{channel}"


def service_accounts(city: str) -> tuple[Account, ...]:
    """Every service account with its rules for ``city``."""
    city = _level("city", city)
    ingest = Account(
        "ingest",
        INGEST_CLIENT_ID,
        (
            # every city: the dead-letter of another city's message is the ingester's to make
            *(Rule("read", f"smartcity/v1/+/+/+/{channel}") for channel in INGESTED),
            Rule("write", DEADLETTER_TOPIC),
            Rule("write", INGEST_SYNC),
            Rule("read", "$SYS/#"),  # the pipeline board's broker figures
        ),
    )
    # --workers N: worker i logs in as ingest-i, with the ingest password and role
    workers = tuple(
        Account(f"ingest-{i}", f"{INGEST_CLIENT_ID}-{i}", ingest.rules, shares="ingest")
        for i in range(1, INGEST_WORKERS + 1)
    )
    simulator = Account(  # publishes as every simulated device, in its city only, and
        "simulator",  # answers their commands as their edge agents would
        "simulator",
        (
            *(
                Rule("write", _topic(city, kind, "+", channel))
                for kind in DEVICE_TYPES
                for channel in INGESTED
            ),
            Rule("read", _topic(city, "+", "+", "cmd")),
        ),
    )
    # the API and `smartcity command` send commands to devices of its city, and do nothing else
    api = Account("api", "api", (Rule("write", _topic(city, "+", "+", "cmd")),))
    monitor = Account("monitor", "monitor", (Rule("read", "$SYS/broker/uptime"),))
    # the OCPP central system (``smartcity ocpp``) speaks for every charger connected to it: it
    # publishes the chargers' channels of its city, reads their commands, and publishes the
    # OCPP frames it refused on the dead-letter topic; nothing of other device types
    ocpp = Account(
        "ocpp",
        "ocpp",
        (
            *(Rule("write", _topic(city, OCPP_DEVICE_TYPE, "+", ch)) for ch in DEVICE_SENDS),
            Rule("read", _topic(city, OCPP_DEVICE_TYPE, "+", "cmd")),
            Rule("write", DEADLETTER_TOPIC),
        ),
    )
    observer = Account(  # people watching the raw messages: read only
        "observer", "observer", (Rule("read", "smartcity/#"), Rule("read", "$SYS/#"))
    )
    admin = Account(
        ADMIN,
        ADMIN,
        (Rule("write", f"{CONTROL_TOPIC}"), Rule("read", f"{CONTROL_TOPIC}/response")),
    )
    lorawan = Account(  # smartcity lorawan: ChirpStack's events in, the contract out
        "lorawan",
        "smartcity-lorawan",
        (
            Rule("read", CHIRPSTACK_EVENTS),
            Rule("write", CHIRPSTACK_DOWN),
            *(
                Rule("write", _topic(city, kind, "+", channel))
                for kind in lorawan_device_types()
                for channel in DEVICE_SENDS
            ),
            *(Rule("read", _topic(city, kind, "+", "cmd")) for kind in lorawan_device_types()),
            Rule("write", DEADLETTER_TOPIC),
        ),
    )
    chirpstack = Account(  # ChirpStack v4's MQTT integration (its JSON marshaler)
        "chirpstack",
        "chirpstack",
        (Rule("write", CHIRPSTACK_EVENTS), Rule("read", CHIRPSTACK_DOWN)),
    )
    return ingest, *workers, simulator, api, monitor, observer, lorawan, chirpstack, ocpp, admin


def lorawan_device_types() -> tuple[str, ...]:
    """The device types the shipped LoRaWAN profiles fill: what ``smartcity lorawan`` speaks."""
    return tuple(sorted({lorawan_profiles.load(n).device_type for n in lorawan_profiles.names()}))


def device_account(device_type: str, device_id: str, city: str) -> Account:
    """A field device: username and client id are its id; it publishes only its own channels
    under its own city and type, and reads only its own commands."""
    if device_type not in DEVICE_TYPES:
        known = ", ".join(DEVICE_TYPES)
        raise ValueError(f"unknown device type {device_type!r}; known: {known}")
    if device_id in SERVICE_LOGINS:
        raise ValueError(f"{device_id!r} is a service account's name, not a device id")
    if not re.fullmatch(DEVICE_ID_PATTERN, device_id):
        raise ValueError(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    city = _level("city", city)
    rules = [Rule("write", _topic(city, device_type, device_id, ch)) for ch in DEVICE_SENDS]
    rules.append(Rule("read", _topic(city, device_type, device_id, "cmd")))
    return Account(device_id, device_id, tuple(rules))


def dynsec_acls(account: Account) -> list[dict[str, object]]:
    """The account's rules as the plugin's ACL entries.

    A read rule allows the subscription, its shared form (``$share/<group>/...``: the plugin
    checks the filter as sent) and the delivery; a write rule allows publishing.
    """
    acls: list[dict[str, object]] = []
    for rule in account.rules:
        if rule.access == "write":
            acls.append({"acltype": "publishClientSend", "topic": rule.topic, "allow": True})
            continue
        acls += [
            {"acltype": "subscribePattern", "topic": rule.topic, "allow": True},
            {"acltype": "subscribePattern", "topic": f"$share/+/{rule.topic}", "allow": True},
            {"acltype": "publishClientReceive", "topic": rule.topic, "allow": True},
        ]
    return acls


#: What an account may do beyond its role's ACL: nothing.
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
