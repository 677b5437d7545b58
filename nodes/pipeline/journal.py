"""The sink's ledger on disk: an append-only journal per batch, replayed when the sink starts.

Why: the ledger is the pipeline's only record of which tasks are done. Held in memory alone, a sink
restart loses it (measured before: ``size null, pending 1475`` forever and ~525 results gone), and
the ventilator would have to re-send the whole batch. With the journal a restarted sink knows the
batch size and every result it had counted, and the ventilator re-sends only what is really missing.

Where: ``SINK_STATE_DIR`` (default ``$TMPDIR/mpc-sink-state/<NODE_NAME>``; in compose a named volume,
so it outlives the container). One file per batch, ``<safe batch id>-<hash>.ledger``, so a batch the
ledger evicts (``KEEP_BATCHES``, ``MAX_UNANNOUNCED``) is forgotten by deleting one file. Results the ledger
dropped (its limits: :mod:`nodes.pipeline.ledger`) are not journalled, so a replay rebuilds the same ledger.

Format: a stream of msgpack arrays, replayed in order through the same ``BatchLedger`` calls the
sink made, so the replayed ledger is the one the sink had (counts, duplicates, per-worker shares,
arrival times)::

    ["B", batch_id, created_at]            header, first record of every file
    ["A", size, t]                         the batch was announced with this size
    ["R", n, worker, msg_id, t]            one result (counted, duplicate or still pending)
    ["S", [n, ...], worker, msg_id, t]     the results of one ``results`` frame kept by the ledger, in order
                                           (replayed as one "R" each; journals without "S" replay as before)

Cost: the pipeline moves thousands of tasks a second, so nothing is written per message. Records go
into Python's file buffer; :meth:`Journal.flush` hands them to the OS once per pass of the sink's
loop (one ``write`` per batch of messages), which is enough to survive a SIGKILL of the sink (the
kernel has the bytes). ``fsync`` (surviving a machine crash) runs every ``fsync_every`` seconds and
always when a batch completes, before the sink tells a ventilator so. A crash can leave a torn last
record: replay stops at the last whole record and truncates the file there; the tasks behind it are
simply missing and re-sent.

No sockets here (the design's rule for models); the sink owns the journal and calls it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgpack

from nodes.core.log import event
from nodes.pipeline.ledger import Ledger

log = logging.getLogger(__name__)

SUFFIX = ".ledger"
HEADER, ANNOUNCED, RESULT, RESULTS = "B", "A", "R", "S"
#: Python-side buffer per open journal file, bytes (records reach the OS at each flush anyway).
BUFFER = 64 * 1024


def file_name(batch: str) -> str:
    """A safe, unique file name for a batch id (any string of up to 200 characters)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", batch)[:80]
    return f"{safe}-{hashlib.sha1(batch.encode()).hexdigest()[:12]}{SUFFIX}"


@dataclass
class Replay:
    """What :meth:`Journal.replay` found."""

    batches: int = 0
    records: int = 0
    #: Results replayed: one an "R" record, one a number of an "S" record.
    results: int = 0
    torn_bytes: int = 0
    bad_files: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records": self.records,
            "results": self.results,
            "torn_bytes": self.torn_bytes,
            "bad_files": list(self.bad_files),
            "elapsed_s": self.elapsed_s,
        }


class Journal:
    """Append-only journal files under ``directory``, one per batch."""

    def __init__(self, directory: str | os.PathLike[str], fsync_every: float = 1.0) -> None:
        self.dir = Path(directory)
        self.fsync_every = fsync_every
        self._files: dict[str, IO[bytes]] = {}
        self._dirty: set[str] = set()  # written since the last flush
        self._unsynced: set[str] = set()  # flushed since the last fsync
        self._last_sync = time.monotonic()
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self.counters = {"records": 0, "flushes": 0, "fsyncs": 0}

    # --- start-up -------------------------------------------------------------------------------

    def open(self) -> Journal:
        """Create the directory; raises OSError if it cannot be created or written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise PermissionError(f"{self.dir} is not writable")
        return self

    def replay(self, ledger: Ledger) -> Replay:
        """Rebuild ``ledger`` from every journal file, oldest batch first; torn tails are cut off."""
        started = time.monotonic()
        report = Replay()
        loaded: list[tuple[float, str, list[list[Any]]]] = []
        for path in sorted(self.dir.glob("*" + SUFFIX)):
            try:
                batch, created, records, good = self._read(path)
            except (OSError, ValueError) as exc:
                report.bad_files.append(path.name)
                event(log, "journal_bad_file", logging.WARNING, file=str(path), error=str(exc))
                continue
            size = path.stat().st_size
            if good < size:
                report.torn_bytes += size - good
                with open(path, "r+b") as f:
                    f.truncate(good)
                event(log, "journal_torn_tail", logging.WARNING, file=str(path), cut_bytes=size - good)
            loaded.append((created, batch, records))
        for _created, batch, records in sorted(loaded, key=lambda item: item[0]):
            # The same admission as the sink's: an announced batch always gets a place, one never announced
            # only within the ledger's limits (else its journal goes, as when the sink dropped it live).
            announced = any(rec[0] == ANNOUNCED for rec in records)
            b = ledger.get(batch) if announced else ledger.for_result(batch)
            if b is None:
                self.forget(batch)
                continue
            for rec in records:
                if rec[0] == ANNOUNCED:
                    if b.size is None:
                        b.announce(rec[1], now=rec[2])
                elif rec[0] == RESULT:
                    b.record(rec[1], rec[2], rec[3], now=rec[4])
                    report.results += 1
                else:
                    _, ns, worker, msg_id, now = rec
                    for n in ns:
                        b.record(n, worker, msg_id, now=now)
                    report.results += len(ns)
            report.batches += 1
            report.records += len(records)
        for batch in ledger.take_evicted():  # more batches on disk than the ledger keeps
            self.forget(batch)
        report.elapsed_s = round(time.monotonic() - started, 6)
        return report

    @staticmethod
    def _read(path: Path) -> tuple[str, float, list[list[Any]], int]:
        """``(batch, created_at, records, offset after the last whole valid record)`` of one file."""
        data = path.read_bytes()
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        batch: str | None = None
        created = 0.0
        records: list[list[Any]] = []
        good = 0
        while True:
            try:
                rec = unpacker.unpack()
            except msgpack.OutOfData:
                break  # end of file, or a torn last record
            except Exception:  # noqa: BLE001 - msgpack raises several types for garbage
                break
            if batch is None:
                if not (isinstance(rec, list) and len(rec) == 3 and rec[0] == HEADER and isinstance(rec[1], str)):
                    raise ValueError("no journal header")
                batch, created = rec[1], float(rec[2]) if isinstance(rec[2], (int, float)) else 0.0
            elif _valid(rec):
                records.append(rec)
            else:
                break
            good = unpacker.tell()
        if batch is None:
            raise ValueError("empty or torn before its header")
        return batch, created, records, good

    # --- the sink's hot path -------------------------------------------------------------------

    def announced(self, batch: str, size: int, now: float) -> None:
        self._write(batch, [ANNOUNCED, size, now])

    def result(self, batch: str, n: int, worker: str, msg_id: str, now: float) -> None:
        self._write(batch, [RESULT, n, worker, msg_id, now])

    def results(self, batch: str, ns: list[int], worker: str, msg_id: str, now: float) -> None:
        """The kept results of one ``results`` frame: one record (a single one is written as "R")."""
        self._write(batch, [RESULTS, ns, worker, msg_id, now] if len(ns) > 1 else [RESULT, ns[0], worker, msg_id, now])

    def _write(self, batch: str, record: list[Any]) -> None:
        f = self._files.get(batch)
        if f is None:
            f = self._open_file(batch)
        f.write(self._pack(record))
        self._dirty.add(batch)
        self.counters["records"] += 1

    def _open_file(self, batch: str) -> IO[bytes]:
        path = self.dir / file_name(batch)
        new = not path.exists()
        f = self._files[batch] = open(path, "ab", buffering=BUFFER)  # noqa: SIM115 - closed in close()/forget()
        if new:
            f.write(self._pack([HEADER, batch, time.time()]))
            f.flush()
            os.fsync(f.fileno())
            _fsync_dir(self.dir)  # the new name itself survives a crash
        return f

    def flush(self) -> None:
        """Hand buffered records to the OS (SIGKILL-safe); fsync too when ``fsync_every`` has passed."""
        if self._dirty:
            for batch in self._dirty:
                self._files[batch].flush()
            self._unsynced |= self._dirty
            self._dirty.clear()
            self.counters["flushes"] += 1
        if self._unsynced and time.monotonic() - self._last_sync >= self.fsync_every:
            self.sync()

    def sync(self, batch: str | None = None) -> None:
        """fsync one batch's file (e.g. when it completes) or every file flushed since the last sync."""
        if batch is not None:
            f = self._files.get(batch)
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                self._dirty.discard(batch)
                self._unsynced.discard(batch)
                self.counters["fsyncs"] += 1
            return
        for name in self._unsynced:
            f = self._files.get(name)
            if f is not None:
                os.fsync(f.fileno())
                self.counters["fsyncs"] += 1
        self._unsynced.clear()
        self._last_sync = time.monotonic()

    def forget(self, batch: str) -> None:
        """Delete an evicted batch's journal."""
        f = self._files.pop(batch, None)
        if f is not None:
            f.close()
        self._dirty.discard(batch)
        self._unsynced.discard(batch)
        (self.dir / file_name(batch)).unlink(missing_ok=True)

    def close(self) -> None:
        """Flush and fsync everything, close the files."""
        for name in list(self._files):
            f = self._files.pop(name)
            try:
                f.flush()
                os.fsync(f.fileno())
            finally:
                f.close()
        self._dirty.clear()
        self._unsynced.clear()


def _valid(rec: Any) -> bool:
    if not isinstance(rec, list) or not rec:
        return False
    if rec[0] == ANNOUNCED:
        return len(rec) == 3 and _whole(rec[1]) and _time(rec[2])
    if rec[0] == RESULT:
        return (
            len(rec) == 5 and _whole(rec[1]) and isinstance(rec[2], str) and isinstance(rec[3], str) and _time(rec[4])
        )
    if rec[0] == RESULTS:
        return (
            len(rec) == 5
            and isinstance(rec[1], list)
            and all(_whole(n) for n in rec[1])
            and isinstance(rec[2], str)
            and isinstance(rec[3], str)
            and _time(rec[4])
        )
    return False


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _time(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
