"""Incremental listing on a local folder: streams, start-after with an overlap, the walk."""

import threading
from pathlib import Path

import pytest

from shopfloor.compaction.layout import ClaimLayout
from shopfloor.compaction.listing import is_hour_folder, list_new, start_after, stream_of
from shopfloor.compaction.renewal import ClaimRenewal, renewal_interval
from shopfloor.storage import StorageLocation


def _write(root: Path, *keys: str) -> None:
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")


@pytest.mark.parametrize("folder, expected", [
    ("dstrct_code=D01/plc/2025112014", True), ("2025112023", True),
    ("plc/2025112024", False), ("plc/2025023100", False), ("plc/202511201", False),
    ("BRCB/2025", False),
])
def test_hour_folders(folder, expected):
    assert is_hour_folder(folder) is expected


def test_stream_of_a_key_is_the_folder_holding_its_first_hour_folder():
    assert stream_of("dstrct_code=D01/line1-plc/2025112014/run-1.json") == (
        "dstrct_code=D01/line1-plc", "2025112014")
    assert stream_of("2025112014/a.json") == ("", "2025112014")
    assert stream_of("BRCB/2025/a.json") is None


def test_start_after_goes_back_the_overlap_across_a_day():
    last = "dstrct_code=D01/plc/2025112101/z.json"
    assert start_after("dstrct_code=D01/plc", last, 2) == "dstrct_code=D01/plc/2025112023"
    # Every key of the overlap's first hour sorts after the start-after string.
    assert "dstrct_code=D01/plc/2025112023/a.json" > start_after("dstrct_code=D01/plc", last, 2)


def test_first_listing_walks_everything_and_finds_the_streams(tmp_path):
    _write(tmp_path, "dstrct_code=D01/plc1/2025112010/a.json",
           "dstrct_code=D01/plc2/2025112011/b.json", "BRCB/2025/c.json", "top.json")
    listing = list_new(StorageLocation("local", str(tmp_path)), "", {}, 2)
    assert sorted(o.key for o in listing.objects) == [
        "BRCB/2025/c.json", "dstrct_code=D01/plc1/2025112010/a.json",
        "dstrct_code=D01/plc2/2025112011/b.json", "top.json"]
    assert listing.last_keys == {"dstrct_code=D01/plc1": "dstrct_code=D01/plc1/2025112010/a.json",
                                 "dstrct_code=D01/plc2": "dstrct_code=D01/plc2/2025112011/b.json"}


def test_a_known_stream_is_listed_from_its_overlap_only(tmp_path):
    loc = StorageLocation("local", str(tmp_path))
    _write(tmp_path, *(f"dstrct_code=D01/plc1/20251120{h:02d}/a.json" for h in range(10)),
           "dstrct_code=D01/plc2/2025112009/a.json")
    known = list_new(loc, "", {}, 2).last_keys
    # New: an hour after the last, a late object in the overlap window, a new device.
    _write(tmp_path, "dstrct_code=D01/plc1/2025112010/b.json",
           "dstrct_code=D01/plc1/2025112008/late.json", "dstrct_code=D01/plc3/2025112001/x.json",
           "dstrct_code=D01/plc1/2025112001/too-late.json")
    listing = list_new(loc, "", known, 2)
    keys = {o.key for o in listing.objects}
    assert {"dstrct_code=D01/plc1/2025112010/b.json", "dstrct_code=D01/plc1/2025112008/late.json",
            "dstrct_code=D01/plc3/2025112001/x.json"} <= keys
    # Hours before the overlap are not listed again: nor is an object written there late...
    assert "dstrct_code=D01/plc1/2025112001/a.json" not in keys
    assert "dstrct_code=D01/plc1/2025112001/too-late.json" not in keys
    # ... which a full listing finds.
    full = {o.key for o in list_new(loc, "", known, 2, full_listing=True).objects}
    assert "dstrct_code=D01/plc1/2025112001/too-late.json" in full


def test_a_prefix_inside_an_hour_folder_is_listed_in_full_without_streams(tmp_path):
    _write(tmp_path, "dstrct_code=D01/plc1/2025112010/a.json")
    listing = list_new(StorageLocation("local", str(tmp_path)),
                       "dstrct_code=D01/plc1/2025112010", {}, 2)
    assert [o.key for o in listing.objects] == ["dstrct_code=D01/plc1/2025112010/a.json"]
    assert listing.streams_listed == set()


def test_a_scoped_claim_layout_names_its_files_per_district(tmp_path):
    lake = StorageLocation("local", str(tmp_path))
    a = ClaimLayout(lake, "datalog_v2", "run-1", "D01")
    b = ClaimLayout(lake, "datalog_v2", "run-1", "D02")
    assert a.filename_pattern != b.filename_pattern
    assert a.manifest_key.endswith("/run-1.D01.json")
    assert a.unscoped().manifest_key.endswith("/run-1.json")
    assert a.for_token("run-0").staging_key.endswith("/staging/run-0.D01")


def test_renewal_interval_is_a_third_of_the_ttl():
    assert renewal_interval(3600) == 1200
    assert renewal_interval(0) is None
    assert renewal_interval(1) == 1.0


def test_claim_renewal_renews_in_the_background_and_survives_errors():
    calls: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def renew() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database bounced")
        done.set()
        return 3

    with ClaimRenewal(renew, 0.01, errors.append) as renewal:
        assert done.wait(timeout=30)
    assert renewal._thread is not None and not renewal._thread.is_alive()  # stopped on exit
    assert renewal.renewals >= 1 and [str(e) for e in errors] == ["database bounced"]


def test_a_pause_ends_when_its_resume_file_exists(tmp_path, monkeypatch):
    from shopfloor.compaction import faults

    slept: list[float] = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    resume = tmp_path / "resume"
    pause = faults.pause_hook_from_env({faults.PAUSE_AT: "after_stage",
                                        faults.RESUME_FILE: str(resume)})
    resume.write_text("go")
    pause("after_stage")
    assert slept == []
