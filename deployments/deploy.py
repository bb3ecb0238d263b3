"""Deploy everything in prefect.yaml: to its Docker work pool, or to a local process pool.

The Docker path is plain ``prefect deploy --all`` (build, push, deploy). The other modes
derive a copy of prefect.yaml (no build/push steps, another pool, a fixed image) and hand
that to the same ``prefect deploy``, so prefect.yaml stays the one source of truth.
"""

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from shopfloor.errors import ShopfloorError, UserError

DEFAULT_DOCKER_POOL = "shopfloor-docker"
DEFAULT_LOCAL_POOL = "shopfloor-process"
Mode = Literal["docker", "docker-no-push", "docker-no-build", "local"]


@dataclass(frozen=True)
class DeployPlan:
    """What to deploy: the derived prefect.yaml content and the pool it targets."""

    config: dict[str, Any]
    pool: str
    pool_type: Literal["docker", "process"]


def project_root() -> Path:
    """The folder holding prefect.yaml (entrypoints are relative to it)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "prefect.yaml").exists():
        return here
    cwd = Path.cwd()
    if (cwd / "prefect.yaml").exists():
        return cwd
    raise UserError("prefect.yaml not found: run from the shopfloor project folder")


def load_config(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "prefect.yaml").read_text())


def _set_pool(config: dict[str, Any], pool: str, job_variables: dict[str, Any] | None) -> None:
    for dep in config["deployments"]:
        wp = dict(dep.get("work_pool") or {})
        wp["name"] = pool
        if job_variables is not None:
            wp["job_variables"] = job_variables
        dep["work_pool"] = wp


def _pause_schedules(config: dict[str, Any]) -> None:
    for dep in config["deployments"]:
        dep["schedules"] = [dict(s, active=False) for s in dep.get("schedules") or []]


def deployment_key(dep: dict[str, Any]) -> str:
    """``<flow function>/<deployment name>``, e.g. ``modbus_capture/every-hour``: how an
    override names a deployment (deployment names alone repeat across flows)."""
    return f"{dep['entrypoint'].rsplit(':', 1)[1]}/{dep['name']}"


OVERRIDABLE = ("schedules", "parameters", "concurrency_limit", "description")


def apply_override(config: dict[str, Any], override: dict[str, Any] | None) -> None:
    """Apply an override file's ``deployments: {<function>/<name>: {...}}`` in place.

    ``schedules``, ``concurrency_limit`` and ``description`` replace; ``parameters`` merge
    into the deployment's own. The soak test compresses the schedules this way, with the
    one prefect.yaml.
    """
    changes = (override or {}).get("deployments") or {}
    deps = {deployment_key(d): d for d in config["deployments"]}
    unknown = sorted(set(changes) - set(deps))
    if unknown:
        raise UserError(f"override names unknown deployments: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(deps))})")
    for key, change in changes.items():
        bad = sorted(set(change) - set(OVERRIDABLE))
        if bad:
            raise UserError(f"override of {key} sets {', '.join(bad)}: only "
                                 f"{', '.join(OVERRIDABLE)} can be overridden")
        dep = deps[key]
        for field in ("schedules", "concurrency_limit", "description"):
            if field in change:
                dep[field] = change[field]
        if "parameters" in change:
            dep["parameters"] = {**(dep.get("parameters") or {}), **change["parameters"]}


def load_override(path: Path | None) -> dict[str, Any] | None:
    """The parsed override file, or None."""
    if path is None:
        return None
    if not path.exists():
        raise UserError(f"override file not found: {path}")
    return yaml.safe_load(path.read_text()) or {}


def plan_deploy(config: dict[str, Any], mode: Mode, pool: str | None, root: Path,
                image: str = "shopfloor:latest", paused: bool = False,
                override: dict[str, Any] | None = None) -> DeployPlan:
    """Derive the prefect.yaml to deploy for ``mode`` (pure: no I/O).

    ``paused`` registers every schedule inactive (turn them on in the UI or with
    ``prefect deployment schedule resume``). ``override`` is applied first (see
    :func:`apply_override`).
    """
    cfg = copy.deepcopy(config)
    apply_override(cfg, override)
    if paused:
        _pause_schedules(cfg)
    if mode == "local":
        cfg["build"], cfg["push"] = None, None
        cfg["pull"] = [{"prefect.deployments.steps.set_working_directory":
                        {"directory": str(root)}}]
        _set_pool(cfg, pool or DEFAULT_LOCAL_POOL,
                  {"env": _docker_env(config), "working_dir": str(root)})
        return DeployPlan(cfg, pool or DEFAULT_LOCAL_POOL, "process")
    if mode == "docker-no-push":
        cfg["push"] = None
    if mode == "docker-no-build":
        cfg["build"], cfg["push"] = None, None
        for dep in cfg["deployments"]:
            dep["work_pool"] = dict(dep["work_pool"])
            jv = dict(dep["work_pool"].get("job_variables") or {})
            jv["image"] = image
            dep["work_pool"]["job_variables"] = jv
    if pool:
        _set_pool(cfg, pool, None)
    return DeployPlan(cfg, pool or DEFAULT_DOCKER_POOL, "docker")


def _docker_env(config: dict[str, Any]) -> dict[str, str]:
    first = (config.get("deployments") or [{}])[0]
    jv = (first.get("work_pool") or {}).get("job_variables") or {}
    return dict(jv.get("env") or {})


def _prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("prefect")
    return subprocess.run([str(exe), *args], check=check, text=True, capture_output=not check)


def ensure_work_pool(name: str, pool_type: str) -> bool:
    """Create work pool ``name`` of ``pool_type`` if it does not exist; True if created.

    A Docker pool gets the repo's base job template (deployments/docker-pool.json)."""
    if _prefect("work-pool", "inspect", name, check=False).returncode == 0:
        return False
    if pool_type == "docker":
        from deployments.docker_pool import create_or_update, load_template

        create_or_update(name, load_template())
        return True
    _prefect("work-pool", "create", name, "--type", pool_type)
    return True


def run_deploy(plan: DeployPlan, root: Path) -> None:
    """Write the derived prefect.yaml beside the original and run ``prefect deploy --all``."""
    derived = root / f".prefect-deploy-{os.getpid()}.yaml"
    derived.write_text(yaml.safe_dump(plan.config, sort_keys=False))
    try:
        subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all",
             "--prefect-file", str(derived)],
            cwd=root, check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise ShopfloorError(f"prefect deploy failed with exit code {exc.returncode}") from None
    finally:
        derived.unlink(missing_ok=True)
