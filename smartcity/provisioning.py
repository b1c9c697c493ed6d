"""Provisioning, rotation and revocation of field devices, in the registry and the broker at once.

A device exists twice: as a row of the registry (what it is and where) and as a client of the
broker's dynamic security plugin (its login, bound to its id, confined to its own topics). The
two must agree, so every operation here changes both in one step that either completes or
leaves both as they were:

1. the registry change and its audit entry are made and flushed, not committed;
2. the broker is changed (one admin request, :mod:`smartcity.broker_accounts`);
3. the registry transaction is committed.

If 2 fails, the registry transaction is rolled back. If 3 fails, the broker change is undone
(the client made is deleted, a client disabled is enabled again). A refused or failed attempt is
then recorded in the audit trail on its own, with its reason. Passwords never reach the audit
trail, the logs or an exception: the caller gets them once, in :class:`Credentials`.

The CLI (``smartcity devices``, stack/devices_cli.py) and the API (``/v1/devices/{id}/
credentials``) both call these functions, so they refuse and roll back alike.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from smartcity import audit, broker_accounts, charger_auth, lorawan_profiles
from smartcity.broker_accounts import Admin, BrokerAccountError
from smartcity.broker_acl import DEVICE_ROLE_PREFIX, SERVICE_LOGINS, device_account
from smartcity.city import ZONE_NAMES
from smartcity.contract import DEVICE_ID_PATTERN
from smartcity.dynsec import new_password
from smartcity.registry.models import Device
from smartcity.settings import mqtt_endpoint

#: A DevEUI as the registry keeps it and ChirpStack v4 writes it in topics.
DEV_EUI = re.compile(r"[0-9a-f]{16}")

#: The columns of an import file, in order; ``name`` may be left out.
CSV_COLUMNS = ("device_type", "device_id", "zone", "lat", "lon", "name")


class ProvisioningError(Exception):
    """The operation was refused or failed; the registry and the broker are as they were."""


class InvalidDevice(ProvisioningError):
    """Bad input: an unknown type or zone, an id that is no topic level, a place off the map."""


class Duplicate(ProvisioningError):
    """The device (or its broker account) exists already."""


class UnknownDevice(ProvisioningError):
    """No such device in the registry."""


class Conflict(ProvisioningError):
    """The device's state forbids it (revoked, or without a broker account to rotate)."""


class Failed(ProvisioningError):
    """The broker or the registry failed; everything done before was undone."""


@dataclass(frozen=True)
class NewDevice:
    """What registering a device needs: its kind, id and place."""

    device_type: str
    device_id: str
    zone: str
    lat: float
    lon: float
    name: str | None = None
    #: LoRaWAN devices: the DevEUI and the profile of the sensor model (both or neither).
    dev_eui: str | None = None
    lorawan_profile: str | None = None

    def check(self, city: str) -> None:
        """Raise :class:`InvalidDevice` saying what is wrong, before anything is changed."""
        try:
            device_account(self.device_type, self.device_id, city)
        except ValueError as exc:
            raise InvalidDevice(str(exc)) from None
        if self.zone not in ZONE_NAMES:
            raise InvalidDevice(f"unknown zone {self.zone!r}; known: {', '.join(ZONE_NAMES)}")
        for what, value, limit in (("lat", self.lat, 90), ("lon", self.lon, 180)):
            if not math.isfinite(value) or abs(value) > limit:
                raise InvalidDevice(f"{what} {value} is not between -{limit} and {limit}")
        if self.name is not None and ("\0" in self.name or len(self.name) > 200):
            raise InvalidDevice("name must be at most 200 characters, without NUL")
        self._check_lorawan()

    def _check_lorawan(self) -> None:
        if (self.dev_eui is None) != (self.lorawan_profile is None):
            raise InvalidDevice("a LoRaWAN device needs both a DevEUI and a profile (--profile)")
        if self.dev_eui is None or self.lorawan_profile is None:
            return
        if not DEV_EUI.fullmatch(self.dev_eui):
            raise InvalidDevice(f"DevEUI {self.dev_eui!r} is not 16 lower-case hex digits")
        try:
            profile = lorawan_profiles.load(self.lorawan_profile)
        except KeyError as exc:
            raise InvalidDevice(str(exc.args[0])) from None
        if profile.device_type != self.device_type:
            raise InvalidDevice(
                f"profile {self.lorawan_profile} is for {profile.device_type} devices, "
                f"not {self.device_type}"
            )


#: The device type whose devices also get an OCPP password (``smartcity ocpp``, docs/ocpp.md).
OCPP_DEVICE_TYPE = "evcharger"


@dataclass(frozen=True)
class Credentials:
    """A device's broker login, handed out once: username and client id are its id. An EV
    charger also gets the password it logs in to the OCPP central system with (its charge
    point id is its device id); the registry keeps only its salted hash."""

    device_type: str
    device_id: str
    password: str
    city: str
    ocpp_password: str | None = None

    @property
    def username(self) -> str:
        return self.device_id


def provision(
    session: Session, admin: Admin, city: str, new: NewDevice, actor: str,
    action: str = "device.provision",
) -> Credentials:  # fmt: skip
    """Register ``new`` and make its broker client with a new password.

    Raises :class:`InvalidDevice`, :class:`Duplicate` (registered already, or the broker has an
    account of that name) or :class:`Failed`; in every case nothing was changed.
    """
    with _attempt(session, actor, action, new.device_id):
        new.check(city)
        if session.get(Device, new.device_id) is not None:
            raise Duplicate(f"device {new.device_id!r} is already registered; nothing was changed")
        if new.dev_eui is not None:
            holder = session.query(Device).filter_by(dev_eui=new.dev_eui).one_or_none()
            if holder is not None:
                raise Duplicate(
                    f"DevEUI {new.dev_eui} is already {holder.device_id!r}'s; nothing was changed"
                )
        now = datetime.now(UTC)
        session.add(
            Device(
                device_id=new.device_id, device_type=new.device_type, zone=new.zone,
                lat=new.lat, lon=new.lon, name=new.name, created_at=now, updated_at=now,
                dev_eui=new.dev_eui, lorawan_profile=new.lorawan_profile,
            )
        )  # fmt: skip
        detail: dict[str, object] = {
            "device_type": new.device_type, "zone": new.zone, "lat": new.lat, "lon": new.lon,
        }  # fmt: skip
        if new.dev_eui is not None:
            detail |= {"dev_eui": new.dev_eui, "lorawan_profile": new.lorawan_profile}
        audit.record(session, actor=actor, action=action, device_id=new.device_id, detail=detail)
        return _make_account(session, admin, city, new.device_type, new.device_id)


def add_credentials(
    session: Session, admin: Admin, city: str, device_id: str, actor: str
) -> Credentials:
    """Make the broker client of a device registered without one (``POST /v1/devices``).

    Raises :class:`UnknownDevice`, :class:`Conflict` (revoked), :class:`Duplicate` (it has a
    broker account already: rotate its password instead) or :class:`Failed`.
    """
    with _attempt(session, actor, "device.provision", device_id):
        device = _registered(session, device_id)
        audit.record(
            session, actor=actor, action="device.provision", device_id=device_id,
            detail={"device_type": device.device_type, "registered": "before"},
        )  # fmt: skip
        return _make_account(session, admin, city, device.device_type, device_id, True)


def rotate(session: Session, admin: Admin, city: str, device_id: str, actor: str) -> Credentials:
    """A new password for a device's broker client; the old one is refused from now on.

    A client already connected stays connected (the broker checks passwords at login only);
    its next login needs the new password. If recording the rotation fails after the broker
    changed the password, the new password is lost with the error: rotate again.
    """
    with _attempt(session, actor, "device.rotate", device_id):
        device = _registered(session, device_id)
        device.updated_at = datetime.now(UTC)
        ocpp_password = _new_ocpp_password(device)
        audit.record(session, actor=actor, action="device.rotate", device_id=device_id)
        session.flush()
        password = new_password()
        try:
            broker_accounts.set_password(admin, device_id, password)
        except BrokerAccountError as exc:
            if _not_found(exc):
                raise Conflict(
                    f"device {device_id!r} has no broker account to rotate; give it one first "
                    f"(POST /v1/devices/{device_id}/credentials)"
                ) from None
            raise Failed(f"the broker failed, nothing was changed: {exc}") from None
        try:
            _commit(session, undo=None)
        except Failed as exc:
            raise Failed(
                f"{exc}; the broker already has a new password, which is lost with this error: "
                f"rotate {device_id!r} again"
            ) from None
        return Credentials(device.device_type, device_id, password, city, ocpp_password)


def revoke(session: Session, admin: Admin, device_id: str, actor: str) -> Device:
    """Disable the device's broker client (a connected one is disconnected at once and refused
    from then on) and mark it revoked in the registry. Revoking again changes nothing more.

    A device registered without a broker account is only marked revoked.
    """
    with _attempt(session, actor, "device.revoke", device_id):
        device = _found(session, device_id)
        now = datetime.now(UTC)
        first = device.revoked_at is None
        if first:
            device.revoked_at = now
            device.updated_at = now
        audit.record(
            session, actor=actor, action="device.revoke", device_id=device_id,
            detail={} if first else {"already_revoked_at": device.revoked_at},
        )  # fmt: skip
        session.flush()
        had_account = True
        try:
            broker_accounts.disable_client(admin, device_id)
        except BrokerAccountError as exc:
            if not _not_found(exc):
                raise Failed(f"the broker failed, nothing was changed: {exc}") from None
            had_account = False
        undo = (lambda: broker_accounts.enable_client(admin, device_id)) if first else None
        _commit(session, undo=undo if had_account else None)
        return device


@dataclass(frozen=True)
class ImportLine:
    """One line of an import file and what became of it."""

    line: int
    device_id: str
    #: The new device's login, or None if the line was refused.
    credentials: Credentials | None
    #: Why the line was refused ("" if it was provisioned).
    reason: str = ""


def import_csv(
    session: Session, admin: Admin, city: str, text: str, actor: str
) -> Iterator[ImportLine]:
    """Provision each line ``device_type,device_id,zone,lat,lon[,name]`` on its own: a bad line
    is reported with its reason and the others go on. A first line naming the columns is a
    header; blank lines and lines starting with ``#`` are skipped. Yields as it goes, so a
    caller can save each line's credentials before the next line is tried."""
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[:2] == list(CSV_COLUMNS[:2]):
            continue
        device_id = cells[1] if len(cells) > 1 else ""
        try:
            new = parse_line(cells)
            creds = provision(session, admin, city, new, actor, action="device.import")
        except ProvisioningError as exc:
            yield ImportLine(number, device_id, None, str(exc))
        else:
            yield ImportLine(number, device_id, creds)


def parse_line(cells: list[str]) -> NewDevice:
    if not 5 <= len(cells) <= 6:
        raise InvalidDevice(f"{len(cells)} columns; expected {','.join(CSV_COLUMNS[:5])}[,name]")
    numbers: list[float] = []
    for what, cell in zip(("lat", "lon"), cells[3:5], strict=True):
        try:
            numbers.append(float(cell))
        except ValueError:
            raise InvalidDevice(f"{what} {cell!r} is not a number") from None
    name = cells[5] if len(cells) == 6 and cells[5] else None
    return NewDevice(cells[0], cells[1], cells[2], numbers[0], numbers[1], name)


def agent_config(creds: Credentials, mqtt_url: str, ca_file: Path | None = None) -> str:
    """The installer's config for ``smartcity edge run --config``: the broker (without any
    login in the URL), the city, the device and its own login. Holds the password: write it
    with :func:`smartcity.dynsec.write_secret` (owner-only)."""
    host, port, tls, _, _ = mqtt_endpoint(mqtt_url)
    url = f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"
    lines = [
        f"# smartcity edge agent for {creds.device_id}, written by smartcity devices. It holds the",
        "# device's broker password: keep it owner-only (0600). Run it with:",
        "#   smartcity edge run --config THIS_FILE",
        f"mqtt_url = {_toml(url)}",
        f"city = {_toml(creds.city)}",
        "",
        "[edge]",
        f"device_type = {_toml(creds.device_type)}",
        f"device_id = {_toml(creds.device_id)}",
        '# how the device is read: "simulated" is the only driver today (see docs/edge.md)',
        'driver = "simulated"',
        f"username = {_toml(creds.username)}",
        f"password = {_toml(creds.password)}",
        "# where readings wait for the broker; default var/edge/<device id>.sqlite under the",
        "# working directory (/var/lib/smartcity-edge with deploy/systemd/smartcity-edge.service)",
        '# outbox = "/var/lib/smartcity-edge/outbox.sqlite"',
    ]
    if ca_file is not None:
        lines.append(f"ca_file = {_toml(str(ca_file))}")
    elif tls:
        lines.append('# ca_file = "/etc/smartcity/ca.pem"  # if the broker\'s CA is a private one')
    if creds.ocpp_password is not None:
        lines += [
            "# A real charger speaks OCPP 1.6J to `smartcity ocpp` instead of running this agent:",
            "# enter in its configuration ws(s)://<gateway>/ocpp/<device id>, charge point id",
            f"# {creds.device_id} and this OCPP password (docs/ocpp.md): {creds.ocpp_password}",
        ]
    return "\n".join(lines) + "\n"


def _toml(text: str) -> str:
    """A TOML basic string (its escapes are JSON's for the characters that need one)."""
    return json.dumps(text)


# -- the steps every operation shares --------------------------------------------------------


@contextmanager
def _attempt(session: Session, actor: str, action: str, device_id: str) -> Iterator[None]:
    """On a refusal or failure: roll the registry back, then record the attempt on its own.

    A registry error escaping the steps (a read or a flush, before the broker is changed) is a
    :class:`Failed` too."""
    try:
        yield
    except (ProvisioningError, SQLAlchemyError) as caught:
        exc = caught
        if not isinstance(caught, ProvisioningError):
            exc = Failed(f"the registry failed, nothing was changed: {caught}")
        session.rollback()
        outcome = "failed" if isinstance(exc, Failed) else "refused"
        known = device_id if re.fullmatch(DEVICE_ID_PATTERN, device_id) else None
        detail = {} if known else {"device_id": device_id[:80]}
        audit.record(
            session, actor=actor, action=action, device_id=known,
            outcome=f"{outcome}: {exc}", detail=detail,
        )  # fmt: skip
        try:
            session.commit()
        except SQLAlchemyError:  # the registry itself failed: the error raised says so
            session.rollback()
        if exc is caught:
            raise
        raise exc from None


def _found(session: Session, device_id: str) -> Device:
    """The registered device whose broker login may be changed: never a service account's,
    which the registry does not stop a device from being named after (``ingest``...)."""
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(f"device {device_id!r} is not in the registry")
    if device_id in SERVICE_LOGINS:
        raise InvalidDevice(
            f"{device_id!r} is a service account's name: its broker login is not a device's "
            "(remove the device from the registry and register it under another id)"
        )
    return device


def _registered(session: Session, device_id: str) -> Device:
    device = _found(session, device_id)
    if device.revoked_at is not None:
        raise Conflict(
            f"device {device_id!r} was revoked on {device.revoked_at:%Y-%m-%d %H:%M} UTC; "
            "a revoked device gets no new credentials"
        )
    return device


def _make_account(
    session: Session, admin: Admin, city: str, device_type: str, device_id: str,
    registered_before: bool = False,
) -> Credentials:  # fmt: skip
    """Steps 1-3 for a new broker client: flush, make the client, commit (or undo)."""
    device = session.get(Device, device_id)
    ocpp_password = _new_ocpp_password(device) if device is not None else None
    try:
        session.flush()
    except IntegrityError:  # registered meanwhile by someone else
        raise Duplicate(
            f"device {device_id!r} is already registered; nothing was changed"
        ) from None
    except SQLAlchemyError as exc:
        raise Failed(f"the registry failed, nothing was changed: {exc}") from None
    password = new_password()
    try:
        _add_device(admin, device_type, device_id, password, city)
    except ValueError as exc:
        raise InvalidDevice(str(exc)) from None
    except BrokerAccountError as exc:
        if "already exists" in str(exc) and registered_before:
            raise Duplicate(
                f"device {device_id!r} already has a broker account; nothing was changed (a "
                f"new password: POST /v1/devices/{device_id}/credentials?rotate=true or "
                f"smartcity devices rotate {device_id})"
            ) from None
        if "already exists" in str(exc):
            raise Duplicate(
                f"the broker already has an account {device_id!r} (made outside the registry, "
                f"e.g. by smartcity broker add-device); nothing was changed: {exc}"
            ) from None
        # a role made before the broker failed; if it is unreachable now, a role may stay
        # behind, which grants nothing without a client
        with suppress(BrokerAccountError):
            _delete_account(admin, device_id)
        raise Failed(f"the broker failed, nothing was changed: {exc}") from None
    _commit(session, undo=lambda: _delete_account(admin, device_id))
    return Credentials(device_type, device_id, password, city, ocpp_password)


def _new_ocpp_password(device: Device) -> str | None:
    """A new OCPP password for a charger, its hash set on the (uncommitted) registry row; None
    for a device that speaks no OCPP."""
    if device.device_type != OCPP_DEVICE_TYPE:
        return None
    password = charger_auth.new_password()
    device.ocpp_password_hash = charger_auth.hash_password(password)
    return password


def _add_device(admin: Admin, device_type: str, device_id: str, password: str, city: str) -> None:
    """:func:`broker_accounts.add_device`, past a role without a client: what a broker that
    failed between the two steps of an earlier attempt leaves (it grants nothing alone)."""
    try:
        broker_accounts.add_device(admin, device_type, device_id, password, city)
    except BrokerAccountError as exc:
        if "Role already exists" not in str(exc) or _has_client(admin, device_id):
            raise
        _delete_account(admin, device_id)
        broker_accounts.add_device(admin, device_type, device_id, password, city)


def _has_client(admin: Admin, device_id: str) -> bool:
    try:
        broker_accounts.get_client(admin, device_id)
    except BrokerAccountError as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _commit(session: Session, undo: Callable[[], None] | None) -> None:
    try:
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        if undo is None:
            raise Failed(f"the registry failed: {exc}") from None
        try:
            undo()
        except BrokerAccountError as again:
            raise Failed(
                f"the registry failed ({exc}) and undoing the broker change failed too "
                f"({again}): check the device with smartcity broker, then try again"
            ) from None
        raise Failed(f"the registry failed, the broker change was undone: {exc}") from None


def _delete_account(admin: Admin, device_id: str) -> None:
    """Remove a device's client and role, whichever exist; raise if the broker fails."""
    role = DEVICE_ROLE_PREFIX + device_id
    for command in (
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": role},
    ):
        try:
            broker_accounts.run(admin, command)
        except BrokerAccountError as exc:
            if not _not_found(exc):
                raise


def _not_found(exc: BrokerAccountError) -> bool:
    return "not found" in str(exc).lower()
