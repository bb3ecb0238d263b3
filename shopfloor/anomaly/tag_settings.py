"""Detector settings per tag or per unit: ``{"line_pressure": {"spike_threshold": 8},
"unit:bar": {"mad_floor": 0.01}}``.

A key is a tag's name (every device's tag of that name), ``<device>/<name>`` (one tag)
or ``unit:<unit>`` (every tag of that unit). The most specific key wins: device and
name, then name, then unit, then the run's settings. Only the settings a series is
judged by can differ; how much history is read (``history_days``, ``level_hours``) is
the run's.
"""

from collections.abc import Mapping
from dataclasses import fields, replace

from shopfloor.anomaly.findings import DetectorParams
from shopfloor.errors import UserError

PER_TAG = ("deviation_threshold", "mad_floor", "min_history", "spike_threshold",
           "spike_min_change", "flatline_hours", "flatline_epsilon",
           "flatline_min_usual_change", "min_samples")
_INTS = {f.name for f in fields(DetectorParams) if f.type in (int, "int")}

Settings = Mapping[str, Mapping[str, float]]


def check_settings(settings: Settings, base: DetectorParams) -> None:
    """Refuse an unknown setting or a value the detectors cannot use, naming the key."""
    for key, values in settings.items():
        if not key or key == "unit:" or not isinstance(values, Mapping):
            raise UserError(f"tag_settings: {key!r} needs a tag name, <device>/<name> or "
                            "unit:<unit> and a mapping of settings")
        unknown = sorted(set(values) - set(PER_TAG))
        if unknown:
            raise UserError(f"tag_settings[{key!r}]: unknown setting(s) {unknown}; "
                            f"settable per tag: {', '.join(PER_TAG)}")
        try:
            _apply(base, values).check()
        except (TypeError, ValueError) as exc:
            raise UserError(f"tag_settings[{key!r}]: {exc}") from exc
        except UserError as exc:
            raise UserError(f"tag_settings[{key!r}]: {exc}") from exc


def _apply(base: DetectorParams, values: Mapping[str, float]) -> DetectorParams:
    typed = {k: int(v) if k in _INTS else float(v) for k, v in values.items()}
    return replace(base, **typed)


def params_for(settings: Settings, base: DetectorParams, device: str, name: str,
               unit: str | None) -> DetectorParams:
    """The settings one tag is judged by (unit, then name, then device/name over the
    run's)."""
    params = base
    for key in (f"unit:{unit}" if unit else None, name, f"{device}/{name}"):
        if key is not None and key in settings:
            params = _apply(params, settings[key])
    return params
