"""FLOAT16, single bytes, bitfields and string register locations in the tag spec, the
map file's errors by line and key, and the planning workarounds (no server)."""

import math
import random
import struct
from pathlib import Path

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.decoding import RequestDecoder, decode, decode_raw, encode, encode_raw
from shopfloor.modbus.planning import plan_requests
from shopfloor.modbus.tags import TagSpec, load_register_map, parse_register_map


def _tag(data_type: str, address: int = 0, **kw: object) -> TagSpec:
    return TagSpec(name=kw.pop("name", "t"), column=kw.pop("column", "c"), address=address,
                   data_type=data_type, **kw)  # type: ignore[arg-type]


def _entry(data_type: str, **kw: object) -> dict[str, object]:
    """A map entry as a file holds it (unchecked)."""
    return {"name": "t", "column": "c", "address": 0, "data_type": data_type, **kw}


def test_float16_matches_struct_in_both_byte_orders():
    for value in (21.5, -0.125, 65504.0, 6.103515625e-05):
        word = struct.unpack(">H", struct.pack(">e", value))[0]
        assert decode_raw(_tag("float16"), [word]) == value
        swapped = ((word & 0xFF) << 8) | (word >> 8)
        assert decode_raw(_tag("float16", byte_order="BA"), [swapped]) == value
        assert encode_raw(_tag("float16", byte_order="BA"), value) == [swapped]
    assert math.isnan(decode(_tag("float16"), [0x7E00]))


@pytest.mark.parametrize("data_type, word, value", [
    ("int8l", 0x12FB, -5), ("int8h", 0xFB12, -5), ("uint8l", 0x12FB, 251),
    ("uint8h", 0xFB12, 251), ("int8l", 0x127F, 127), ("int8h", 0x8000, -128),
])
def test_single_bytes_of_a_register(data_type: str, word: int, value: int):
    tag = _tag(data_type)
    assert decode_raw(tag, [word]) == value
    assert encode_raw(tag, value)[0] == word & (0x00FF if data_type.endswith("l") else 0xFF00)


def test_byte_order_applies_before_the_byte_is_taken():
    # BA: the register's bytes swapped first, so the "high" byte is the one sent second
    assert decode_raw(_tag("uint8h", byte_order="BA"), [0x12AB]) == 0xAB
    assert decode_raw(_tag("uint8l", byte_order="BA"), [0x12AB]) == 0x12


def test_bitfields_are_unsigned_and_scaled():
    mode = _tag("bitfield", bit=4, bit_count=3)
    assert decode_raw(mode, [0b1111_1111_1101_1111]) == 0b101
    assert encode_raw(mode, 5) == [0b101 << 4]
    step = _tag("bitfield", bit=8, bit_count=8, scale=0.1)
    assert decode(step, [0xFF00]) == pytest.approx(25.5)
    assert encode(step, 25.5) == [0xFF00]


def test_string_register_locations():
    lower = _tag("string", length=3, string_register_location="lower")
    upper = _tag("string", length=3, string_register_location="upper")
    assert encode_raw(lower, "ABC") == [0x0041, 0x0042, 0x0043]
    assert encode_raw(upper, "AB") == [0x4100, 0x4200, 0x0000]
    assert decode_raw(lower, [0x0041, 0x0042, 0x0000]) == "AB"
    assert decode_raw(upper, [0x4100, 0x4200, 0x4300]) == "ABC"
    assert decode_raw(_tag("string", length=2), [0x0041, 0x0042]) == ""  # both: NUL first


def test_request_decoder_equals_the_reference_for_sub_register_tags():
    tags = [_tag("float16", 0, name="h", column="h"),
            _tag("int8l", 1, name="a", column="a"), _tag("uint8h", 1, name="b", column="b"),
            _tag("bit", 2, name="f", column="f", bit=0),
            _tag("bitfield", 2, name="m", column="m", bit=1, bit_count=5, scale=2.0),
            _tag("float16", 3, name="s", column="s", byte_order="BA", offset=1.0)]
    rng = random.Random(3)
    for _ in range(50):
        words = [rng.randrange(65536) for _ in range(4)]
        got = RequestDecoder(tags, 0, 4)(words)
        batch = RequestDecoder(tags, 0, 4).batch([words])
        for t in tags:
            want = decode(t, words[t.address:t.end])
            for value in (got[t.name], batch[t.name][0]):
                assert value == want or (math.isnan(value) and math.isnan(want)), t.name


@pytest.mark.parametrize("entries, message", [
    ([_entry("bitfield", bit=4)], "a bitfield needs bit .* and bit_count"),
    ([_entry("bitfield", bit=10, bit_count=2) | {"bit_count": 8}],
     "bit 10 \\+ bit_count 8 runs past bit 15"),
    ([_entry("uint16") | {"bit_count": 3}], "bit_count is only for bitfield"),
    ([_entry("int8l") | {"bit": 2}], "int8l is a whole byte"),
    ([_entry("uint16") | {"string_register_location": "lower"}],
     "string_register_location is only for string"),
    ([_entry("string", length=2) | {"string_register_location": "middle"}],
     "string_register_location"),
    ([_entry("int8l", name="a", column="a"),
      _entry("uint8l", name="b", column="b")], "tag 'b' overlaps tag 'a'"),
    ([_entry("int8h", name="a", column="a"),
      _entry("bitfield", name="b", column="b", bit=6, bit_count=3)],
     "tag 'b' overlaps tag 'a'"),
    ([_entry("bit", name="a", column="a", bit=5),
      _entry("bitfield", name="b", column="b", bit=4, bit_count=2)],
     "tag 'a' overlaps tag 'b'"),
])
def test_invalid_sub_register_tags_are_refused(entries, message):
    with pytest.raises(ShopfloorError, match=message):
        parse_register_map(entries)


def test_parts_of_one_register_that_do_not_share_bits_are_a_valid_map():
    tags = parse_register_map([
        _entry("int8l", name="a", column="a"),
        _entry("bitfield", name="b", column="b", bit=8, bit_count=4),
        _entry("bit", name="c", column="c", bit=12),
        _entry("bitfield", name="d", column="d", bit=13, bit_count=3),
    ])
    assert [r.count for r in plan_requests(tags)] == [1]


MAP_WITH_A_BAD_KEY = """\
# a comment, so lines are not indexes
tags:
  - name: half
    column: half
    address: 0
    data_type: float16
  - name: mode
    column: mode
    address: 1
    data_type: bitfeld
    bit: 4
"""


def test_a_map_file_error_names_the_line_and_the_key(tmp_path: Path):
    path = tmp_path / "plc.yaml"
    path.write_text(MAP_WITH_A_BAD_KEY)
    with pytest.raises(ShopfloorError, match="plc.yaml: .*line 10: tag 'mode' data_type"):
        load_register_map(path)
    path.write_text(MAP_WITH_A_BAD_KEY.replace("bitfeld", "bitfield"))
    # a rule over several keys names the tag's first line
    with pytest.raises(ShopfloorError, match="line 7: tag 'mode': a bitfield needs"):
        load_register_map(path)
    path.write_text(MAP_WITH_A_BAD_KEY.replace("bitfeld", "bitfield").replace(
        "    bit: 4", "    bit: 4\n    bit_count: 3\n    string_register_location: upper"))
    with pytest.raises(ShopfloorError, match="line 7: tag 'mode': string_register_location"):
        load_register_map(path)
    path.write_text(MAP_WITH_A_BAD_KEY.replace("bitfeld", "bitfield").replace(
        "    bit: 4", "    bit: 4\n    bit_count: 3\n    scale: lots"))
    with pytest.raises(ShopfloorError, match="line 13: tag 'mode' scale"):
        load_register_map(path)


def test_one_request_per_tag_never_merges():
    tags = [_tag("uint16", a, name=f"t{a}", column=f"c{a}") for a in (0, 1, 2, 5)]
    tags.append(_tag("bit", 6, name="f", column="f", bit=0))
    tags.append(_tag("bit", 6, name="g", column="g", bit=1))
    assert len(plan_requests(tags)) == 1
    single = plan_requests(tags, one_per_tag=True)
    assert [(r.address, r.count, [t.name for t in r.tags]) for r in single] == [
        (0, 1, ["t0"]), (1, 1, ["t1"]), (2, 1, ["t2"]), (5, 1, ["t5"]), (6, 1, ["f"]),
        (6, 1, ["g"])]


def test_coils_from_zero_widens_only_the_first_coil_read():
    coils = [TagSpec(name=f"k{a}", column=f"k{a}", register_type="coil", address=a,
                     data_type="bool") for a in (40, 41, 3000)]
    holding = [_tag("uint16", 7, name="h", column="h")]
    plan = plan_requests(coils + holding, coils_from_zero=True)
    assert [(r.register_type, r.address, r.count) for r in plan] == [
        ("coil", 0, 42), ("coil", 3000, 1), ("holding", 7, 1)]
    with pytest.raises(ShopfloorError, match="read_coils_starting_at_zero"):
        plan_requests(coils, max_bits=20, coils_from_zero=True)


def test_a_maps_workarounds_are_checked_by_line_and_key(tmp_path: Path):
    from shopfloor.modbus.tags import load_device_map

    path = tmp_path / "plc.yaml"
    path.write_text("workarounds:\n  pause_between_requests_seconds: 0.2\n"
                    "  read_coils_starting_at_zero: true\n" + MAP_WITH_A_BAD_KEY.replace(
                        "bitfeld", "uint16").replace("    bit: 4\n", ""))
    tags, workarounds = load_device_map(path)
    assert len(tags) == 2
    assert workarounds == {"pause_between_requests_seconds": 0.2,
                           "read_coils_starting_at_zero": True}
    for bad, message in [
        ("  pause_between_requests_seconds: -1", "line 2: workarounds "
         "pause_between_requests_seconds: Input should be greater than or equal to 0"),
        ("  pause_between_requests_seconds: 90", "line 2: .*less than or equal to 60"),
        ("  pause_between_request: 0.2", "line 2: workarounds pause_between_request: Extra"),
    ]:
        path.write_text(path.read_text().splitlines()[0] + "\n" + bad + "\n"
                        + "\n".join(path.read_text().splitlines()[2:]) + "\n")
        with pytest.raises(ShopfloorError, match=message):
            load_device_map(path)
    path.write_text("tag: []\n")
    with pytest.raises(ShopfloorError, match="unknown section tag"):
        load_device_map(path)


def test_stale_after_is_checked_in_the_map():
    import pytest
    from pydantic import ValidationError

    from shopfloor.modbus.tags import TagSpec

    assert TagSpec(name="t", column="t", address=0, stale_after=60).stale_after == 60
    with pytest.raises(ValidationError, match="stale_after is for numbers, not string tags"):
        TagSpec(name="s", column="s", address=0, data_type="string", length=2, stale_after=3)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        TagSpec(name="t", column="t", address=0, stale_after=0)
