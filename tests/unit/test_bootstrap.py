"""Connector blocks built from URLs (no server: nothing is saved)."""

from blocks.bootstrap import connector_from_url


def test_connector_from_url_keeps_driver_and_query():
    c = connector_from_url("mysql+pymysql://u:p@db:3307/plant?charset=utf8mb4")
    info = c.connection_info
    assert (info.driver, info.host, info.port, info.database) == ("mysql+pymysql", "db", 3307,
                                                                  "plant")
    assert info.query == {"charset": "utf8mb4"}


def test_airflow_connections_in_the_environment_win_over_the_export_file(tmp_path):
    import json

    from blocks.airflow_import import read_connections

    path = tmp_path / "connections.json"
    path.write_text(json.dumps({"pg": {"conn_type": "postgres", "host": "from-file"},
                                "aws": {"conn_type": "aws"}}))
    found = read_connections(path, {"AIRFLOW_CONN_PG": "postgres://from-env/db"})
    assert {c.conn_id: getattr(c, "host", None) for c in found} == {"pg": "from-env",
                                                                   "aws": None}


def test_airflow_blocks_are_built_with_secrets_as_secret_fields():
    from blocks.airflow_import import build_block
    from shopfloor.airflow.connections import parse_uri
    from shopfloor.airflow.targets import plan_one

    block = build_block(plan_one(parse_uri("c", "mssql://u:p%23w@sql:1433/PAMA"), "n"))
    info = block.connection_info
    assert (info.driver, info.password.get_secret_value()) == ("mssql+pymssql", "p#w")
    assert "p#w" not in repr(block)
    aws = build_block(plan_one(parse_uri("a", "aws://K:S%2Fx@/?region_name=eu-west-1"), "a"))
    assert (aws.aws_secret_access_key.get_secret_value(), aws.region_name) == ("S/x",
                                                                               "eu-west-1")
