"""``shopfloor mqtt``: check a configuration, ingest now."""

from pathlib import Path
from typing import Annotated, Any

import typer

from deployments.flowcli import flow_command

mqtt_app = typer.Typer(no_args_is_help=True)


@mqtt_app.command("check")
def check(config: Annotated[Path, typer.Argument(help="YAML configuration file.")]) -> None:
    """Validate a configuration and print what it subscribes to (nothing connects)."""
    from shopfloor.mqtt.config import load_config

    cfg = load_config(config)
    typer.echo(f"client {cfg.broker.client_id} at {cfg.broker.host}:{cfg.broker.port}, "
               f"session kept {cfg.broker.session_expiry_seconds} s")
    for t in cfg.json_topics:
        typer.echo(f"json {t.topic}: {len(t.tags)} tags "
                   f"({', '.join(x.name for x in t.tags)})")
    for g in cfg.sparkplug:
        typer.echo(f"sparkplug group {g.group}" + (f" (location {g.location})"
                                                     if g.location else ""))


@flow_command(mqtt_app, "flows.mqtt_ingest:mqtt_ingest", name="ingest")
def ingest(params: dict[str, Any]) -> None:
    """Run the mqtt-ingest flow now and print what it did."""
    from blocks.resolve import require_blocks
    from flows.mqtt_ingest import mqtt_ingest

    require_blocks(params["target_db"])
    row = mqtt_ingest(**params)
    typer.echo(", ".join(f"{k} {v}" for k, v in row.items() if v != ""))
