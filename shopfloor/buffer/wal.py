"""Reading a SQLite write-ahead log the way SQLite's recovery does, to find a torn tail.

SQLite itself never applies a WAL frame whose checksum or salt is wrong, nor any frame
after it, nor frames after the last commit frame: a transaction torn by a crash or a
full disk simply disappears at the next open. It says nothing about it. This module
finds where the valid log ends (https://www.sqlite.org/fileformat.html#the_write_ahead_log)
so the buffer can copy what lies beyond into quarantine and log one line before SQLite
recovers.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
_MAGIC = (0x377F0682, 0x377F0683)  # little-, big-endian checksums


@dataclass(frozen=True)
class WalTail:
    """Where the valid part of a WAL ends: ``valid_bytes`` of ``size``; what follows
    is torn or never committed, for ``reason``."""

    size: int
    valid_bytes: int
    end_bytes: int  # where the torn part ends (frames of an older log may follow)
    commits: int
    reason: str

    @property
    def torn_bytes(self) -> int:
        return self.end_bytes - self.valid_bytes


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def inspect_wal(path: Path) -> WalTail | None:
    """The valid extent of the WAL at ``path``; ``None`` when there is no WAL or it
    ends exactly at a commit (nothing torn)."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if len(data) == 0:
        return None
    if len(data) < WAL_HEADER:
        return WalTail(len(data), 0, len(data), 0,
                       f"WAL header torn ({len(data)} of {WAL_HEADER} bytes)")
    magic, _, page_size, _, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:WAL_HEADER])
    if magic not in _MAGIC:
        return WalTail(len(data), 0, len(data), 0, "WAL header has no SQLite magic")
    big = magic == _MAGIC[1]
    s = _checksum(data[:24], 0, 0, big)
    if s != (c1, c2):
        return WalTail(len(data), 0, len(data), 0, "WAL header checksum mismatch")
    frame = FRAME_HEADER + page_size
    offset, valid, commits, end, reason = WAL_HEADER, WAL_HEADER, 0, len(data), ""
    while offset < len(data):
        if offset + frame > len(data):
            reason = f"frame at byte {offset} torn ({len(data) - offset} of {frame} bytes)"
            break
        page, db_size, f1, f2, fc1, fc2 = struct.unpack(">6I", data[offset:offset + 24])
        if (f1, f2) != (salt1, salt2):
            # A log restarted after a checkpoint leaves the older log's frames behind
            # its own: they end the log, they are not torn.
            end = offset
            reason = f"{offset - valid} bytes of frames after the last commit"
            break
        s = _checksum(data[offset:offset + 8], *s, big)
        s = _checksum(data[offset + FRAME_HEADER:offset + frame], *s, big)
        if s != (fc1, fc2):
            reason = f"frame at byte {offset} (page {page}) checksum mismatch"
            break
        offset += frame
        if db_size:  # a commit frame: everything up to here is a committed transaction
            valid, commits = offset, commits + 1
    else:
        reason = f"{len(data) - valid} bytes of frames after the last commit"
    if valid == end:
        return None
    return WalTail(len(data), valid, end, commits, reason)
