"""A block save that lost the race to register its type is tried again once."""

import pytest
from prefect.exceptions import ObjectAlreadyExists

from blocks.saving import save_block


class _Racy:
    """A block whose first save meets another process' first save of its type."""

    def __init__(self, failures: int) -> None:
        self.failures, self.saved = failures, []

    def save(self, name: str, overwrite: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise ObjectAlreadyExists(http_exc=Exception("409 Conflict"))
        self.saved.append((name, overwrite))


def test_a_lost_race_is_tried_again_once() -> None:
    block = _Racy(failures=1)
    save_block(block, "plc-1")  # type: ignore[arg-type]
    assert block.saved == [("plc-1", True)]


def test_a_second_conflict_is_raised() -> None:
    with pytest.raises(ObjectAlreadyExists):
        save_block(_Racy(failures=2), "plc-1")  # type: ignore[arg-type]
