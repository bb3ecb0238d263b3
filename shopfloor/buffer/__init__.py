"""Store and forward: a collector's durable local buffer (docs/store_and_forward.md)."""

from shopfloor.buffer.store import Backlog, Limits, Record, SampleBuffer, buffer_path

__all__ = ["Backlog", "Limits", "Record", "SampleBuffer", "buffer_path"]
