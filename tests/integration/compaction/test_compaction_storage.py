"""The StorageLocation operations compaction relies on, on moto's S3 server: listing with
a start-after, move, move_many, delete of objects that may be missing, remove_tree."""

from shopfloor.storage import StorageLocation


def test_s3_listing_resumes_after_a_key(s3_storage, write_objects):
    raw, _ = s3_storage
    write_objects(raw, {k: b"{}" for k in ("p/1.json", "p/2.json", "p/3.json", "q/4.json")})
    assert [o.key for o in raw.list_objects(start_after="p/2.json")] == ["p/3.json", "q/4.json"]
    assert [o.key for o in raw.list_objects("p", start_after="p/1.json")] == [
        "p/2.json", "p/3.json"]
    assert list(raw.list_objects("p", start_after="p/3.json")) == []


def test_s3_move_delete_and_remove_tree(s3_storage, write_objects):
    _, lake = s3_storage
    write_objects(lake, {"stage/t/a.bin": b"aa", "stage/t/b/c.bin": b"c", "stagex/d.bin": b"d",
                         "final/a.bin": b"old"})
    lake.move("stage/t/a.bin", "final/a.bin")
    assert lake.read_bytes("final/a.bin") == b"aa" and lake.size("final/a.bin") == 2
    assert lake.delete(["final/a.bin", "final/never-written.bin"]) == 2
    assert not lake.exists("final/a.bin")
    assert lake.remove_tree("stage") == 1
    assert [o.key for o in lake.list_objects()] == ["stagex/d.bin"]


def test_s3_move_many_replaces_targets_and_removes_every_source(s3_storage, write_objects):
    _, lake = s3_storage
    sources = {f"stage/p{i}/part-{i}.bin": str(i).encode() * (i + 1) for i in range(12)}
    write_objects(lake, {**sources, "final/p0/part-0.bin": b"old", "stage_keep/x.bin": b"x"})
    lake.move_many([(k, "final/" + k.removeprefix("stage/")) for k in sources])
    assert {o.key: o.size for o in lake.list_objects("final")} == {
        "final/" + k.removeprefix("stage/"): len(v) for k, v in sources.items()}
    assert lake.read_bytes("final/p0/part-0.bin") == b"0"
    assert [o.key for o in lake.list_objects("stage")] == []
    assert lake.exists("stage_keep/x.bin")
    lake.move_many([])  # nothing to move is no request


def test_a_location_without_prefix_lists_whole_bucket_keys(s3_storage, write_objects):
    raw, _ = s3_storage
    write_objects(raw, {"a.json": b"{}"})
    whole = StorageLocation("s3", raw.root, "", raw.credentials)
    assert [o.key for o in whole.list_objects(start_after="lake")] == ["raw/a.json"]
