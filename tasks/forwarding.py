"""Store and forward in the modbus-capture flow: open the collector's buffer, run one
forwarder per sink beside the capture, drain at the end, tell what is left."""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from shopfloor.buffer.status import BacklogReporter, WarehouseWriter, buffer_rows
from shopfloor.buffer.store import (
    FULL_WARNING,
    SampleBuffer,
    alarm_every_seconds,
    alert_age_seconds,
    buffer_path,
    collector_name,
    limits_from_env,
)
from shopfloor.modbus.buffered import (
    LANDING,
    WAREHOUSE,
    Forwarder,
    ForwardLoop,
    Heartbeat,
    backlog_message,
    config_json,
    sink_name,
)
from shopfloor.modbus.capture import CaptureStats
from shopfloor.modbus.client import DeviceConfig
from shopfloor.modbus.sink import ReadingSink
from shopfloor.settings import shopfloor_home
from tasks import runtime
from tasks.outcomes import emit

# What the run's end may spend forwarding what is still buffered (inside the flow's
# timeout margin); what remains is the backlog the next run drains.
FINAL_DRAIN_SECONDS = 30.0


@dataclass
class StoreAndForward:
    """The run's buffer and forwarders."""

    collector: str
    buffer: SampleBuffer
    run_id: str
    devices: list[str]
    loops: list[ForwardLoop] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)
    dropped_at_start: int = 0
    dropped: int = 0  # by the limits during this run
    alarms: threading.Event | None = None
    heartbeat: Heartbeat | None = None
    reporter: BacklogReporter | None = None  # the backlog per sink, into the warehouse


def open_store(configs: Sequence[DeviceConfig], run_id: str, target_db: str | None,
               raw_logs: str | None, stats: dict[str, CaptureStats]) -> StoreAndForward:
    """Open the collector's buffer, record the run's devices and sinks, start a forwarder
    per sink (it drains any backlog of earlier runs first)."""
    logger = get_run_logger()
    collector = collector_name()
    buffer = SampleBuffer(buffer_path(shopfloor_home(), collector), limits_from_env())
    if buffer.recovered:
        logger.warning("%s", buffer.recovered)  # one line: what was torn and where it is
    sinks = {}
    if target_db:
        sinks[WAREHOUSE] = sink_name(WAREHOUSE, target_db)
    if raw_logs:
        sinks[LANDING] = sink_name(LANDING, raw_logs)
    for cfg in configs:
        buffer.put_device(cfg.name, config_json(cfg))
        for name in sinks.values():
            buffer.register_sink(name, cfg.name)
    store = StoreAndForward(collector, buffer, run_id, [c.name for c in configs],
                            dropped_at_start=sum(buffer.dropped().values()),
                            heartbeat=Heartbeat(buffer, run_id))
    # Counted before the forwarders start: they take the backlog at once.
    pending = {name: buffer.backlog(name).samples for name in sinks.values()}
    after_pass = None
    if target_db:
        engine, tables = runtime.engine(target_db), runtime.tables()
        store.reporter = _reporter(buffer, collector, WarehouseWriter(
            engine, tables.collector_backlog), target_db)
        after_pass = store.reporter.request
        store.loops.append(_loop(WAREHOUSE, sinks[WAREHOUSE], buffer, stats, run_id,
                                 lambda cfg, s: ReadingSink(cfg, s, run_id, engine=engine,
                                                            tables=tables), after_pass))
    if raw_logs:
        storage = runtime.storage(raw_logs)
        store.loops.append(_loop(LANDING, sinks[LANDING], buffer, stats, run_id,
                                 lambda cfg, s: ReadingSink(cfg, s, run_id, storage=storage),
                                 after_pass))
    logger.info("buffer %s (collector %s): backlog at start %s", buffer.path.name, collector,
                ", ".join(f"{n} for {s}" for s, n in pending.items()))
    store.alarms = watch(store)
    return store


def _reporter(buffer: SampleBuffer, collector: str, write: WarehouseWriter,
              target_db: str) -> BacklogReporter:
    """Reports the backlog per sink into the warehouse's ``collector_backlog`` after
    every forwarding pass, on its own thread: the dashboard cannot read the buffer."""
    logger = get_run_logger()

    def warn(error: str) -> None:
        logger.warning("backlog report to %s skipped (%s): capture and forwarding go on, "
                       "the next pass reports again", target_db, error)

    return BacklogReporter(lambda: buffer_rows(buffer, collector), write, warn).start()


def _loop(kind: str, name: str, buffer: SampleBuffer, stats: dict[str, CaptureStats],
          run_id: str, make, after_pass: Callable[[], None] | None = None) -> ForwardLoop:
    def reader(cfg: DeviceConfig) -> ReadingSink:
        # The run's own devices count what is forwarded in their stats; a device of an
        # earlier run only in the forwarder's.
        return make(cfg, stats.get(cfg.name) or CaptureStats(cfg.name))

    logger = get_run_logger()

    def on_error(error: str) -> None:
        logger.warning("forwarding to %s failed (%s): capture goes on, the samples stay "
                       "buffered and are retried", name, error)

    return ForwardLoop(Forwarder(kind, name, buffer, reader), on_error, after_pass).start()


def close_store(store: StoreAndForward, drain_seconds: float | None = None) -> None:
    """The capture ended: close the devices' last landing batches, stop the forwarders,
    drain what is left for at most ``drain_seconds`` (default
    :data:`FINAL_DRAIN_SECONDS`), record the backlog per sink and report it to the
    warehouse a last time."""
    drain_seconds = FINAL_DRAIN_SECONDS if drain_seconds is None else drain_seconds
    if store.alarms is not None:
        store.alarms.set()
    if store.heartbeat is not None:
        store.heartbeat.stop()
    store.buffer.end_run(store.run_id)
    deadline = time.monotonic() + drain_seconds
    for loop in store.loops:
        loop.stop()
    for loop in store.loops:
        loop.drain(max(0.0, deadline - time.monotonic()), own_run=store.run_id)
        # What this run leaves behind (an overlapping live run's samples are its own).
        settled, undecided = store.buffer.left_behind(loop.forwarder.name, store.run_id)
        store.backlog[loop.forwarder.name] = settled + undecided
    if store.reporter is not None:
        store.reporter.close()


def check_alarms(store: StoreAndForward) -> list[dict[str, object]]:
    """Emit ``shopfloor.buffer.backlog`` for each sink whose oldest unforwarded sample is
    older than :func:`alert_age_seconds`, ``shopfloor.buffer.filling`` when the buffer is
    over 80 % full; returns one row per sink for the artifact."""
    now = time.time()
    fill = store.buffer.fill_ratio()
    dropped = sum(store.buffer.dropped().values())
    rows = []
    for loop in store.loops:
        s = loop.forwarder.stats
        backlog = store.buffer.backlog(s.sink)
        age = backlog.age_seconds(now)
        rows.append({"collector": store.collector, "sink": s.sink, "forwarded": s.forwarded,
                     "objects": s.objects,
                     "backlog": store.backlog.get(s.sink, backlog.samples),
                     "oldest_backlog_s": round(age, 1), "errors": s.errors,
                     "last_error": s.last_error, "buffer_full_pct": round(100 * fill, 1),
                     "dropped_total": dropped})
        if backlog.samples and age > alert_age_seconds():
            emit("shopfloor.buffer.backlog", f"shopfloor.buffer.{store.collector}.{s.sink}",
                 {"collector": store.collector, "sink": s.sink, "samples": backlog.samples,
                  "oldest_age_seconds": round(age, 1), "last_error": s.last_error})
    if fill > FULL_WARNING:
        emit("shopfloor.buffer.filling", f"shopfloor.buffer.{store.collector}",
             {"collector": store.collector, "fill_ratio": round(fill, 3),
              "dropped_total": dropped})
    return rows


def watch(store: StoreAndForward, every: float | None = None) -> threading.Event:
    """Check the alarms every ``every`` s (default :func:`alarm_every_seconds`) while the
    capture runs (a long outage is told before the run ends); set the returned event to
    stop."""
    stop = threading.Event()
    every = alarm_every_seconds() if every is None else every

    def run() -> None:
        while not stop.wait(every):
            try:
                check_alarms(store)
            except Exception as exc:  # an alarm that could not be sent never stops capture
                get_run_logger().warning("buffer alarm check failed: %s", exc)

    threading.Thread(target=run, name="buffer-alarms", daemon=True).start()
    return stop


def report(store: StoreAndForward, buffered: int) -> str:
    """Publish the buffer's table artifact and its events; the run's one-line summary
    (``buffered 36, forwarded 2 to warehouse:db, backlog 34 for warehouse:db``)."""
    rows = check_alarms(store)
    create_table_artifact(table=rows, key="modbus-capture-buffer",
                          description="Store and forward: backlog per sink of this collector")
    store.dropped = sum(store.buffer.dropped().values()) - store.dropped_at_start
    return backlog_message(buffered, {loop.forwarder.name: loop.forwarder.stats.forwarded
                                      for loop in store.loops}, store.backlog, store.dropped)
