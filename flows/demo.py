"""The embedded end-to-end run behind ``shopfloor demo``: no servers, nothing to configure."""

import os
import time
from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_table_artifact

from blocks.bootstrap import bootstrap_blocks
from blocks.databases import init_databases
from shopfloor.settings import shopfloor_home

Step = Callable[[], list[str]]


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


def demo_steps() -> list[tuple[str, Step]]:
    """The demo's steps in order; each later part of the suite adds its own."""
    from flows.aggregation_demo import aggregation_demo_step
    from flows.compaction_demo import compaction_demo_step
    from flows.modbus_demo import modbus_demo_step
    from flows.spark_demo import spark_demo_step

    return [("set up", setup_step), ("modbus capture", modbus_demo_step),
            ("hourly aggregation", aggregation_demo_step),
            ("s3 compaction", compaction_demo_step),
            ("spark extraction", spark_demo_step)]


@flow(name="demo", log_prints=False)
def demo() -> None:
    """Run the whole chain on embedded defaults: SQLite, local folders, ephemeral Prefect.

    Prints what every step did and ends with a table artifact of the steps' durations.
    """
    summary = []
    for title, step in demo_steps():
        print(f"== {title}", flush=True)
        started = time.perf_counter()
        lines = step()
        for line in lines:
            print(line, flush=True)
        summary.append({"step": title, "seconds": round(time.perf_counter() - started, 2),
                        "lines printed": len(lines)})
    create_table_artifact(summary, key="demo", description="The embedded demo's steps")
