"""The historian's tags as registry entries: one per path, its newest id, its data type."""

from sqlalchemy import create_engine, insert

from shopfloor.db.schema import configured_tables
from shopfloor.historian.registry import historian_tag_infos


def test_one_entry_per_path_with_its_newest_id_and_type() -> None:
    engine = create_engine("sqlite://")
    tables = configured_tables(None)
    tables.sqlth_te.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.sqlth_te), [
            {"id": 1, "tagpath": "line1/temp", "datatype": 1},
            {"id": 2, "tagpath": "line1/state", "datatype": 2},
            {"id": 7, "tagpath": "line1/temp", "datatype": 1},  # retagged: a new id
            {"id": 3, "tagpath": "line2/temp", "datatype": 0},
            {"id": 4, "tagpath": "line1/odd", "datatype": 9},
        ])
        infos = historian_tag_infos(conn, tables, ["line1/%"], "hist-db")
    assert [(i.name, i.device, i.data_type, i.source_name) for i in infos] == [
        ("line1/odd", "hist-db", "unknown", "sqlth_te:4"),
        ("line1/state", "hist-db", "string", "sqlth_te:2"),
        ("line1/temp", "hist-db", "float", "sqlth_te:7"),
    ]
