"""Credentials from an RDS-shaped secret: parsing, merging into a block's URL."""

import json

import pytest
from sqlalchemy.engine import make_url

from shopfloor.db.credentials import parse_database_secret, rotated_url
from shopfloor.errors import ShopfloorError

RDS = {"engine": "postgres", "host": "db.example", "port": 5432, "username": "app_b",
       "password": "p@ss:w/rd", "dbname": "plant", "dbInstanceIdentifier": "plant-db"}


def test_the_rds_rotation_shape_is_read_and_its_extra_keys_ignored():
    s = parse_database_secret(json.dumps(RDS), "prod/db")
    assert (s.engine, s.host, s.port, s.username, s.dbname) == (
        "postgres", "db.example", 5432, "app_b", "plant")
    assert s.password == "p@ss:w/rd" and "p@ss" not in repr(s)


def test_a_port_given_as_a_string_and_bytes_are_accepted():
    s = parse_database_secret(json.dumps({**RDS, "port": "5433"}).encode(), "prod/db")
    assert s.port == 5433


@pytest.mark.parametrize(("value", "message"), [
    ("not json", "is not JSON"),
    ("[1, 2]", "is not a JSON object"),
    (json.dumps({"username": "u"}), "has no password"),
    (json.dumps({**RDS, "port": "54x"}), "port must be a number"),
    (json.dumps({**RDS, "engine": "oracle"}), "has engine 'oracle'"),
])
def test_bad_secrets_are_one_line_that_never_holds_the_password(value, message):
    with pytest.raises(ShopfloorError, match=message) as info:
        parse_database_secret(value, "prod/db")
    assert "p@ss" not in str(info.value) and "\n" not in str(info.value)


def test_rotation_keeps_the_blocks_driver_and_query_and_takes_the_secrets_fields():
    current = make_url("postgresql+psycopg2://app_a:old@db.example:5432/plant?sslmode=require")
    new = rotated_url(current, parse_database_secret(json.dumps(RDS), "s"), "s")
    assert new.drivername == "postgresql+psycopg2" and dict(new.query) == {"sslmode": "require"}
    assert (new.username, new.password, new.host, new.port, new.database) == (
        "app_b", "p@ss:w/rd", "db.example", 5432, "plant")
    # A special character in the password survives the round trip through a URL string.
    assert make_url(new.render_as_string(hide_password=False)).password == "p@ss:w/rd"


def test_a_secret_with_only_user_and_password_keeps_the_blocks_host_and_database():
    current = make_url("mysql+pymysql://a:old@h:3306/plant")
    secret = parse_database_secret('{"username": "b", "password": "new"}', "s")
    assert rotated_url(current, secret, "s") == make_url("mysql+pymysql://b:new@h:3306/plant")


def test_the_same_credentials_give_an_equal_url():
    current = make_url("postgresql+psycopg2://app_b:p%40ss%3Aw%2Frd@db.example:5432/plant")
    assert rotated_url(current, parse_database_secret(json.dumps(RDS), "s"), "s") == current


def test_a_secret_for_another_engine_is_refused():
    current = make_url("mssql+pymssql://sa:pw@h:1433/plant")
    with pytest.raises(ShopfloorError, match="is for engine 'postgres' but the block is a mssql"):
        rotated_url(current, parse_database_secret(json.dumps(RDS), "s"), "s")


def test_a_new_block_is_built_from_a_secret_with_engine_and_host():
    new = rotated_url(None, parse_database_secret(json.dumps({**RDS, "engine": "mariadb"}), "s"),
                      "s")
    assert new.drivername == "mysql+pymysql" and new.host == "db.example"
    with pytest.raises(ShopfloorError, match="needs engine and host"):
        rotated_url(None, parse_database_secret('{"username": "b", "password": "x"}', "s"), "s")


def test_cli_pairs_split_at_the_first_equals_sign_and_keep_an_arn_whole():
    from deployments.credentials_cli import parse_pairs

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db=x-AbCdEf"
    assert parse_pairs([f"shopfloor-warehouse-db={arn}"]) == {"shopfloor-warehouse-db": arn}
    with pytest.raises(ShopfloorError, match="--secret takes BLOCK=SECRET"):
        parse_pairs(["shopfloor-warehouse-db"])
