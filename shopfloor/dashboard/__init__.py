"""What the plant dashboard reads: portable SQLAlchemy Core queries, no web framework."""
