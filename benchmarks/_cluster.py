"""The out-of-core benchmark's ``LocalCluster``: what happened to its workers, and their peak RSS."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field

import dask
from _common import CapturedLogs, PeakRSS, progress, release_freed_memory

N_WORKERS = 2


@dataclass
class Events:
    """What happened to the workers during one measurement (or several, added up)."""

    restarts: int = 0
    pauses: int = 0
    spilled_keys: float = 0.0
    spilled_bytes: float = 0.0
    warnings: dict[str, int] = field(default_factory=dict)  # other warnings, by kind

    def __add__(self, other: Events) -> Events:
        warnings_ = dict(self.warnings)
        for kind, n in other.warnings.items():
            warnings_[kind] = warnings_.get(kind, 0) + n
        return Events(
            self.restarts + other.restarts,
            self.pauses + other.pauses,
            self.spilled_keys + other.spilled_keys,
            self.spilled_bytes + other.spilled_bytes,
            warnings_,
        )

    def __bool__(self) -> bool:
        return bool(self.restarts or self.pauses or self.spilled_keys or self.warnings)

    def text(self) -> str:
        parts = []
        if self.restarts:
            parts.append(f"{self.restarts} worker process(es) killed and replaced")
        if self.pauses:
            parts.append(f"{self.pauses} worker pauses (memory)")
        if self.spilled_keys:
            mib = self.spilled_bytes / 2**20
            parts.append(f"{self.spilled_keys:.0f} keys ({mib:.0f} MiB) spilled to disk")
        parts += [f"{n} x {kind!r}" for kind, n in sorted(self.warnings.items())]
        return "; ".join(parts) or "nothing"

    def short(self) -> str:
        parts = [f"{self.restarts} killed+restarted"] if self.restarts else []
        parts += [f"{self.pauses} pauses"] if self.pauses else []
        parts += [f"{self.spilled_bytes / 2**20:.0f} MiB spilled"] if self.spilled_keys else []
        n_warnings = sum(self.warnings.values())
        parts += [f"{n_warnings} other warnings"] if n_warnings else []
        return ", ".join(parts) + " (see below)"


def workers_note(events: Events) -> str:
    """The end of a table row's note, when its measurement saw something happen to the workers."""
    return f"; WORKERS: {events.short()}" if events else ""


class Cluster:
    """A LocalCluster with a client, and what happened to its workers during each measurement.

    ``check(during)`` after every measurement compares the worker processes' pids with the last check's
    (a replaced pid is a worker killed, for memory or otherwise, and restarted by its nanny), and counts the
    pauses and other warnings the workers logged since then, the warnings of the nannies and the scheduler
    (which run in this process) and the bytes the workers spilled to disk.
    """

    def __init__(self, worker_memory: int):
        from distributed import Client, LocalCluster

        self._exit = contextlib.ExitStack()
        self.logs = self._exit.enter_context(CapturedLogs("distributed"))
        self.cluster = LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=1,
            memory_limit=worker_memory,
            processes=True,
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(N_WORKERS)
        self.pids = self._current_pids()
        self.phases: list[tuple[str, Events]] = []
        self.restarted_on_purpose: list[str] = []
        self._since = time.strftime("%Y-%m-%d %H:%M:%S,000")
        self._main_seen = len(self.logs.messages)
        self._spill_seen = self.client.run(_spilled)

    def _current_pids(self) -> dict[str, int]:
        return dict(sorted(self.client.run(os.getpid).items()))

    def check(self, during: str) -> Events:
        """What happened to the workers since the last check; logged under ``during``."""
        self.client.wait_for_workers(N_WORKERS, timeout=120)
        now = self._current_pids()
        events = Events(restarts=len(set(self.pids.values()) - set(now.values())))
        self.pids = now
        since, self._since = self._since, time.strftime("%Y-%m-%d %H:%M:%S,000")
        for records in self.client.get_worker_logs().values():
            for level, message in records:
                # Records start with their time, "2026-01-31 12:00:00,123", which sorts as text.
                if level not in ("WARNING", "ERROR", "CRITICAL") or message[:23] < since:
                    continue
                if "Pausing worker" in message:
                    events.pauses += 1
                elif "Resuming worker" not in message:
                    kind = _log_kind(message)
                    events.warnings[kind] = events.warnings.get(kind, 0) + 1
        for message in self.logs.messages[self._main_seen :]:
            kind = _log_kind(message)
            events.warnings[kind] = events.warnings.get(kind, 0) + 1
        self._main_seen = len(self.logs.messages)
        spilled = self.client.run(_spilled)
        for address, (keys, nbytes) in spilled.items():
            seen_keys, seen_bytes = self._spill_seen.get(address, (0.0, 0.0))
            events.spilled_keys += keys - seen_keys
            events.spilled_bytes += nbytes - seen_bytes
        self._spill_seen = spilled
        self.phases.append((during, events))
        if events:
            progress(f"WARNING: during {during}: {events.text()}")
        return events

    def restart(self, why: str) -> None:
        """Restart the workers on purpose (not counted as a failure), then start counting afresh."""
        progress(f"restarting the workers: {why}")
        # distributed 2026.8's Scheduler.restart asserts that no task is left; after dask-ml's fits some
        # can stay (seen twice, also 5 s later). The restart only freshens the workers for the inertia
        # passes, which time nothing: go on without it rather than lose the run.
        for attempt in range(2):
            try:
                self.client.restart(wait_for_workers=True)
                break
            except AssertionError:
                if attempt == 0:
                    progress("restart refused (tasks still held); retrying in 5 s")
                    time.sleep(5)
        else:
            progress("restart refused again: going on with the same workers")
            return
        self.client.wait_for_workers(N_WORKERS, timeout=120)
        self.pids = self._current_pids()
        self._since = time.strftime("%Y-%m-%d %H:%M:%S,000")
        self._main_seen = len(self.logs.messages)
        self._spill_seen = self.client.run(_spilled)
        self.restarted_on_purpose.append(why)

    def worker_names(self) -> dict[str, int]:
        return {f"w{i}": pid for i, pid in enumerate(self.pids.values())}

    def peak(self) -> PeakRSS:
        """The workers' peak RSS during a ``with`` block, after they handed freed memory back to the OS."""
        self.client.run(release_freed_memory)
        return PeakRSS(self.worker_names())

    def health(self) -> list[str]:
        troubled = [(during, events) for during, events in self.phases if events]
        clean = [during for during, events in self.phases if not events]
        on_purpose = "".join(f"; restarted on purpose {why}" for why in self.restarted_on_purpose)
        if not troubled:
            return [
                f"workers: none killed or restarted by the nanny (the same pids throughout{on_purpose}), "
                f"none paused, nothing spilled to disk, no warnings logged: {len(self.phases)} checks, one "
                "after every measurement"
            ]
        total = Events()
        for _, events in self.phases:
            total = total + events
        lines = [f"workers, all measurements: {total.text()}{on_purpose}"]
        lines += [f"  during {during}: {events.text()}" for during, events in troubled]
        lines.append(f"  nothing of the kind during: {', '.join(clean)}")
        return lines

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.cluster.close()
        self._exit.close()


def _log_kind(message: str) -> str:
    """A log message without its time, numbers and addresses, to count messages of one kind together."""
    message = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ - ", "", message)
    message = message.split(" -- ")[0].split(". This may")[0].splitlines()[0]
    message = re.sub(r"(tcp|inproc)://[\w.:/-]+", "<addr>", message)
    message = re.sub(r"\d+(\.\d+)?", "N", message)
    return message[:90]


def _spilled(dask_worker=None) -> tuple[float, float]:
    metrics = getattr(getattr(dask_worker, "data", None), "cumulative_metrics", {})
    return metrics.get(("disk-write", "count"), 0.0), metrics.get(("disk-write", "bytes"), 0.0)


def cluster_info(worker_memory: int) -> list[str]:
    """The header's lines on the cluster: its workers, their memory thresholds and environment."""
    cfg = dask.config.get("distributed.worker.memory")
    thresholds = ", ".join(f"{name} {cfg.get(name)}" for name in ("target", "spill", "pause", "terminate"))
    # What the nannies set in the workers' environment (a variable set here wins, as in distributed).
    env = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    env = {k: os.environ.get(k, v) for k, v in env.items() if v is not None}
    environment = ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "none"
    return [
        f"cluster: LocalCluster(n_workers={N_WORKERS}, threads_per_worker=1, memory_limit="
        f"{worker_memory / 2**20:.0f} MiB); worker memory thresholds: {thresholds}",
        f"worker environment (distributed.nanny.pre-spawn-environ): {environment}",
        f"peak RSS per worker: {PeakRSS.method()}",
    ]
