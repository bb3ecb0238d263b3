"""Airflow connections read as Airflow writes them: URI and JSON variables, export files."""

import json
from pathlib import Path

import pytest

from shopfloor.airflow.connections import (
    AirflowConnection,
    Unreadable,
    connections_from_env,
    connections_from_file,
    connections_from_text,
    parse_uri,
    parse_value,
)
from shopfloor.errors import ShopfloorError


def test_a_postgres_uri_gives_every_field_with_schema_as_the_database():
    conn = parse_uri("pg", "postgres://iot_user:s3cret@10.0.0.5:5432/iot?sslmode=require")
    assert conn == AirflowConnection("pg", "postgres", "10.0.0.5", "iot_user", "s3cret", "iot",
                                     5432, {"sslmode": "require"})


def test_url_encoded_parts_are_decoded():
    conn = parse_uri("pg", "postgresql://us%40er:p%40ss%2Fw%3Ard%23%25@db.example:5432/my%20db")
    assert conn.conn_type == "postgres"
    assert (conn.login, conn.password, conn.schema) == ("us@er", "p@ss/w:rd#%", "my db")


def test_extra_as_query_pairs_or_as_one_json_string():
    pairs = parse_uri("a", "aws://?region_name=eu-west-1&endpoint_url=http%3A%2F%2Fminio%3A9000")
    assert pairs.extra == {"region_name": "eu-west-1", "endpoint_url": "http://minio:9000"}
    extra = json.dumps({"region_name": "ap-southeast-1", "verify": False})
    from urllib.parse import quote
    whole = parse_uri("a", f"aws://?__extra__={quote(extra)}")
    assert whole.extra == {"region_name": "ap-southeast-1", "verify": False}
    assert whole.host is None and whole.login is None


def test_aws_keys_in_the_uri_with_a_slash_encoded_in_the_secret():
    conn = parse_uri("aws-creds", "aws://AKIAEXAMPLE:wJalr%2FK7MDENG%2Bbx@")
    assert (conn.login, conn.password, conn.host) == ("AKIAEXAMPLE", "wJalr/K7MDENG+bx", None)


def test_dashes_in_a_scheme_are_underscores_and_a_host_may_keep_its_protocol():
    conn = parse_uri("x", "google-cloud-platform://")
    assert conn.conn_type == "google_cloud_platform"
    http = parse_uri("h", "http://https://example.com:8443/path")
    assert (http.conn_type, http.host, http.port) == ("http", "https://example.com", 8443)


@pytest.mark.parametrize(("uri", "message"), [
    ("postgres://u:p@h:abc/db", "port in the URI is not a number"),
    ("just-a-host", "not a connection URI"),
    ("postgres://h/db?__extra__=%7Bnot", "extra is not JSON"),
])
def test_bad_uris_are_one_line_that_never_shows_the_uri(uri, message):
    with pytest.raises(ShopfloorError, match=message) as err:
        parse_uri("c", uri)
    assert "u:p" not in str(err.value)


def test_the_json_form_with_extra_as_object_or_string_and_port_as_text():
    value = json.dumps({"conn_type": "postgres", "host": "hq", "login": "u",
                        "password": "pw", "schema": "hq_db", "port": "5433",
                        "extra": {"sslmode": "verify-full"}})
    conn = parse_value("pg_fdw_v2_hq", value)
    assert conn == AirflowConnection("pg_fdw_v2_hq", "postgres", "hq", "u", "pw", "hq_db",
                                     5433, {"sslmode": "verify-full"})
    as_string = parse_value("m", {"conn_type": "mssql", "host": "sql", "extra": '{"a": 1}'})
    assert as_string.extra == {"a": 1} and as_string.port is None


def test_the_password_never_appears_in_a_repr():
    conn = parse_uri("pg", "postgres://u:hunter2@h/db?sslpassword=topsecret")
    assert "hunter2" not in repr(conn) and "topsecret" not in repr(conn)


def test_environment_variables_name_the_connection_in_lower_case():
    env = {"AIRFLOW_CONN_PG_FDW_V1_IOT": "postgres://u:p@iot:5432/iot",
           "AIRFLOW_CONN_MSSQL_PAMA": '{"conn_type": "mssql", "host": "pama"}',
           "AIRFLOW_CONN_BROKEN": "{nope", "AIRFLOW_CONN_": "x", "PATH": "/bin"}
    found = connections_from_env(env)
    assert [c.conn_id for c in found] == ["broken", "mssql_pama", "pg_fdw_v1_iot"]
    assert found[0] == Unreadable("broken", "not valid JSON")
    assert (found[1].conn_type, found[1].host) == ("mssql", "pama")


EXPORT = {
    "pg_fdw_v1_iot": {"conn_type": "postgres", "description": None, "login": "iot",
                      "password": "pw-iot", "host": "10.0.0.5", "port": 5432, "schema": "iot",
                      "extra": '{"sslmode": "prefer"}'},
    "aws-creds": {"conn_type": "aws", "description": "", "login": "AKIA1", "password": "sk",
                  "host": None, "port": None, "schema": None,
                  "extra": '{"region_name": "ap-southeast-1"}'},
}


def test_an_export_file_in_json_yaml_and_env_form_reads_the_same(tmp_path: Path):
    import yaml

    (tmp_path / "c.json").write_text(json.dumps(EXPORT))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(EXPORT))
    (tmp_path / "c.env").write_text(
        "# exported\n"
        "pg_fdw_v1_iot=postgres://iot:pw-iot@10.0.0.5:5432/iot?sslmode=prefer\n\n"
        "aws-creds=aws://AKIA1:sk@/?region_name=ap-southeast-1\n")
    read = [{c.conn_id: c for c in connections_from_file(tmp_path / f"c.{ext}")}
            for ext in ("json", "yaml", "env")]
    assert read[0] == read[1] == read[2]
    assert read[0]["aws-creds"] == AirflowConnection(
        "aws-creds", "aws", None, "AKIA1", "sk", None, None, {"region_name": "ap-southeast-1"})


def test_an_entry_may_be_a_uri_string_and_a_bad_entry_does_not_stop_the_others():
    found = connections_from_text(json.dumps({"a": "mysql://u:p@h/db", "b": {"host": "x"}}),
                                  "json")
    assert found[0].conn_type == "mysql" and found[1] == Unreadable("b", "no conn_type")


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ("[1, 2]", "json", "must map connection ids"),
    ("{nope", "json", "not valid JSON"),
    ("a: [", "yaml", "not valid YAML"),
    ("no equals sign", "env", "line 1: expected CONN_ID=URI"),
])
def test_a_bad_file_is_one_clear_error(text, fmt, message):
    with pytest.raises(ShopfloorError, match=message):
        connections_from_text(text, fmt)


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ShopfloorError, match="cannot read"):
        connections_from_file(tmp_path / "none.json")
