
from shopfloor.storage import S3Credentials, StorageLocation


def test_local_urls_join_prefix_and_key(tmp_path):
    loc = StorageLocation("local", str(tmp_path), "raw/")
    assert loc.url("dev1/2026112100/a.json") == str(tmp_path / "raw/dev1/2026112100/a.json")
    assert loc.url() == str(tmp_path / "raw")


def test_s3_urls_and_endpoint_parts():
    creds = S3Credentials("AKIA", "very-secret", None, "us-east-1", "http://127.0.0.1:9000")
    loc = StorageLocation("s3", "bucket", "lake", creds)
    assert loc.url("datalog_v2/x.parquet") == "s3://bucket/lake/datalog_v2/x.parquet"
    assert StorageLocation("s3", "bucket").url() == "s3://bucket"
    assert creds.endpoint_host == "127.0.0.1:9000" and creds.use_ssl is False
    assert S3Credentials().use_ssl is True


def test_the_secret_never_shows_in_repr():
    creds = S3Credentials("AKIA", "very-secret", "tok-secret")
    text = repr(StorageLocation("s3", "b", "", creds))
    assert "very-secret" not in text and "tok-secret" not in text


def test_local_write_list_read_delete(tmp_path):
    loc = StorageLocation("local", str(tmp_path / "root"), "p")
    loc.write_bytes("a/1.json", b"{}")
    loc.write_bytes("a/2.json", b"[1]")
    loc.write_bytes("b/3.json", b"")
    assert [(o.key, o.size) for o in loc.list_objects()] == [
        ("a/1.json", 2), ("a/2.json", 3), ("b/3.json", 0)]
    assert [o.key for o in loc.list_objects("a")] == ["a/1.json", "a/2.json"]
    assert loc.read_bytes("a/2.json") == b"[1]"
    assert loc.delete_prefix("a") == 2
    assert [o.key for o in loc.list_objects()] == ["b/3.json"]
    assert list(StorageLocation("local", str(tmp_path / "none")).list_objects()) == []


def test_local_move_creates_the_target_folder_and_replaces(tmp_path):
    loc = StorageLocation("local", str(tmp_path))
    loc.write_bytes("stage/a.bin", b"new")
    loc.write_bytes("final/deep/a.bin", b"old")
    loc.write_bytes("stage/b.bin", b"b")
    loc.move("stage/a.bin", "final/deep/a.bin")
    loc.move("stage/b.bin", "other/x/b.bin")
    assert loc.read_bytes("final/deep/a.bin") == b"new"
    assert loc.read_bytes("other/x/b.bin") == b"b"
    assert [o.key for o in loc.list_objects("stage")] == []
    assert loc.size("final/deep/a.bin") == 3


def test_local_move_many_renames_each_pair(tmp_path):
    loc = StorageLocation("local", str(tmp_path))
    for i in range(3):
        loc.write_bytes(f"stage/p{i}/f.bin", bytes([i]))
    loc.write_bytes("final/p0/f.bin", b"old")
    loc.move_many([(f"stage/p{i}/f.bin", f"final/p{i}/f.bin") for i in range(3)])
    assert [loc.read_bytes(f"final/p{i}/f.bin") for i in range(3)] == [b"\x00", b"\x01",
                                                                        b"\x02"]
    assert [o.key for o in loc.list_objects("stage")] == []


def test_local_delete_ignores_missing_objects(tmp_path):
    loc = StorageLocation("local", str(tmp_path))
    loc.write_bytes("a.json", b"1")
    loc.write_bytes("b.json", b"2")
    assert loc.delete(["a.json", "gone.json"]) == 2
    assert loc.delete([]) == 0
    assert [o.key for o in loc.list_objects()] == ["b.json"]


def test_local_remove_tree_removes_sub_folders_only_under_the_prefix(tmp_path):
    loc = StorageLocation("local", str(tmp_path))
    for key in ("t/a/1.json", "t/a/b/2.json", "t/3.json", "tt/4.json"):
        loc.write_bytes(key, b"x")
    assert loc.remove_tree("t") == 3
    assert [o.key for o in loc.list_objects()] == ["tt/4.json"]
    assert not (tmp_path / "t").exists()
    assert loc.remove_tree("t") == 0


def test_local_listing_resumes_after_a_key(tmp_path):
    loc = StorageLocation("local", str(tmp_path), "raw")
    for key in ("p/1.json", "p/2.json", "p/3.json", "q/4.json"):
        loc.write_bytes(key, b"{}")
    assert [o.key for o in loc.list_objects(start_after="p/2.json")] == ["p/3.json", "q/4.json"]
    assert [o.key for o in loc.list_objects("p", start_after="p/1.json")] == [
        "p/2.json", "p/3.json"]
    assert list(loc.list_objects("p", start_after="p/3.json")) == []
