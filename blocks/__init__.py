"""Custom blocks and their bootstrap from the environment."""

from blocks.modbus import ModbusDevice

__all__ = ["ModbusDevice"]
