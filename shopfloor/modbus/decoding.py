"""Decode (and, for the simulator, encode) register values of every data type and order.

Byte/word orders name where the value's bytes travel, ``A`` being the most significant:
``ABCD`` big-endian as sent (Modbus default), ``CDAB`` words swapped, ``BADC`` bytes
swapped inside each word, ``DCBA`` fully little-endian. The same letters apply to
64-bit values word by word. 16-bit values take ``AB`` (default) or ``BA``; the 32-bit
names are accepted for them too (only the byte swap matters).
"""

import struct
from collections.abc import Sequence

from shopfloor.modbus.tags import TagSpec

_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}
_BYTE_SWAP = {"BA", "BADC", "DCBA"}
_WORD_SWAP = {"CDAB", "DCBA"}

Value = float | int | bool | str


def _swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def _normalise(words: Sequence[int], order: str, allow_word_swap: bool = True) -> list[int]:
    """Registers rearranged into big-endian ``ABCD`` order (the operation is its own inverse)."""
    out = list(words)
    if allow_word_swap and order in _WORD_SWAP:
        out.reverse()
    if order in _BYTE_SWAP:
        out = [_swap_bytes(w) for w in out]
    return out


def _to_bytes(words: Sequence[int]) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


def _from_bytes(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def decode_raw(tag: TagSpec, words: Sequence[int]) -> Value:
    """The raw (unscaled) value of ``tag`` from its registers, or its bit for coils."""
    if tag.register_type in ("coil", "discrete"):
        return bool(words[0])
    if tag.is_bit:
        return bool((words[0] >> (tag.bit or 0)) & 1)
    if tag.data_type == "string":
        data = _to_bytes(_normalise(words, tag.byte_order, allow_word_swap=False))
        return data.split(b"\x00", 1)[0].decode("latin-1").rstrip()
    data = _to_bytes(_normalise(words, tag.byte_order))
    return struct.unpack(">" + _STRUCT[tag.data_type], data)[0]


def decode(tag: TagSpec, words: Sequence[int]) -> Value:
    """The engineering value of ``tag``: raw value * scale + offset (bools stay 0/1)."""
    raw = decode_raw(tag, words)
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if tag.scale == 1.0 and tag.offset == 0.0 and isinstance(raw, float):
        return raw
    return raw * tag.scale + tag.offset


def encode_raw(tag: TagSpec, raw: Value) -> list[int]:
    """Registers (or one bit as 0/1) that a device would send for the raw value ``raw``."""
    if tag.register_type in ("coil", "discrete"):
        return [1 if raw else 0]
    if tag.is_bit:
        return [(1 << (tag.bit or 0)) if raw else 0]
    if tag.data_type == "string":
        data = str(raw).encode("latin-1")[: 2 * (tag.length or 0)]
        data = data.ljust(2 * (tag.length or 0), b"\x00")
        return _normalise(_from_bytes(data), tag.byte_order, allow_word_swap=False)
    code = _STRUCT[tag.data_type]
    value = raw if code in "fd" else int(raw)
    return _normalise(_from_bytes(struct.pack(">" + code, value)), tag.byte_order)


def encode(tag: TagSpec, value: float) -> list[int]:
    """Registers for the engineering value ``value`` (inverse of :func:`decode`)."""
    if tag.is_bit or tag.data_type == "string":
        return encode_raw(tag, value)
    raw = (value - tag.offset) / tag.scale
    if tag.data_type.startswith(("int", "uint")):
        raw = round(raw)
    return encode_raw(tag, raw)
