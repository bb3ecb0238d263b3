"""s3-compaction without a distrik serves the districts a Prefect Variable lists."""

import pytest
from prefect.variables import Variable

from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.errors import ShopfloorError
from tasks.variables import COMPACTION_DISTRICTS

from .helpers import META, ndjson, records, statuses

PARAMS = {"raw_logs": "cmp-raw-local", "lake": "cmp-lake-local", "metadata_db": META}


@pytest.fixture
def districts_variable():
    def set_to(value) -> None:
        Variable.set(COMPACTION_DISTRICTS, value, overwrite=True)
    yield set_to
    Variable.unset(COMPACTION_DISTRICTS)


def test_the_variable_narrows_the_districts_and_a_passed_distrik_wins(
        meta_block, local_blocks, registry, write_objects, pg_engine, districts_variable):
    raw, _ = local_blocks
    write_objects(raw, {f"{d}/2025112000/a.json": ndjson(records(i, 3))
                        for i, d in enumerate(("BRCB", "SATU"))})
    register_s3_keys(raw_logs="cmp-raw-local", metadata_db=META)
    districts_variable(["SATU"])

    summary = s3_compaction(**PARAMS)
    assert summary["district"] == "SATU" and summary["keys_claimed"] == 1
    assert statuses(pg_engine, registry) == {"BRCB/2025112000/a.json": "PENDING",
                                             "SATU/2025112000/a.json": "SUCCESS"}
    assert s3_compaction(distrik="BRCB", **PARAMS)["keys_claimed"] == 1


def test_a_variable_that_is_not_a_list_of_districts_fails_the_run(
        meta_block, local_blocks, registry, districts_variable):
    districts_variable(["BR CB"])
    with pytest.raises(ShopfloorError, match="Prefect Variable 'shopfloor_compaction_districts'"
                                             " is not valid: 0: "):
        s3_compaction(**PARAMS)
