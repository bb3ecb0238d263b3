"""Connector blocks built from URLs (no server: nothing is saved)."""

from blocks.bootstrap import connector_from_url


def test_connector_from_url_keeps_driver_and_query():
    c = connector_from_url("mysql+pymysql://u:p@db:3307/plant?charset=utf8mb4")
    info = c.connection_info
    assert (info.driver, info.host, info.port, info.database) == ("mysql+pymysql", "db", 3307,
                                                                  "plant")
    assert info.query == {"charset": "utf8mb4"}
