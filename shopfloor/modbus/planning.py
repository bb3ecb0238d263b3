"""Request planning: merge a device's tags into as few reads as possible.

Tags of one register type are sorted by address and merged while the next tag starts
at most ``max_gap`` unused registers after the current read and the read stays within
the per-request maximum (125 registers; 2000 bits for coils and discrete inputs, both
lowered per device when a device needs it). This is what Telegraf's ``modbus`` input
does with ``optimization = "max_insert"``.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from shopfloor.errors import UserError
from shopfloor.modbus.decoding import RequestDecoder
from shopfloor.modbus.device import MAX_BITS, MAX_REGISTERS
from shopfloor.modbus.tags import BIT_REGISTER_TYPES, TagSpec


@dataclass
class ReadRequest:
    """One read: a register type, a start address, a count, and the tags it serves."""

    register_type: str
    address: int
    count: int
    tags: list[TagSpec] = field(default_factory=list)
    decoder: RequestDecoder | None = field(default=None, repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.address + self.count


def _limit(register_type: str, max_registers: int, max_bits: int) -> int:
    return max_bits if register_type in BIT_REGISTER_TYPES else max_registers


def _plan_type(tags: list[TagSpec], limit: int, max_gap: int,
               one_per_tag: bool = False) -> list[ReadRequest]:
    requests: list[ReadRequest] = []
    current: ReadRequest | None = None
    for tag in sorted(tags, key=lambda t: (t.address, t.bit or 0)):
        if tag.width > limit:
            raise UserError(
                f"tag {tag.name!r} spans {tag.width} registers, more than the {limit} "
                "this device allows per request")
        if current is not None and not one_per_tag:
            new_end = max(current.end, tag.end)
            if tag.address - current.end <= max_gap and new_end - current.address <= limit:
                current.count = new_end - current.address
                current.tags.append(tag)
                continue
        current = ReadRequest(tag.register_type, tag.address, tag.width, [tag])
        requests.append(current)
    return requests


def plan_requests(
    tags: Iterable[TagSpec],
    max_registers: int = MAX_REGISTERS,
    max_gap: int = 10,
    max_bits: int = MAX_BITS,
    one_per_tag: bool = False,
    coils_from_zero: bool = False,
) -> list[ReadRequest]:
    """The reads that fetch every tag of one device and unit id.

    Args:
        tags: the device's register map.
        max_registers: most registers per read (1..125).
        max_gap: most unused registers (or bits) a merged read may span.
        max_bits: most coils/discrete inputs per read (1..2000).
        one_per_tag: one read per tag, never merged (Telegraf's ``one_request_per_field``).
        coils_from_zero: the first coil read starts at address 0 (Telegraf's
            ``read_coils_starting_at_zero``), widened down to it.

    Raises:
        ShopfloorError: limits out of range, or a tag longer than one read.
    """
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise UserError(f"max_registers must be 1..{MAX_REGISTERS}, got {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise UserError(f"max_bits must be 1..{MAX_BITS}, got {max_bits}")
    if max_gap < 0:
        raise UserError(f"max_gap must be >= 0, got {max_gap}")
    by_type: dict[str, list[TagSpec]] = defaultdict(list)
    for tag in tags:
        by_type[tag.register_type].append(tag)
    plan: list[ReadRequest] = []
    for register_type in ("coil", "discrete", "holding", "input"):
        limit = _limit(register_type, max_registers, max_bits)
        requests = _plan_type(by_type.get(register_type, []), limit, max_gap, one_per_tag)
        if register_type == "coil" and coils_from_zero and requests:
            _start_at_zero(requests[0], limit)
        plan.extend(requests)
    return plan


def _start_at_zero(request: ReadRequest, limit: int) -> None:
    """Widen the first coil read down to address 0 (its tags keep their addresses)."""
    if request.end > limit:
        raise UserError(
            f"read_coils_starting_at_zero: the first coil read would span {request.end} "
            f"coils from address 0, more than the {limit} this device allows per request")
    request.count, request.address = request.end, 0

