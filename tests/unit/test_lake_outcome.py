"""How a lake-maintenance run ends, decided in shopfloor from its partitions' results."""

from datetime import date

import pytest

from shopfloor.lake.merge import PartitionResult
from shopfloor.lake.outcome import artifact_rows, description, summarise, verdict


def _r(status: str, message: str = "", recovered: tuple[str, ...] = ()) -> PartitionResult:
    return PartitionResult("d", f"d/p-{status}", status, files_in=4, files_out=1, rows=10,
                           recovered=list(recovered), message=message)


@pytest.mark.parametrize(("results", "kind", "says"), [
    ([_r("merged"), _r("skipped")], "completed", ""),
    ([], "idle", "no closed partition with small files"),
    ([_r("skipped")], "idle", "no closed partition"),
    ([_r("skipped", recovered=("x",))], "completed", ""),  # a crashed merge rolled on
    ([_r("merged"), _r("failed", "boom")], "degraded", "1 partitions failed, 1 merged"),
    ([_r("failed", "boom"), _r("skipped")], "failed",
     "every partition tried failed (1): boom"),
])
def test_every_outcome(results, kind, says):
    v = verdict(results, summarise(results))
    assert v.kind == kind and says in v.message


def test_counts_and_rows_cover_the_merged_partitions_only():
    results = [_r("merged"), _r("failed"), _r("merged")]
    summary = summarise(results)
    assert (summary["partitions_merged"], summary["partitions_failed"], summary["files_in"],
            summary["rows"]) == (2, 1, 8, 20)
    assert description(summary, date(2026, 1, 17)) == (
        "Closed before 2026-01-17: 2 merged (8 files -> 2), 1 failed")
    assert len(artifact_rows(results)) == 3
    assert artifact_rows([]) == [{"partition": "(none)", "status": "nothing due"}]
