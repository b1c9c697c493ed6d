"""The link's failure, in a module of its own so the driver can catch it without pymodbus."""

from __future__ import annotations


class LinkError(Exception):
    """A request or the port failed; the message is the reason an installer acts on."""

    def __init__(self, reason: str, *, lost: bool = False, silent: bool = False) -> None:
        super().__init__(reason)
        #: the port is closed and must be opened again
        self.lost = lost
        #: the unit did not answer in time (a whole silent bus means the line, not a device)
        self.silent = silent
