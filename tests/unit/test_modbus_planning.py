"""Request planning, with the cases Telegraf's modbus input documents for its optimiser."""

import pytest

from shopfloor.errors import ShopfloorError
from shopfloor.modbus.decoding import RequestDecoder
from shopfloor.modbus.planning import plan_requests
from shopfloor.modbus.tags import TagSpec


def _t(name: str, address: int, data_type: str = "uint16", register_type: str = "holding",
       **kw) -> TagSpec:
    return TagSpec(name=name, column=name, address=address, data_type=data_type,
                   register_type=register_type, **kw)


def _spans(plan) -> list[tuple[str, int, int]]:
    return [(r.register_type, r.address, r.count) for r in plan]


def test_contiguous_fields_become_one_request():
    tags = [_t("a", 0), _t("b", 1, "float32"), _t("c", 3, "int64"), _t("d", 7)]
    assert _spans(plan_requests(tags, max_gap=0)) == [("holding", 0, 8)]


def test_order_of_the_map_does_not_matter():
    tags = [_t("d", 7), _t("a", 0), _t("c", 3, "int64"), _t("b", 1, "float32")]
    plan = plan_requests(tags, max_gap=0)
    assert _spans(plan) == [("holding", 0, 8)]
    assert [t.name for t in plan[0].tags] == ["a", "b", "c", "d"]


def test_gaps_up_to_the_fill_limit_are_read_through_and_larger_ones_split():
    tags = [_t("a", 0), _t("b", 5), _t("c", 20)]
    assert _spans(plan_requests(tags, max_gap=4)) == [("holding", 0, 6), ("holding", 20, 1)]
    assert _spans(plan_requests(tags, max_gap=3)) == [
        ("holding", 0, 1), ("holding", 5, 1), ("holding", 20, 1)]
    assert _spans(plan_requests(tags, max_gap=14)) == [("holding", 0, 21)]


def test_requests_never_exceed_125_registers():
    tags = [_t(f"r{i}", i * 2, "float32") for i in range(100)]  # 200 registers
    plan = plan_requests(tags, max_gap=0)
    assert _spans(plan) == [("holding", 0, 124), ("holding", 124, 76)]
    assert sum(len(r.tags) for r in plan) == 100  # no float32 split across two reads


def test_a_smaller_device_maximum_is_honoured():
    tags = [_t(f"r{i}", i) for i in range(30)]
    assert _spans(plan_requests(tags, max_registers=10, max_gap=0)) == [
        ("holding", 0, 10), ("holding", 10, 10), ("holding", 20, 10)]


def test_coils_and_discrete_inputs_go_up_to_2000_bits():
    coils = [_t(f"c{i}", i, "bool", "coil") for i in range(2500)]
    assert _spans(plan_requests(coils)) == [("coil", 0, 2000), ("coil", 2000, 500)]
    inputs = [_t("d0", 0, "bool", "discrete"), _t("d1", 3, "bool", "discrete")]
    assert _spans(plan_requests(inputs, max_bits=2)) == [("discrete", 0, 1), ("discrete", 3, 1)]


def test_register_types_never_share_a_request():
    tags = [_t("h", 0), _t("i", 1, register_type="input"),
            _t("c", 2, "bool", "coil"), _t("d", 3, "bool", "discrete")]
    assert _spans(plan_requests(tags)) == [
        ("coil", 2, 1), ("discrete", 3, 1), ("holding", 0, 1), ("input", 1, 1)]


def test_bit_tags_of_one_register_share_it():
    tags = [_t("b0", 4, "bit", bit=0), _t("b7", 4, "bit", bit=7), _t("v", 5)]
    plan = plan_requests(tags, max_gap=0)
    assert _spans(plan) == [("holding", 4, 2)]
    decoder = RequestDecoder(plan[0].tags, plan[0].address, plan[0].count)
    assert decoder([0b1000_0001, 42]) == {"b0": 1.0, "b7": 1.0, "v": 42}


def test_a_tag_longer_than_the_device_maximum_is_rejected_by_name():
    tags = [_t("serial_no", 0, "string", length=20)]
    with pytest.raises(ShopfloorError, match="serial_no"):
        plan_requests(tags, max_registers=16)


@pytest.mark.parametrize("kw", [{"max_registers": 0}, {"max_registers": 126},
                                {"max_bits": 2001}, {"max_gap": -1}])
def test_limits_out_of_range_are_rejected(kw):
    with pytest.raises(ShopfloorError):
        plan_requests([_t("a", 0)], **kw)


def test_planning_cuts_requests_tenfold_for_blocky_maps():
    tags = [_t(f"t{i}", base + i) for base in (0, 100, 200) for i in range(20)]
    assert len(plan_requests(tags)) == 3  # 60 tags, 3 reads
