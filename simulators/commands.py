"""The simulated fleet answers its devices' commands as their edge agents would.

Each command is validated and answered with :func:`smartcity.commands.answer` (the code edge
agents use) and carried out by the simulated device's own ``apply`` (the code the edge agent's
``simulated`` driver runs): a dimmed lamp reports the new level from its next reading, a
disabled connector reports ``Unavailable``. The fleet subscribes to its city's command topics
(the ``simulator`` broker account may read them, smartcity/broker_acl.py) and ignores commands
for devices it does not simulate.
"""

from __future__ import annotations

import logging

from simulators.base import SimulatedDevice
from smartcity import commands
from smartcity.contract import InvalidMessage, encode, parse_topic, subscription, topic

log = logging.getLogger("smartcity.simulate")


class FleetCommands:
    def __init__(self, fleet: list[SimulatedDevice], city: str) -> None:
        self.city = city
        self.devices = {(d.device_type.name, d.device_id): d for d in fleet}
        self.filter = subscription("cmd", city)

    def handle(self, topic_name: str, payload: bytes) -> tuple[str, bytes] | None:
        """The ``cmd_result`` topic and payload to publish, or None if the command is not for
        a device of this fleet."""
        try:
            where = parse_topic(topic_name)
        except InvalidMessage:
            return None
        device = self.devices.get((where.device_type, where.device_id))
        if where.channel != "cmd" or where.city != self.city or device is None:
            return None
        result = commands.answer(where.device_type, payload, device.apply)
        log.info(
            "command answered",
            extra={"device_id": where.device_id, "id": result.id, "status": result.status},
        )
        answer_topic = topic(where.device_type, where.device_id, "cmd_result", self.city)
        return answer_topic, encode(result)
