"""Ignition's catalog for a seeded historian, as the tests need it (Ignition creates the
real one; shopfloor only reads it)."""

from sqlalchemy import Column, Engine, Integer, column, delete, insert, table, text, update

from shopfloor.db.check import add_column_ddl
from shopfloor.db.schema import Tables, historian_catalog
from shopfloor.db.upsert import upsert
from shopfloor.historian.partitions import Partition, has_drivers


def seed_catalog(engine: Engine, tables: Tables, partitions: list[Partition],
                 scan_classes: dict[int, int], tag_scan_class: dict[int, int]) -> None:
    """Ignition's catalog for a seeded historian: ``sqlth_partitions`` rows (replacing rows
    of the same table names), drivers, scan classes (``scid -> drvid``) and each tag's
    scan class (``sqlth_te.scid``, added to the table when it lacks the column).

    The data tables themselves are filled by the caller (``seed_historian`` of
    :mod:`shopfloor.historian.seed` for the monthly pattern, or rows of its own).
    """
    catalog = historian_catalog(tables.schema)
    catalog.metadata.create_all(engine, checkfirst=True)
    tables.sqlth_te.create(engine, checkfirst=True)
    te = tables.sqlth_te
    with engine.begin() as conn:
        if not has_drivers(conn, tables):
            scid = Column("scid", Integer)
            conn.execute(text(add_column_ddl(te, scid, conn.dialect)))
        drvids = sorted(set(scan_classes.values()) | {p.drvid for p in partitions
                                                      if p.drvid is not None})
        upsert(conn, catalog.drv, [{"id": d, "name": f"driver{d}", "provider": "default"}
                                   for d in drvids], ["id"])
        upsert(conn, catalog.scinfo, [{"id": s, "scname": f"class{s}", "drvid": d}
                                      for s, d in sorted(scan_classes.items())], ["id"])
        names = sorted({p.table for p in partitions})
        if names:
            conn.execute(delete(catalog.partitions).where(catalog.partitions.c.pname.in_(names)))
            conn.execute(insert(catalog.partitions), [
                {"pname": p.table, "drvid": p.drvid, "start_time": p.start_ms,
                 "end_time": p.end_ms, "blocksize": 0, "flags": 0} for p in partitions])
        te_scid = table(te.name, column("id", Integer), column("scid", Integer),
                        schema=tables.schema)
        for tag_id, scid in sorted(tag_scan_class.items()):
            conn.execute(update(te_scid).where(te_scid.c.id == tag_id).values(scid=scid))
