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
