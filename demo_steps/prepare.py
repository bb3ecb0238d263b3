"""The demo's first step: blocks and tables on embedded defaults."""

import os

from blocks.bootstrap import bootstrap_blocks
from shopfloor.settings import shopfloor_home
from tasks.databases import init_databases


def _embedded_env() -> dict[str, str]:
    # The demo always runs on embedded defaults, whatever SHOPFLOOR_* or AWS_* say,
    # so it can never overwrite the blocks of a real deployment with demo values.
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHOPFLOOR_", "AWS_"))}
    keep["SHOPFLOOR_HOME"] = str(shopfloor_home())
    return keep


def setup_step() -> list[str]:
    """Blocks on embedded defaults, then every table in the embedded SQLite database."""
    lines = [f"home: {shopfloor_home()}", "blocks:"]
    for r in bootstrap_blocks(_embedded_env(), shopfloor_home()):
        lines.append(f"  {r.name:<24} {r.block_type:<20} {r.summary}")
    lines.append("databases:")
    lines.extend(f"  {line}" for line in init_databases(schema=""))
    return lines
