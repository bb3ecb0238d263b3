"""The StorageLocation operations compaction relies on, on moto's S3 server: listing with
a start-after, move, delete of objects that may be missing, remove_tree, key_of."""

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
    assert lake.key_of(lake.url("stagex/d.bin")) == "stagex/d.bin"


def test_a_location_without_prefix_lists_whole_bucket_keys(s3_storage, write_objects):
    raw, _ = s3_storage
    write_objects(raw, {"a.json": b"{}"})
    whole = StorageLocation("s3", raw.root, "", raw.credentials)
    assert [o.key for o in whole.list_objects(start_after="lake")] == ["raw/a.json"]
