"""Quality per point, as OPC's quality codes and Ignition's ``dataintegrity`` spell them:
192 good, 64 uncertain, 0 bad. A point that is not good carries a reason."""

GOOD, UNCERTAIN, BAD = 192, 64, 0
NAMES = {GOOD: "good", UNCERTAIN: "uncertain", BAD: "bad"}

# Reasons a point is bad (short, stable texts: dashboards and queries group by them).
READ_FAILED = "read failed"
NOT_FINITE = "not a finite number"
NO_ANSWER = "no answer"  # the device answered no read of the sample: no value at all
NO_VALUE = "no value"  # a migrated temperature_raw row held NULL in this column
STALE = "stale"  # uncertain: the same value for the tag's ``stale_after`` readings


def out_of_range(lo: float, hi: float) -> str:
    """The reason of a value outside its tag's valid range ``[lo, hi]``."""
    return f"out of range [{_number(lo)}, {_number(hi)}]"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def quality_name(code: int) -> str:
    """``good`` / ``uncertain`` / ``bad`` for a quality code."""
    return NAMES.get(int(code), f"code {code}")

# Reasons of points that came by MQTT (docs/mqtt.md).
MISSING = "missing in the message"
NOT_A_NUMBER = "not a number"
NOT_A_BOOLEAN = "not a boolean"
NOT_TEXT = "not a scalar"
NOT_JSON = "message is not a JSON object"
NO_TIMESTAMP = "no valid timestamp in the message: receive time"
NULL_VALUE = "null value"
UNSUPPORTED_TYPE = "unsupported data type"
NODE_OFFLINE = "node offline (NDEATH)"
DEVICE_OFFLINE = "device offline (DDEATH)"
