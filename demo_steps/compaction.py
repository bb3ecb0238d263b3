"""The demo's s3 compaction step: compact what the capture step landed in raw-logs."""

import json
from collections import Counter

from blocks.resolve import load_storage
from flows.s3_compaction import register_s3_keys, s3_compaction
from shopfloor.compaction.keys import is_json_key

DEFAULT_DISTRICT = "BRCB"
TARGET = "datalog_v2"


def landed_district(raw_block: str = "shopfloor-raw-logs") -> str | None:
    """The ``dstrct_code`` of the first landed record, or ``None`` if nothing was landed."""
    raw = load_storage(raw_block)
    for obj in raw.list_objects():
        if not is_json_key(obj.key) or obj.size == 0:
            continue
        first = raw.read_bytes(obj.key).split(b"\n", 1)[0]
        try:
            return str(json.loads(first).get("dstrct_code") or DEFAULT_DISTRICT)
        except (ValueError, AttributeError):
            continue
    return None


def compaction_demo_step() -> list[str]:
    """Register the landed JSON, compact it until nothing is pending, list the partitions."""
    district = landed_district()
    if district is None:
        return ["no JSON landed in shopfloor-raw-logs: nothing to compact"]
    counts = register_s3_keys(distrik=district)
    lines = [f"registered {counts['new']} new keys ({counts['known']} known) as {district}"]
    while True:
        s = s3_compaction(distrik=district, ram_limit="1GB", target_prefix=TARGET)
        if s["keys_claimed"] == 0:
            break
        lines.append(f"  claimed {s['keys_claimed']}, succeeded {s['keys_succeeded']}, "
                     f"quarantined {s['keys_quarantined']}, rows {s['rows_in']} -> "
                     f"{s['rows_out']} in {s['duration_s']} s")
    lake = load_storage("shopfloor-lake")
    parts = Counter(o.key.rsplit("/", 1)[0] for o in lake.list_objects(TARGET)
                    if o.key.endswith(".parquet"))
    lines.append(f"Parquet partitions under {lake.url(TARGET)}:")
    lines += [f"  {p}: {n} file(s)" for p, n in sorted(parts.items())] or ["  (none)"]
    return lines
