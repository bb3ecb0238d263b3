"""The tag spec: one entry of a device's register map (format settled by the Modbus issue)."""

from typing import Literal

from pydantic import BaseModel, Field

RegisterType = Literal["coil", "discrete", "holding", "input"]
DataType = Literal[
    "bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "string",
]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB", "AB", "BA"]


class TagSpec(BaseModel):
    """One value read from a device and the column it lands in."""

    name: str = Field(description="Tag name, unique within the device")
    column: str = Field(description="Target column, e.g. temperature, humidity, pcv_temperature")
    register_type: RegisterType = Field(default="holding", description="Register type")
    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    data_type: DataType = Field(default="int16")
    byte_order: ByteOrder = Field(default="ABCD", description="Byte/word order")
    bit: int | None = Field(default=None, ge=0, le=15, description="Bit index for bit tags")
    length: int | None = Field(default=None, ge=1, description="Registers, for strings")
    scale: float = 1.0
    offset: float = 0.0
    min_value: float | None = Field(default=None, description="Lowest valid value")
    max_value: float | None = Field(default=None, description="Highest valid value")
