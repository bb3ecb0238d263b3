"""The embedded end-to-end run behind ``shopfloor demo``: no servers, nothing to configure.

The flow lives with its steps (they call the other flows as plain functions, so this
package sits above ``flows/``); its deployment's entrypoint is ``demo_steps/flow.py:demo``.
"""

import time
from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_table_artifact

from demo_steps.aggregation import aggregation_demo_step
from demo_steps.anomaly import anomaly_demo_step
from demo_steps.compaction import compaction_demo_step
from demo_steps.modbus import modbus_demo_step
from demo_steps.prepare import setup_step
from demo_steps.quality import quality_demo_step
from demo_steps.spark import spark_demo_step
from tasks.outcomes import ON_FAILURE

Step = Callable[[], list[str]]


def demo_steps() -> list[tuple[str, Step]]:
    """The demo's steps in order; each later part of the suite adds its own."""
    return [("set up", setup_step), ("modbus capture", modbus_demo_step),
            ("hourly aggregation", aggregation_demo_step),
            ("anomaly detection", anomaly_demo_step),
            ("s3 compaction", compaction_demo_step),
            ("spark extraction", spark_demo_step),
            ("quality and daily rollups", quality_demo_step)]


@flow(name="demo", log_prints=False, on_failure=ON_FAILURE)
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
