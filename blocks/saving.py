"""Saving a block when other processes may be saving one of the same type at once."""

from prefect.blocks.core import Block
from prefect.exceptions import ObjectAlreadyExists


def save_block(block: Block, name: str) -> None:
    """``block.save(name, overwrite=True)``, tried again once when the first save lost a
    race: two first saves of a new block type (two ``shopfloor modbus add-device`` at
    once) both find the type missing, and the second one's create gets 409 from the
    server; the type is there by then, so the second try only writes the document."""
    try:
        block.save(name, overwrite=True)
    except ObjectAlreadyExists:
        block.save(name, overwrite=True)
