"""Database layer on SQLAlchemy Core: table metadata, upsert, watermarks, engines."""
