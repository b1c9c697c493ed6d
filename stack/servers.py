"""Mosquitto and InfluxDB as child processes with their config and data in one folder.

``smartcity up`` runs the whole pipeline on them and the tests start fresh ones on free ports, so
both run the very configuration documented in ``docs/operations.md``. The tests also start a
PostgreSQL of their own, to run the registry on it as well as on SQLite.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

#: Debian package that provides each server binary.
PACKAGES = {
    "mosquitto": "mosquitto",
    "influxd": "influxdb",
    "mosquitto_sub": "mosquitto-clients",
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_isready": "postgresql",
}
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def _postgresql_bins() -> list[str]:
    """Debian's /usr/lib/postgresql/<version>/bin folders, newest version first (off PATH)."""
    found = glob.glob("/usr/lib/postgresql/[0-9]*/bin")
    return sorted(found, key=lambda d: int(Path(d).parent.name), reverse=True)


class ServerError(RuntimeError):
    """A server could not be found or started; the message says what to do."""


def find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in (*_SBIN, *_postgresql_bins()) if os.access(f"{d}/{name}", os.X_OK)),
        None,
    )
    if found is None:
        package = PACKAGES.get(name, name)
        raise ServerError(
            f"{name} is not installed. On Debian/Ubuntu: sudo apt-get install {package}; "
            f"elsewhere install the {package} package for your system and put {name} on PATH."
        )
    return found


def install_missing(names: tuple[str, ...] = ("mosquitto", "influxd")) -> None:
    """Install missing servers from Debian packages (root on a Debian-like system only)."""
    missing = [n for n in names if _which(n) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        find_binary(missing[0])  # raises with the install hint
    packages = sorted({PACKAGES[n] for n in missing})
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(packages)} from Debian packages...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def _which(name: str) -> str | None:
    try:
        return find_binary(name)
    except ServerError:
        return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class RunAs(TypedDict, total=False):
    """``subprocess.Popen`` arguments that run a server as another account, in its folder."""

    user: int
    group: int
    extra_groups: list[int]
    cwd: Path | None


@dataclass(kw_only=True)
class ChildServer:
    """A server process we own: config written, started, waited for, stopped."""

    name: str
    workdir: Path
    host: str
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def command(self) -> list[str]:
        raise NotImplementedError

    def run_as(self) -> RunAs:
        """Extra ``subprocess.Popen`` arguments for the server process (e.g. its user)."""
        return {}

    def write_config(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_in_use(self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        if port_in_use(self.host, self.port):
            raise ServerError(
                f"port {self.host}:{self.port} for {self.name} is already in use: stop what "
                "listens there or choose another port in the URL setting"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self.run_as(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServerError(f"{self.name} exited at start-up; its log says:\n{tail}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer on {self.host}:{self.port} in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # the port may linger in the kernel for a moment after the process is gone
        deadline = time.monotonic() + 5
        while port_in_use(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(kw_only=True)
class Mosquitto(ChildServer):
    """Mosquitto configured never to drop QoS 1 messages silently for a lagging subscriber.

    Debian's default ``max_queued_messages`` of 1000 discards QoS 1 messages for a subscriber
    that falls behind (we lost 30-70 % of a 200,000 message burst that way), so queue limits,
    in-flight window and persistence are set on purpose in ``mosquitto_limits.conf``, the file
    docker-compose's broker uses too; see ``docs/operations.md``. The two queue limits can be
    overridden per instance (None keeps the shared value).
    """

    name: str = "mosquitto"
    max_queued_messages: int | None = None
    max_queued_bytes: int | None = None
    extra_config: str = ""

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.workdir / "mosquitto.conf")]

    def write_config(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        (self.workdir / "mosquitto.conf").write_text(
            mosquitto_config(
                self.host,
                self.port,
                self.workdir / "data",
                self.max_queued_messages,
                self.max_queued_bytes,
            )
            + self.extra_config
        )


#: The broker limits every deployment shares (local run, tests, docker-compose).
BROKER_LIMITS = Path(__file__).with_name("mosquitto_limits.conf")


def broker_limits(
    max_queued_messages: int | None = None, max_queued_bytes: int | None = None
) -> str:
    """The shared limits file, with the queue limits replaced where given."""
    text = BROKER_LIMITS.read_text()
    for key, value in (
        ("max_queued_messages", max_queued_messages),
        ("max_queued_bytes", max_queued_bytes),
    ):
        if value is not None:
            text = re.sub(rf"^{key} .*$", f"{key} {value}", text, count=1, flags=re.M)
    return text


def mosquitto_config(
    host: str,
    port: int,
    data_dir: Path,
    max_queued_messages: int | None = None,
    max_queued_bytes: int | None = None,
) -> str:
    return f"""# Written by smartcity: this instance's listener and folders, then the shared limits.
per_listener_settings false
listener {port} {host}
allow_anonymous true
user {getpass.getuser()}
persistence_location {data_dir}/

log_type error
log_type warning
log_type notice
connection_messages false

{broker_limits(max_queued_messages, max_queued_bytes)}"""


@dataclass(kw_only=True)
class Influxd(ChildServer):
    """InfluxDB 1.x with data, WAL and meta in the work folder and reporting off."""

    name: str = "influxd"
    rpc_port: int = 0
    max_body_size: int = 50 * 1024 * 1024

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [find_binary("influxd"), "-config", str(self.workdir / "influxdb.conf")]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                return bool(resp.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def write_config(self) -> None:
        if not self.rpc_port:
            self.rpc_port = free_port(self.host)
        w = self.workdir
        (w / "influxdb.conf").write_text(
            f"""# Written by smartcity.
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{w}/meta"
  logging-enabled = false
[data]
  dir = "{w}/data"
  wal-dir = "{w}/wal"
  index-version = "tsi1"
  query-log-enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  max-body-size = {self.max_body_size}
[logging]
  level = "warn"
[monitor]
  store-enabled = false
[continuous_queries]
  log-enabled = false
[subscriber]
  enabled = false
"""
        )


@dataclass(kw_only=True)
class Postgres(ChildServer):
    """PostgreSQL in a fresh cluster: ``initdb``, then ``postgres`` on a loopback TCP port only.

    The cluster trusts local connections for ``user`` (a throw-away test server) and skips
    fsync. PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user that
    Debian's package creates (else ``nobody``), with its data in a folder of its own under the
    system's temporary directory (the work folder's parents may be closed to other users).
    """

    name: str = "postgres"
    user: str = "smartcity"
    data_dir: Path | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def os_user(self) -> pwd.struct_passwd | None:
        """The unprivileged account to run as, or None when we are not root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise ServerError("PostgreSQL will not run as root: create a 'postgres' user")

    def run_as(self) -> RunAs:
        account = self.os_user()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [],
                "cwd": self.data_dir}  # fmt: skip

    def command(self) -> list[str]:
        return [find_binary("postgres"), "-D", str(self.data_dir)]

    def ready(self) -> bool:
        probe = [find_binary("pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
                 "-U", self.user, "-d", "postgres"]  # fmt: skip
        return subprocess.run(probe, check=False).returncode == 0

    def write_config(self) -> None:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="smartcity-postgres-"))
            account = self.os_user()
            if account is not None:
                os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        with self.log_path.open("ab") as log:
            subprocess.run(
                [find_binary("initdb"), "-D", str(self.data_dir), "-U", self.user,
                 "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT, check=True, **self.run_as(),
            )  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "# Written by smartcity: loopback TCP only, no durability needed.\n"
                f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\n"
            )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT): SIGTERM would wait for every client to disconnect."""
        super().stop(sig, timeout)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


# -- the broker's accounts: the dynamic security plugin ------------------------------------------

#: Where Debian (multiarch) and the eclipse-mosquitto image install the plugin.
DYNSEC_PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


def dynsec_plugin() -> str:
    candidates = (*DYNSEC_PLUGIN_PATHS, *glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    found = [p for p in candidates if os.path.exists(p)]
    if not found:
        raise ServerError(
            "Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so) is not "
            "installed: it comes with Mosquitto 2.0 (on Debian/Ubuntu: sudo apt-get install "
            "mosquitto); or run without broker accounts (smartcity up --no-broker-auth)"
        )
    return found[0]


def dynsec_config(config_file: Path) -> str:
    """Config lines refusing anonymous clients and loading the plugin with ``config_file``.

    Pass the result as ``Mosquitto(extra_config=...)``; write the file first
    (:func:`smartcity.dynsec.write_config`).
    """
    return (
        f"\nallow_anonymous false\nplugin {dynsec_plugin()}\nplugin_opt_config_file {config_file}\n"
    )
