"""The Docker work pool's base job template, kept in the repo (``docker-pool.json``).

Its defaults are what a flow-run container needs on a single Docker host with a locally
built image: ``image_pull_policy: Never`` (a local tag is never pulled, Prefect issue
12931), ``auto_remove`` (no container left behind), ``network_mode: host`` (127.0.0.1
reaches the Prefect server, the databases and the PLC simulator), the named volumes for
the store-and-forward buffer and the local lake under the image's ``SHOPFLOOR_HOME``, and
``PREFECT_API_URL``. Deployments from prefect.yaml override some of these per deployment
(see README "Run it on Docker").

    python -m deployments.docker_pool [--pool NAME] [--api-url URL] [--print]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).with_name("docker-pool.json")
DEFAULT_POOL = "shopfloor-docker"


def load_template(api_url: str | None = None, path: Path = TEMPLATE) -> dict[str, Any]:
    """The base job template; ``api_url`` replaces the default ``PREFECT_API_URL``."""
    template = json.loads(path.read_text())
    if api_url:
        env = template["variables"]["properties"]["env"]
        env["default"] = {**env.get("default", {}), "PREFECT_API_URL": api_url}
    return template


def defaults(template: dict[str, Any]) -> dict[str, Any]:
    """Every job variable's default, by name (what a deployment gets unless it overrides)."""
    return {name: spec["default"]
            for name, spec in template["variables"]["properties"].items()
            if "default" in spec}


def create_or_update(pool: str, template: dict[str, Any]) -> None:
    """``prefect work-pool create --type docker --overwrite`` with ``template``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(template, f)
    try:
        subprocess.run([str(Path(sys.executable).with_name("prefect")), "work-pool", "create",
                        pool, "--type", "docker", "--base-job-template", f.name,
                        "--overwrite"], check=True)
    finally:
        os.unlink(f.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", default=DEFAULT_POOL)
    parser.add_argument("--api-url", default=os.environ.get("SHOPFLOOR_CONTAINER_API_URL"),
                        help="PREFECT_API_URL inside the containers (default: the "
                             "template's, http://127.0.0.1:4200/api)")
    parser.add_argument("--print", action="store_true", help="print the template only")
    args = parser.parse_args(argv)
    template = load_template(args.api_url)
    if args.print:
        print(json.dumps(template, indent=2))
        return
    create_or_update(args.pool, template)


if __name__ == "__main__":
    main()
