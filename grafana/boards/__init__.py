"""Every board, the folder it goes in, and its stable uid (links and bookmarks rely on it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from grafana.boards import alerts, overview, pipeline, service
from grafana.panels import PANELS
from grafana.sdk import dashboard, to_json


@dataclass(frozen=True)
class Folder:
    uid: str
    title: str


#: Boards for the people who run the city's services, with the alert rules.
SERVICES = Folder("cremona-servizi", "Cremona - Servizi urbani")
#: The platform team's board.
PLATFORM = Folder("cremona-piattaforma", "Cremona - Piattaforma dati")
FOLDERS = (SERVICES, PLATFORM)


@dataclass(frozen=True)
class Board:
    uid: str
    folder: Folder
    build: Callable[[], dashboard.Dashboard]

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_json(self.build().build())
        if data.get("uid") != self.uid:
            raise ValueError(f"board registered as {self.uid!r} builds uid {data.get('uid')!r}")
        return data


BOARDS: tuple[Board, ...] = (
    Board(overview.UID, SERVICES, overview.build),
    *(Board(p.board_uid, SERVICES, partial(service.build, p)) for p in PANELS.values()),
    Board(alerts.UID, SERVICES, partial(alerts.build, SERVICES.uid)),
    Board(pipeline.UID, PLATFORM, pipeline.build),
)
