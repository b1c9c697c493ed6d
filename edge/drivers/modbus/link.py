"""One Modbus port (a TCP gateway or an RS-485 line) through pymodbus's synchronous clients.

The driver runs on its own thread (``edge.drivers.thread``), so the blocking clients are the
simple and right choice: a request waits at most ``timeout`` per try. Every failure comes out
as :class:`LinkError` with a reason an installer can act on (the exception code's name, "no
answer", "connection refused"); ``lost`` says whether the port must be opened again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pymodbus import ExceptionResponse, FramerType, ModbusException
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from edge.drivers.modbus.errors import LinkError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pymodbus.pdu import ModbusPDU

    from edge.drivers.modbus.driver import ModbusOptions

# our errors carry the reason and the agent reports them once; pymodbus would log each retry
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

#: Modbus exception codes (Modbus Application Protocol v1.1b3, section 7).
EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class Link:
    def __init__(self, options: ModbusOptions) -> None:
        self.client: ModbusTcpClient | ModbusSerialClient
        if options.transport == "tcp":
            assert options.host is not None  # checked by ModbusOptions
            self.where = f"tcp {options.host}:{options.port}"
            self.client = ModbusTcpClient(
                options.host, port=options.port, timeout=options.timeout, retries=options.retries
            )
        else:
            assert options.serial_port is not None
            self.where = (
                f"rtu {options.serial_port} {options.baudrate} "
                f"{options.bytesize}{options.parity}{options.stopbits}"
            )
            self.client = ModbusSerialClient(
                options.serial_port,
                framer=FramerType.RTU,
                baudrate=options.baudrate,
                bytesize=options.bytesize,
                parity=options.parity,
                stopbits=options.stopbits,
                timeout=options.timeout,
                retries=options.retries,
            )

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def connect(self) -> None:
        if not self.client.connect():
            self.client.close()
            raise LinkError(f"cannot open {self.where}", lost=True)

    def read(self, slave_id: int, function: str, start: int, count: int) -> list[int]:
        call = (
            self.client.read_holding_registers
            if function == "holding"
            else self.client.read_input_registers
        )
        response = self._run(lambda: call(start, count=count, device_id=slave_id))
        registers = list(response.registers)
        if len(registers) < count:
            raise LinkError(f"answered {len(registers)} registers of {count}")
        return registers[:count]

    def write(self, slave_id: int, address: int, words: list[int]) -> None:
        if len(words) == 1:
            self._run(lambda: self.client.write_register(address, words[0], device_id=slave_id))
        else:
            self._run(lambda: self.client.write_registers(address, words, device_id=slave_id))

    def close(self) -> None:
        self.client.close()

    def _run(self, request: Callable[[], ModbusPDU]) -> ModbusPDU:
        try:
            response = request()
        except ConnectionException as exc:
            self.client.close()
            raise LinkError(f"connection lost ({exc})", lost=True) from None
        except ModbusIOException:
            # no answer in time: the port may be fine (another unit answers), or the device is
            # gone; the caller reopens the port when every unit went silent
            raise LinkError("no answer (timeout)", silent=True) from None
        except (ModbusException, OSError) as exc:
            self.client.close()
            raise LinkError(f"{type(exc).__name__}: {exc}", lost=True) from None
        if isinstance(response, ExceptionResponse) or response.isError():
            code = getattr(response, "exception_code", 0)
            name = EXCEPTION_CODES.get(code, "unknown exception")
            raise LinkError(f"exception code {code} ({name})")
        return response
