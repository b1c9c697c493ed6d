"""A Modbus slave for the tests: pymodbus's own server, TCP or RTU, holding given registers.

Run as a child process (so a test can SIGKILL it like a power cut):
``python tests/modbus_server.py (--tcp PORT | --serial PATH) REGISTERS_JSON``, where the JSON is
``{"<slave id>": {"holding": {"<address>": [word, ...]}, "input": {...}}}``: each entry is a
run of registers from that address; every other address answers "illegal data address", as a
real device does for registers it does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from pymodbus import FramerType
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice


def devices(spec: dict[str, dict[str, dict[str, list[int]]]]) -> list[SimDevice]:
    out = []
    for slave_id, tables in spec.items():

        def runs(kind: str, tables: dict[str, dict[str, list[int]]] = tables) -> list[SimData]:
            given = sorted(tables.get(kind, {}).items(), key=lambda i: int(i[0]))
            return [
                SimData(int(address), values=words, datatype=DataType.REGISTERS)
                for address, words in given
            ] or [SimData(0, datatype=DataType.INVALID)]  # pymodbus wants a block in each table

        bits = [SimData(0, values=False, datatype=DataType.BITS)]  # no coils used: one dummy
        out.append(SimDevice(int(slave_id), simdata=(bits, bits, runs("holding"), runs("input"))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT")
    where.add_argument("--serial", metavar="PATH")
    parser.add_argument("registers")
    args = parser.parse_args()
    slaves = devices(json.loads(args.registers))
    if args.tcp:
        server = StartAsyncTcpServer(slaves, address=("127.0.0.1", args.tcp))
    else:
        server = StartAsyncSerialServer(
            slaves,
            port=args.serial,
            framer=FramerType.RTU,
            baudrate=19200,
        )
    asyncio.run(server)


if __name__ == "__main__":
    main()
