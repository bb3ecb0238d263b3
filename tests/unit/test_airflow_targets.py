"""Which block each Airflow connection becomes, named how; what is refused and why."""

import pytest

from shopfloor.airflow.connections import AirflowConnection, Unreadable, parse_uri
from shopfloor.airflow.targets import (
    AwsTarget,
    BlockPlan,
    DatabaseTarget,
    Refusal,
    default_block_name,
    parse_name_map,
    plan_blocks,
    plan_one,
)
from shopfloor.errors import ShopfloorError


@pytest.mark.parametrize(("uri", "driver"), [
    ("postgres://u:pw@iot:5432/iot", "postgresql+psycopg2"),
    ("mysql://u:pw@iot:3306/iot", "mysql+pymysql"),
    ("mssql://u:pw@iot:1433/iot", "mssql+pymssql"),
])
def test_databases_become_connectors_with_the_installed_driver(uri, driver):
    plan = plan_one(parse_uri("c", uri), "shopfloor-source-db")
    port = int(uri.rsplit(":", 1)[1].split("/")[0])
    assert plan == BlockPlan("c", "shopfloor-source-db", "SqlAlchemyConnector",
                             DatabaseTarget(driver, "iot", port, "iot", "u", "pw", {}))


def test_driver_extras_go_to_the_query_others_are_named_as_ignored():
    conn = parse_uri("c", "postgres://u:pw@h/db?sslmode=require&cursor=dictcursor&keepalives=1")
    plan = plan_one(conn, "n")
    assert plan.target.query == {"sslmode": "require", "keepalives": "1"}
    assert plan.ignored_extras == ("cursor",)
    assert plan.line() == ("SqlAlchemyConnector  n                            <- c: "
                           "postgresql+psycopg2 host h database db (extra ignored: cursor)")


def test_aws_from_login_and_extra_with_region_and_endpoint():
    conn = AirflowConnection("aws-creds", "aws", login="AKIA1", password="secret-key",
                             extra={"region_name": "ap-southeast-1",
                                    "endpoint_url": "http://minio:9000", "verify": "false",
                                    "config_kwargs": {"retries": 3}})
    plan = plan_one(conn, "shopfloor-aws")
    assert plan.target == AwsTarget("AKIA1", "secret-key", None, "ap-southeast-1",
                                    "http://minio:9000", verify=False)
    assert plan.ignored_extras == ("config_kwargs",)
    assert plan.line().endswith("region ap-southeast-1 endpoint http://minio:9000, keys set "
                                "(extra ignored: config_kwargs)")
    assert "secret-key" not in plan.line() and "AKIA1" not in plan.line()


def test_aws_keys_from_the_extra_and_assume_role():
    conn = AirflowConnection("a", "aws", extra={
        "aws_access_key_id": "AKIA2", "aws_secret_access_key": "sk2",
        "role_arn": "arn:aws:iam::1:role/r", "assume_role_kwargs": {"ExternalId": "x"}})
    target = plan_one(conn, "a").target
    assert (target.access_key_id, target.secret_access_key, target.role_arn,
            dict(target.assume_role_kwargs)) == ("AKIA2", "sk2", "arn:aws:iam::1:role/r",
                                                 {"ExternalId": "x"})


@pytest.mark.parametrize(("conn", "reason"), [
    (AirflowConnection("h", "http", host="x"),
     "refused h: connection type 'http' has no shopfloor block "
     "(supported: postgres, mysql, mssql, aws)"),
    (AirflowConnection("p", "postgres", schema="db"), "refused p: postgres connection: no host"),
    (AirflowConnection("a", "aws", extra={"assume_role_method": "assume_role_with_saml"}),
     "refused a: aws connection: assume_role_method 'assume_role_with_saml' has no "
     "AwsCredentials field (only assume_role)"),
])
def test_what_cannot_become_a_block_is_refused_in_one_line(conn, reason):
    assert plan_one(conn, "n").line() == reason


def test_names_come_from_the_map_else_airflow_conn_id():
    conns = [parse_uri("pg_fdw_v1_iot", "postgres://h/db"), parse_uri("AWS_CREDS", "aws://"),
             parse_uri("Other.DB", "mysql://h/db"), Unreadable("bad", "not valid JSON")]
    names = parse_name_map(["pg_fdw_v1_iot=shopfloor-source-db", "aws-creds=shopfloor-aws"])
    plans = plan_blocks(conns, names)
    assert [(p.conn_id, getattr(p, "block_name", None)) for p in plans] == [
        ("pg_fdw_v1_iot", "shopfloor-source-db"), ("AWS_CREDS", "shopfloor-aws"),
        ("Other.DB", "airflow-other-db"), ("bad", None)]
    assert plans[3] == Refusal("bad", "not valid JSON")
    assert [p.conn_id for p in plan_blocks(conns, names, only=["aws-creds"])] == ["AWS_CREDS"]


def test_two_connections_onto_one_block_name_are_refused_before_anything_is_saved():
    conns = [parse_uri("a", "postgres://h/db"), parse_uri("b", "postgres://h/db")]
    with pytest.raises(ShopfloorError, match="a and b would both become block 'x'"):
        plan_blocks(conns, parse_name_map(["a=x", "b=x"]))


@pytest.mark.parametrize("item", ["nothing", "a=", "=b", "a=Shopfloor_DB"])
def test_a_bad_map_entry_is_one_clear_error(item):
    with pytest.raises(ShopfloorError, match="--map"):
        parse_name_map([item])


def test_default_names_are_valid_block_names():
    assert default_block_name("pg_fdw_v2_hq") == "airflow-pg-fdw-v2-hq"
    assert default_block_name("--Weird  ID--") == "airflow-weird-id"
