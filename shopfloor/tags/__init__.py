"""Tags, not columns: the tag registry and narrow tag samples (docs/tags.md)."""
