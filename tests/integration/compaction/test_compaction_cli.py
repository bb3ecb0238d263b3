"""``shopfloor compaction``: a bad value or an unknown block is one ``error:`` line, before
a flow run exists."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from .helpers import META, statuses

REPO = Path(__file__).resolve().parents[3]
MAIN = "import sys; from deployments.cli import main; sys.argv[0] = 'shopfloor'; main()"


def shopfloor(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", MAIN, *args], cwd=REPO, capture_output=True,
                          text=True, env=full_env, timeout=300)


def _one_error_line(res: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one ``error:`` line; exit 2 for what the user can fix (a value, a block name),
    1 for what failed otherwise (a bucket that is not there)."""
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    # Prefect may log its own shutdown (e.g. its events worker flushing) after the error.
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and " | " not in ln[:20]]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["run", "--ram-limit", "lots"], "error: ram_limit: 'lots' is not a memory size"),
    (["register", "--prefix", "a/../.."], "error: prefix: 'a/../..' is not a folder"),
    # every other limit's message: tests/unit/test_compaction_keys.py (the same check)
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_value_is_one_error_line_without_a_server(tmp_path, args, message):
    # No Prefect API reachable: the value is refused before anything talks to one.
    res = shopfloor("compaction", *args, PREFECT_API_URL="http://127.0.0.1:9/api",
                    PREFECT_HOME=str(tmp_path))
    assert _one_error_line(res).startswith(message)


def test_an_unknown_block_is_one_error_line_and_claims_nothing(
        meta_block, local_blocks, registry, pg_engine, write_objects):
    from flows.s3_compaction import register_s3_keys

    raw, _ = local_blocks
    write_objects(raw, {"plc/a.json": b'{"heartbeat": 1763600000}\n'})
    register_s3_keys(raw_logs="cmp-raw-local", distrik="BRCB", metadata_db=META)
    api = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    res = shopfloor("compaction", "run", "--raw-logs", "cmp-raw-local", "--lake", "no-such-lake",
                    "--metadata-db", META, **api)
    assert "error: block 'no-such-lake' not found" in _one_error_line(res)
    res = shopfloor("compaction", "register", "--raw-logs", "nope-raw", "--metadata-db", META,
                    **api)
    assert "error: block 'nope-raw' not found" in _one_error_line(res)
    assert statuses(pg_engine, registry) == {"plc/a.json": "PENDING"}


def test_a_missing_bucket_is_one_error_line_and_claims_nothing(
        meta_block, s3_blocks, s3_endpoint, registry, pg_engine, write_objects):
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    from flows.s3_compaction import register_s3_keys

    raw, _ = s3_blocks
    write_objects(raw, {"plc/a.json": b'{"heartbeat": 1763600000}\n'})
    register_s3_keys(raw_logs="cmp-raw-s3", distrik="BRCB", metadata_db=META)
    creds = AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                           region_name="us-east-1",
                           aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint))
    S3Bucket(bucket_name="no-such-bucket-x1", credentials=creds).save("cmp-lake-gone",
                                                                      overwrite=True)
    res = shopfloor("compaction", "run", "--raw-logs", "cmp-raw-s3", "--lake", "cmp-lake-gone",
                    "--metadata-db", META, PREFECT_API_URL=PREFECT_API_URL.value())
    assert _one_error_line(res) == (
        "error: cmp-lake-gone: bucket 'no-such-bucket-x1' does not exist")
    assert statuses(pg_engine, registry) == {"plc/a.json": "PENDING"}
