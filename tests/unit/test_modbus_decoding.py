"""Decoding every data type and byte/word order against bytes built with struct."""

import math
import struct

import pytest

from shopfloor.modbus.decoding import decode, decode_raw, encode, encode_raw
from shopfloor.modbus.tags import TagSpec

FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q",
           "uint64": "Q", "float32": "f", "float64": "d"}
SAMPLES = {"int16": -12345, "uint16": 54321, "int32": -123456789, "uint32": 3_000_000_001,
           "int64": -1_234_567_890_123, "uint64": 12_345_678_901_234_567_890,
           "float32": -1234.5, "float64": 98765.4321}


def _tag(data_type: str, order: str = "ABCD", **kw) -> TagSpec:
    return TagSpec(name="t", column="c", address=0, data_type=data_type, byte_order=order, **kw)


def _wire_words(fmt: str, value: float, order: str) -> list[int]:
    """Registers as a device sends them, built independently from struct."""
    big = struct.pack(">" + fmt, value)
    if order == "DCBA":  # fully little-endian
        data = struct.pack("<" + fmt, value)
    elif order == "CDAB":  # word order reversed, bytes big-endian in each word
        words = [big[i:i + 2] for i in range(0, len(big), 2)]
        data = b"".join(reversed(words))
    elif order in ("BADC", "BA"):  # bytes swapped inside each word
        data = b"".join(big[i + 1:i + 2] + big[i:i + 1] for i in range(0, len(big), 2))
    else:
        data = big
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@pytest.mark.parametrize("data_type", sorted(SAMPLES))
@pytest.mark.parametrize("order", ["ABCD", "DCBA", "BADC", "CDAB"])
def test_every_type_and_order_matches_struct(data_type: str, order: str):
    value = SAMPLES[data_type]
    words = _wire_words(FORMATS[data_type], value, order)
    tag = _tag(data_type, order)
    assert decode_raw(tag, words) == pytest.approx(value, rel=1e-7)
    assert encode_raw(tag, value) == words


@pytest.mark.parametrize("order, words", [("AB", [0x1234]), ("BA", [0x3412])])
def test_sixteen_bit_orders(order: str, words: list[int]):
    assert decode_raw(_tag("uint16", order), words) == 0x1234


def test_known_float32_bytes_in_word_swapped_order():
    # 21.5 is 0x41AC0000; a CDAB device sends the low word first
    assert decode_raw(_tag("float32", "CDAB"), [0x0000, 0x41AC]) == 21.5
    assert decode_raw(_tag("float32", "ABCD"), [0x41AC, 0x0000]) == 21.5


def test_scale_and_offset_give_engineering_units():
    tag = _tag("int16", scale=0.1, offset=-40.0)
    assert decode(tag, [625]) == pytest.approx(22.5)
    assert decode(tag, encode(tag, 22.5)) == pytest.approx(22.5)


def test_bits_of_a_register_and_coils():
    word = [0b1000_0000_0000_0100]
    assert decode(_tag("bit", bit=2), word) == 1.0
    assert decode(_tag("bit", bit=3), word) == 0.0
    assert decode(_tag("bool", bit=15), word) == 1.0
    coil = TagSpec(name="c", column="c", register_type="coil", address=0, data_type="bool")
    assert decode(coil, [True]) == 1.0 and decode(coil, [False]) == 0.0


def test_strings_stop_at_nul_and_honour_byte_swap():
    words = [int.from_bytes(b"AB", "big"), int.from_bytes(b"C\x00", "big"), 0]
    assert decode(_tag("string", length=3), words) == "ABC"
    swapped = [int.from_bytes(b"BA", "big"), int.from_bytes(b"\x00C", "big"), 0]
    assert decode(_tag("string", "BA", length=3), swapped) == "ABC"
    assert encode_raw(_tag("string", length=3), "ABC") == words


def test_nan_and_infinity_decode_as_such():
    nan = struct.pack(">f", math.nan)
    words = [int.from_bytes(nan[:2], "big"), int.from_bytes(nan[2:], "big")]
    assert math.isnan(decode(_tag("float32"), words))
    assert decode(_tag("float64"), encode_raw(_tag("float64"), math.inf)) == math.inf


@pytest.mark.parametrize("data_type", sorted(SAMPLES))
@pytest.mark.parametrize("order", ["ABCD", "DCBA", "BADC", "CDAB"])
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (0.1, -40.0)])
def test_compiled_decoder_equals_the_reference(data_type, order, scale, offset):
    from shopfloor.modbus.decoding import compile_tag

    tag = _tag(data_type, order, scale=scale, offset=offset)
    words = [0xBEEF] + _wire_words(FORMATS[data_type], SAMPLES[data_type], order) + [0xCAFE]
    fast = compile_tag(tag, 1)(struct.pack(f">{len(words)}H", *words), words)
    assert fast == decode(tag, words[1:-1])


def test_request_decoder_equals_the_reference_for_a_mixed_read():
    import random

    from shopfloor.modbus.decoding import RequestDecoder

    orders = ["ABCD", "DCBA", "BADC", "CDAB"]
    tags, address = [], 3
    for i, data_type in enumerate(sorted(SAMPLES) * 2):
        order = orders[i % 4] if data_type not in ("int16", "uint16") else ["AB", "BA"][i % 2]
        tags.append(TagSpec(name=f"t{i}", column=f"c{i}", address=address, data_type=data_type,
                            byte_order=order, scale=[1.0, 0.5][i % 2], offset=[0.0, 3.0][i % 2]))
        address = tags[-1].end + i % 3  # gaps of 0..2 registers
    tags.append(TagSpec(name="flag", column="flag", address=address, data_type="bit", bit=3))
    tags.append(TagSpec(name="label", column="label", address=address + 1, data_type="string",
                        length=3))
    rng = random.Random(7)
    words = [rng.randrange(65536) for _ in range(address + 6)]
    got = RequestDecoder(tags, 1, len(words) - 1)(words[1:])
    for t in tags:
        want = decode(t, words[t.address:t.end])
        assert got[t.name] == want or (math.isnan(got[t.name]) and math.isnan(want)), t.name
