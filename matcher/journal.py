"""The matcher's durable command journal and its state snapshots.

Pure file I/O: payloads are opaque bytes (the caller encodes commands with orjson). One
directory holds append-only segments `journal-{first_seq:020d}.log` and snapshots
`snapshot-{seq:020d}.snap`. A segment is the magic line `ZMXJ1\\n` followed by records; a
record is the header `<IQI` (payload length, seq, crc32 over the 8 seq bytes and the
payload) followed by the payload. Seqs are gapless across segments and restarts.

Only the last segment can end in a torn record (a crash mid-write): opening the journal
truncates it. A bad record followed by valid ones is damage to acknowledged data and raises
`JournalCorrupt` instead. docs/journal.md states the durability of each fsync mode.

Not thread-safe: the matcher's single loop owns the journal; an exclusive lock on the
directory keeps a second process from opening it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from itertools import compress, count
from pathlib import Path

__all__ = ["FSYNC_MODES", "MAX_PAYLOAD", "Journal", "JournalCorrupt", "JournalLocked"]

log = logging.getLogger("zmx.journal")

SEGMENT_MAGIC = b"ZMXJ1\n"
SNAPSHOT_MAGIC = b"ZMXS1\n"
HEADER = struct.Struct("<IQI")
_SEQ = struct.Struct("<Q")
# A garbage length field must never be trusted: one command is far below this.
MAX_PAYLOAD = 16 << 20
FSYNC_MODES = ("always", "batch", "off")
PROGRESS_EVERY = 100_000
INDEX_EVERY = 1024
_SEGMENT_NAME = re.compile(r"journal-(\d{20})\.log")
_SNAPSHOT_NAME = re.compile(r"snapshot-(\d{20})\.snap")
_TMP_SUFFIX = ".tmp"


class JournalCorrupt(Exception):
    """Damage that is not a torn tail: acknowledged records may be affected, so refuse to go on."""


class JournalLocked(Exception):
    """Another Journal (in this or another process) has the directory open."""


class _BadRecord(Exception):
    """The bytes at an offset are not the expected next record."""


def _segment_name(first_seq: int) -> str:
    """Return the file name of the segment whose first record is first_seq."""
    return f"journal-{first_seq:020d}.log"


def _snapshot_name(seq: int) -> str:
    """Return the file name of the snapshot taken after record seq."""
    return f"snapshot-{seq:020d}.snap"


def _listed(directory: Path, pattern: re.Pattern[str]) -> list[int]:
    """Return the sorted seqs carried by the names in directory that match pattern."""
    seqs = []
    for entry in os.scandir(directory):
        match = pattern.fullmatch(entry.name)
        if match is not None:
            seqs.append(int(match.group(1)))
    seqs.sort()
    return seqs


def _parse_record(
    buf: bytes | mmap.mmap, pos: int, end: int, expected_seq: int, max_length: int | None = MAX_PAYLOAD
) -> tuple[bytes, int]:
    """Return the payload and end offset of record expected_seq at pos, or raise _BadRecord."""
    if end - pos < HEADER.size:
        raise _BadRecord(f"short header ({end - pos} of {HEADER.size} bytes)")
    length, seq, crc = HEADER.unpack_from(buf, pos)
    if max_length is not None and length > max_length:
        raise _BadRecord(f"length {length} exceeds the maximum {max_length}")
    start = pos + HEADER.size
    stop = start + length
    if stop > end:
        raise _BadRecord(f"short payload ({end - start} of {length} bytes)")
    payload = buf[start:stop]
    if zlib.crc32(payload, zlib.crc32(buf[pos + 4 : pos + 12])) != crc:
        raise _BadRecord(f"bad crc (seq field {seq})")
    if seq != expected_seq:
        raise _BadRecord(f"seq {seq}, expected {expected_seq}")
    return payload, stop


def _find_record(buf: bytes, start: int, low_seq: int, high_seq: int) -> int | None:
    """Return the offset of a valid record at or after start with low_seq < seq <= high_seq, or None."""
    # A Python loop over every offset is slow on a large garbage tail, so let C do the
    # sieve: view the bytes as 8-byte words at each of the 8 alignments and keep only the
    # words that could be a seq in range; only those candidates get a crc check.
    wanted = range(low_seq + 1, high_seq + 1)
    end = len(buf)
    for phase in range(8):
        first_header = start + phase
        if first_header + HEADER.size > end:
            break
        words_count = (end - HEADER.size - first_header) // 8 + 1
        seq_field = first_header + 4
        words = array("Q")
        words.frombytes(buf[seq_field : seq_field + 8 * words_count])
        if sys.byteorder == "big":
            words.byteswap()
        for index in compress(count(), map(wanted.__contains__, words)):
            offset = first_header + 8 * index
            try:
                _parse_record(buf, offset, end, words[index])
            except _BadRecord:
                continue
            return offset
    return None


def _sync_data(fd: int) -> None:
    """Flush a file's data and the metadata needed to read it back (its size) to stable storage."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of data to fd, continuing after partial writes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Journal:
    """Append-only, checksummed, sequence-numbered command journal with snapshots."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        fsync: str = "batch",
        segment_bytes: int = 64 << 20,
        *,
        keep_snapshots: int = 2,
        tail_records: int = 100_000,
    ) -> None:
        """Open or create the journal in directory, drop a torn tail and position for appending."""
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, not {fsync!r}")
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        if keep_snapshots < 1:
            raise ValueError(f"keep_snapshots must be at least 1, not {keep_snapshots}")
        self._directory = Path(directory)
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._keep_snapshots = keep_snapshots
        self._pending: list[bytes] = []
        # The newest committed payloads, so readers of the recent journal (the recorder
        # keeping up) never touch the files; `_tail[i]` is the payload of `_tail_first + i`.
        self._tail_records = tail_records
        self._tail: list[bytes] = []
        self._tail_first = 1
        # Segment first seq -> byte offsets of its records first_seq + k * INDEX_EVERY,
        # filled lazily by `_seek`, so reading old records skips whole blocks.
        self._index: dict[int, list[int]] = {}
        self._fd = -1
        self._unusable: str | None = None
        self._directory.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalLocked(f"journal {self._directory} is already open elsewhere") from None
            self._recover()
        except BaseException:
            self._release()
            raise

    @property
    def last_seq(self) -> int:
        """Return the seq of the last committed record (0 if none); buffered records are not counted."""
        return self._last_seq

    def _recover(self) -> None:
        """Drop unfinished files, recover the last segment (creating the first) and open it for appending."""
        for entry in os.scandir(self._directory):
            if entry.name.endswith(_TMP_SUFFIX) and (
                _SEGMENT_NAME.fullmatch(entry.name[: -len(_TMP_SUFFIX)])
                or _SNAPSHOT_NAME.fullmatch(entry.name[: -len(_TMP_SUFFIX)])
            ):
                # An atomic write that never reached its rename: nothing refers to it.
                log.warning("removing unfinished file %s", entry.path)
                os.unlink(entry.path)
        self._segments = _listed(self._directory, _SEGMENT_NAME)
        snapshots = _listed(self._directory, _SNAPSHOT_NAME)
        if not self._segments:
            # Without segments the newest snapshot is the only record of how far seqs got;
            # restarting at 1 would reuse seqs the snapshot already covers.
            first_seq = snapshots[-1] + 1 if snapshots else 1
            self._create_segment(first_seq)
            self._segments.append(first_seq)
        first_seq = self._segments[-1]
        path = self._directory / _segment_name(first_seq)
        self._last_seq, self._segment_size = self._recover_tail(path, first_seq)
        self._appended_seq = self._last_seq
        self._tail_first = self._last_seq + 1
        if snapshots and snapshots[-1] > self._last_seq:
            raise JournalCorrupt(
                f"{self._directory / _snapshot_name(snapshots[-1])} is ahead of the journal, "
                f"which ends at seq {self._last_seq} in {path} at offset {self._segment_size}"
            )
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def _recover_tail(self, path: Path, first_seq: int) -> tuple[int, int]:
        """Return the last seq and valid size of the last segment, truncating a torn tail."""
        data = path.read_bytes()
        if not data.startswith(SEGMENT_MAGIC):
            raise JournalCorrupt(f"{path} at offset 0: missing segment magic")
        end = len(data)
        pos = len(SEGMENT_MAGIC)
        seq = first_seq - 1
        while pos < end:
            try:
                _, next_pos = _parse_record(data, pos, end, seq + 1)
            except _BadRecord as bad:
                found = _find_record(data, pos + 1, seq, seq + (end - pos) // HEADER.size + 1)
                if found is not None:
                    raise JournalCorrupt(
                        f"{path} at offset {pos}: {bad}, but valid records follow at offset {found}"
                    ) from None
                log.warning(
                    "truncating torn tail of %s at offset %d: dropped %d bytes (%s); last seq %d",
                    path, pos, end - pos, bad, seq,
                )
                with open(path, "r+b") as file:
                    file.truncate(pos)
                    _sync_data(file.fileno())
                return seq, pos
            pos = next_pos
            seq += 1
        return seq, end

    def append(self, payload: bytes) -> int:
        """Buffer payload as the next record (written and synced at once in mode always); return its seq."""
        if self._unusable is not None:
            raise RuntimeError(self._unusable)
        length = len(payload)
        if length > MAX_PAYLOAD:
            raise ValueError(f"payload of {length} bytes exceeds the maximum {MAX_PAYLOAD}")
        seq = self._appended_seq + 1
        self._pending.append(HEADER.pack(length, seq, zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))))
        self._pending.append(payload)
        self._appended_seq = seq
        if self._fsync == "always":
            self.commit()
        return seq

    def commit(self) -> None:
        """Write every buffered record with one write and, in modes batch and always, one fdatasync."""
        if self._unusable is not None:
            raise RuntimeError(self._unusable)
        if not self._pending:
            return
        data = b"".join(self._pending)
        try:
            _write_all(self._fd, data)
            if self._fsync != "off":
                _sync_data(self._fd)
        except OSError as error:
            # The file may now hold part of the batch and, after a failed fsync, the kernel
            # may have dropped the dirty pages: no retry can be trusted. Reopening recovers.
            self._unusable = f"journal unusable after a write error: {error}"
            raise
        tail = self._tail
        tail += self._pending[1::2]
        if len(tail) > 2 * self._tail_records:
            dropped = len(tail) - self._tail_records
            del tail[:dropped]
            self._tail_first += dropped
        self._pending.clear()
        self._segment_size += len(data)
        self._last_seq = self._appended_seq
        if self._segment_size >= self._segment_bytes:
            self._start_segment()

    def rotate(self) -> None:
        """Commit, then continue in a new segment unless the current one is still empty."""
        self.commit()
        if self._last_seq >= self._segments[-1]:
            self._start_segment()

    def _start_segment(self) -> None:
        """Sync the current segment and continue in a new one named after the next seq."""
        first_seq = self._last_seq + 1
        try:
            # Whatever the mode, the old segment must be durable before a newer one exists:
            # only the last segment may end in a torn record.
            _sync_data(self._fd)
            self._create_segment(first_seq)
            os.close(self._fd)
            self._fd = -1
            self._segments.append(first_seq)
            self._fd = os.open(self._directory / _segment_name(first_seq), os.O_WRONLY | os.O_APPEND)
        except OSError as error:
            # Appending on to the old segment could follow an empty newer one on disk, which
            # reads back as a gap; reopening the journal picks the right segment.
            self._unusable = f"journal unusable after failing to start a segment: {error}"
            raise
        self._segment_size = len(SEGMENT_MAGIC)

    def _create_segment(self, first_seq: int) -> None:
        """Atomically create an empty segment (just the magic line) for first_seq."""
        self._write_atomic(self._directory / _segment_name(first_seq), SEGMENT_MAGIC)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        """Write data to path so that a crash leaves either no file or the whole file."""
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.fsync(self._dir_fd)

    def records(
        self, after: int = 0, progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """Iterate over committed (seq, payload) with seq > after; call progress(count) every 100k."""
        if after < 0:
            raise ValueError(f"after must not be negative, not {after}")
        stop_seq = self._last_seq
        if after >= stop_seq:
            return iter(())
        segments = self._segments[:]
        index = bisect_right(segments, after + 1) - 1
        if index < 0:
            raise JournalCorrupt(
                f"records after seq {after} were requested but the journal in {self._directory} "
                f"starts at seq {segments[0]}"
            )
        return self._iter_records(segments[index:], after, stop_seq, progress)

    def _iter_records(
        self,
        segments: list[int],
        after: int,
        stop_seq: int,
        progress: Callable[[int], None] | None,
    ) -> Iterator[tuple[int, bytes]]:
        """Yield the records after `after` up to stop_seq from segments, verifying each one."""
        yielded = 0
        every = PROGRESS_EVERY
        seq = segments[0] - 1
        for first_seq in segments:
            path = self._directory / _segment_name(first_seq)
            if first_seq != seq + 1:
                raise JournalCorrupt(f"{path} at offset 0: starts at seq {first_seq}, expected {seq + 1}")
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size < len(SEGMENT_MAGIC):
                    raise JournalCorrupt(f"{path} at offset 0: missing segment magic")
                # Records appended after records() was called lie beyond stop_seq, so the
                # size at mapping time is enough.
                buf = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            with buf:
                end = len(buf)
                if buf[: len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
                    raise JournalCorrupt(f"{path} at offset 0: missing segment magic")
                pos = len(SEGMENT_MAGIC)
                while seq < stop_seq and pos < end:
                    try:
                        payload, next_pos = _parse_record(buf, pos, end, seq + 1)
                    except _BadRecord as bad:
                        raise JournalCorrupt(f"{path} at offset {pos}: {bad}") from None
                    pos = next_pos
                    seq += 1
                    if seq > after:
                        yield seq, payload
                        yielded += 1
                        if progress is not None and yielded % every == 0:
                            progress(yielded)
            if seq >= stop_seq:
                return
        raise JournalCorrupt(
            f"{self._directory / _segment_name(segments[-1])} at offset {pos}: "
            f"ends at seq {seq}, expected records up to seq {stop_seq}"
        )

    def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Return up to `limit` committed (seq, payload) with seq > after, from memory when recent.

        Older records come from the segment files; a sparse offset index per segment keeps
        each call's work proportional to `limit`, not to the segment's size.
        """
        if after < 0 or limit < 1:
            raise ValueError(f"after must not be negative and limit positive, not {after}, {limit}")
        stop_seq = min(self._last_seq, after + limit)
        if after >= stop_seq:
            return []
        first = after + 1
        if first >= self._tail_first:
            start = first - self._tail_first
            return list(zip(range(first, stop_seq + 1), self._tail[start : start + stop_seq - after]))
        records: list[tuple[int, bytes]] = []
        segments = self._segments
        index = bisect_right(segments, first) - 1
        if index < 0:
            raise JournalCorrupt(f"seq {first} was requested but the journal in {self._directory} "
                                 f"starts at seq {segments[0]}")
        seq = after
        for first_seq in segments[index:]:
            path = self._directory / _segment_name(first_seq)
            with open(path, "rb") as file:
                buf = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            with buf:
                end = len(buf)
                pos, at = self._seek(first_seq, buf, max(seq + 1, first_seq))
                while at <= stop_seq and pos < end:
                    try:
                        payload, pos = _parse_record(buf, pos, end, at)
                    except _BadRecord as bad:
                        raise JournalCorrupt(f"{path} at offset {pos}: {bad}") from None
                    if at > seq:
                        records.append((at, payload))
                        seq = at
                    at += 1
            if seq >= stop_seq:
                break
        return records

    def _seek(self, first_seq: int, buf: mmap.mmap, wanted: int) -> tuple[int, int]:
        """Return (offset, seq) of an indexed record at or before `wanted` in one segment."""
        offsets = self._index.setdefault(first_seq, [len(SEGMENT_MAGIC)])
        block = (wanted - first_seq) // INDEX_EVERY
        end = len(buf)
        while len(offsets) <= block:
            # Walk headers only (the crc is checked when the record is read) to the next block.
            pos, at = offsets[-1], first_seq + (len(offsets) - 1) * INDEX_EVERY
            for _ in range(INDEX_EVERY):
                if end - pos < HEADER.size:
                    return pos, at
                pos += HEADER.size + HEADER.unpack_from(buf, pos)[0]
                at += 1
            offsets.append(pos)
        return offsets[block], first_seq + block * INDEX_EVERY

    def snapshot_at_most(self, seq: int) -> tuple[int, bytes] | None:
        """Return (seq, payload) of the newest verified snapshot taken at or before seq, or None."""
        return self._verified_snapshot(snapshot for snapshot in _listed(self._directory, _SNAPSHOT_NAME)
                                       if snapshot <= seq)

    def write_snapshot(self, seq: int, payload: bytes) -> Path:
        """Durably and atomically store payload as the state after record seq; return its path."""
        self.commit()
        if self._fsync == "off":
            # A durable snapshot ahead of a journal that lost its tail would make those seqs
            # be handed out again after a restart.
            _sync_data(self._fd)
        if not 0 <= seq <= self._last_seq:
            raise ValueError(f"snapshot seq {seq} is not in the journal (last seq {self._last_seq})")
        if len(payload) > 0xFFFFFFFF:
            raise ValueError(f"snapshot of {len(payload)} bytes does not fit the 4-byte length field")
        path = self._directory / _snapshot_name(seq)
        header = HEADER.pack(len(payload), seq, zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq))))
        self._write_atomic(path, b"".join((SNAPSHOT_MAGIC, header, payload)))
        for old in _listed(self._directory, _SNAPSHOT_NAME)[: -self._keep_snapshots]:
            os.unlink(self._directory / _snapshot_name(old))
        return path

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """Return (seq, payload) of the newest snapshot that verifies, or None."""
        return self._verified_snapshot(_listed(self._directory, _SNAPSHOT_NAME))

    def _verified_snapshot(self, seqs) -> tuple[int, bytes] | None:
        for seq in reversed(list(seqs)):
            path = self._directory / _snapshot_name(seq)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # pruned by a newer snapshot since the listing
            try:
                if not data.startswith(SNAPSHOT_MAGIC):
                    raise _BadRecord("missing snapshot magic")
                payload, end = _parse_record(data, len(SNAPSHOT_MAGIC), len(data), seq, max_length=None)
                if end != len(data):
                    raise _BadRecord(f"{len(data) - end} bytes after the payload")
            except _BadRecord as bad:
                log.warning("ignoring corrupt snapshot %s (%s); trying an older one", path, bad)
                continue
            return seq, payload
        return None

    def close(self) -> None:
        """Commit, sync and close; closing again does nothing."""
        if self._dir_fd < 0:
            return
        try:
            if self._unusable is None:
                self.commit()
                # A clean shutdown leaves everything durable, even in mode off.
                _sync_data(self._fd)
        finally:
            self._unusable = "journal is closed"
            self._release()

    def _release(self) -> None:
        """Close the segment and the directory descriptors."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)  # also drops the flock
            self._dir_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
