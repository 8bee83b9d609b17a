"""Test matcher.journal: round trips, fsync modes, torn tails, corruption, segments, snapshots, kill -9."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import matcher.journal as journal_module
from matcher.journal import HEADER, MAX_PAYLOAD, SEGMENT_MAGIC, Journal, JournalCorrupt, JournalLocked

REPO_ROOT = Path(__file__).resolve().parents[3]


def payload_for(seq: int) -> bytes:
    return b'{"cmd":"place","n":%d,"pad":"%s"}' % (seq, b"x" * (seq % 23))


def fill(journal: Journal, count: int, per_commit: int = 7) -> list[tuple[int, bytes]]:
    """Append count records committed in batches of per_commit; return what was appended."""
    written = []
    for seq in range(journal.last_seq + 1, journal.last_seq + count + 1):
        payload = payload_for(seq)
        assert journal.append(payload) == seq
        written.append((seq, payload))
        if len(written) % per_commit == 0:
            journal.commit()
    journal.commit()
    return written


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.log"))


def snapshots(directory: Path) -> list[Path]:
    return sorted(directory.glob("snapshot-*.snap"))


def record_bytes(seq: int, payload: bytes) -> bytes:
    seq_bytes = seq.to_bytes(8, "little")
    return HEADER.pack(len(payload), seq, zlib.crc32(payload, zlib.crc32(seq_bytes))) + payload


def record_offsets(path: Path) -> list[int]:
    """Return the offset of every record in a well-formed segment."""
    data = path.read_bytes()
    offsets, pos = [], len(SEGMENT_MAGIC)
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER.size + HEADER.unpack_from(data, pos)[0]
    return offsets


def write_records(directory: Path, count: int) -> tuple[list[tuple[int, bytes]], Path, list[int]]:
    """Write count records; return them, the last segment and its record offsets."""
    with Journal(directory) as journal:
        written = fill(journal, count)
    path = segments(directory)[-1]
    return written, path, record_offsets(path)


def assert_unlocked(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def reopen_all(directory: Path, **kwargs: object) -> list[tuple[int, bytes]]:
    with Journal(directory, **kwargs) as journal:
        return list(journal.records())


# --- round trips and fsync modes ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["always", "batch", "off"])
def test_round_trip_in_each_mode(tmp_path: Path, mode: str) -> None:
    with Journal(tmp_path, fsync=mode) as journal:
        assert journal.last_seq == 0
        assert list(journal.records()) == []
        written = fill(journal, 50)
        assert journal.last_seq == 50
        assert list(journal.records()) == written
    assert reopen_all(tmp_path, fsync=mode) == written


def test_seq_continues_across_reopen(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        first = fill(journal, 10)
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 10
        assert journal.append(b"eleven") == 11
        journal.commit()
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 11
        assert list(journal.records()) == [*first, (11, b"eleven")]


def test_close_commits_pending_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(b"a")
    journal.append(b"b")
    journal.close()
    journal.close()
    assert reopen_all(tmp_path) == [(1, b"a"), (2, b"b")]
    with pytest.raises(RuntimeError, match="closed"):
        journal.append(b"c")


def test_batch_buffers_until_commit(tmp_path: Path) -> None:
    with Journal(tmp_path, fsync="batch") as journal:
        size = segments(tmp_path)[0].stat().st_size
        assert journal.append(b"one") == 1
        assert journal.append(b"two") == 2
        assert journal.last_seq == 0, "not durable before commit"
        assert list(journal.records()) == []
        assert segments(tmp_path)[0].stat().st_size == size
        journal.commit()
        assert journal.last_seq == 2
        assert list(journal.records()) == [(1, b"one"), (2, b"two")]


@pytest.mark.parametrize(
    ("mode", "syncs_per_append", "syncs_per_commit"), [("always", 1, 0), ("batch", 0, 1), ("off", 0, 0)]
)
def test_sync_calls_per_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, syncs_per_append: int, syncs_per_commit: int
) -> None:
    with Journal(tmp_path, fsync=mode) as journal:
        synced: list[int] = []

        def counting(real):
            def sync(fd: int) -> None:
                synced.append(fd)
                real(fd)

            return sync

        monkeypatch.setattr(os, "fdatasync", counting(os.fdatasync))
        monkeypatch.setattr(os, "fsync", counting(os.fsync))
        for n in range(10):
            journal.append(b"p%d" % n)
        assert len(synced) == 10 * syncs_per_append
        assert journal.last_seq == (10 if mode == "always" else 0)
        journal.commit()
        assert len(synced) == 10 * syncs_per_append + syncs_per_commit
        journal.commit()  # nothing buffered: no write, no sync
        assert len(synced) == 10 * syncs_per_append + syncs_per_commit
        assert journal.last_seq == 10


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        Journal(tmp_path, fsync="sometimes")
    with pytest.raises(ValueError, match="segment_bytes"):
        Journal(tmp_path, segment_bytes=0)
    with Journal(tmp_path) as journal:
        with pytest.raises(ValueError, match="maximum"):
            journal.append(bytes(MAX_PAYLOAD + 1))
        with pytest.raises(ValueError, match="negative"):
            journal.records(after=-1)


def test_second_open_is_refused_until_close(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    with pytest.raises(JournalLocked):
        Journal(tmp_path)
    journal.close()
    Journal(tmp_path).close()


def test_progress_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "PROGRESS_EVERY", 10)
    with Journal(tmp_path) as journal:
        fill(journal, 35)
        reported: list[int] = []
        assert len(list(journal.records(after=3, progress=reported.append))) == 32
        assert reported == [10, 20, 30]


def test_records_stops_at_what_was_committed_when_called(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=200) as journal:
        written = fill(journal, 10)
        reader = journal.records(after=4)
        # Committed and rotated while the reader is open: not part of what it reads.
        journal.append(b"later")
        journal.commit()
        fill(journal, 20)
        assert len(segments(tmp_path)) > 3
        assert list(reader) == written[4:]


def test_write_error_makes_the_journal_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    written = fill(journal, 5)
    journal.append(b"lost")

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        journal.commit()
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="No space"):
        journal.append(b"more")
    journal.close()
    assert reopen_all(tmp_path) == written


# --- torn tails and corruption ------------------------------------------------------------


def cut_last_record(keep: int):
    def damage(path: Path, offsets: list[int]) -> None:
        os.truncate(path, offsets[-1] + keep)

    return damage


def flip_byte(record_index: int, offset_in_record: int):
    def damage(path: Path, offsets: list[int]) -> None:
        data = bytearray(path.read_bytes())
        data[offsets[record_index] + offset_in_record] ^= 0x40
        path.write_bytes(bytes(data))

    return damage


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (cut_last_record(HEADER.size - 5), "short header"),
        (cut_last_record(HEADER.size + 3), "short payload"),
        (flip_byte(-1, HEADER.size + 2), "bad crc"),
        (flip_byte(-1, 2), "short payload"),  # the length now points past the end
        (flip_byte(-1, 6), "bad crc"),  # the seq field
    ],
)
def test_torn_last_record_is_dropped_and_appends_continue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, kind: str
) -> None:
    written, path, offsets = write_records(tmp_path, 20)
    damage(path, offsets)
    dropped = path.stat().st_size - offsets[-1]
    with caplog.at_level(logging.WARNING, logger="zmx.journal"), Journal(tmp_path) as journal:
        assert journal.last_seq == 19
        assert list(journal.records()) == written[:19]
        assert journal.append(b"again") == 20
    message = caplog.records[-1].getMessage()
    assert f"{path} at offset {offsets[-1]}: dropped {dropped} bytes ({kind}" in message
    assert reopen_all(tmp_path) == [*written[:19], (20, b"again")]


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00" * 4096,  # a crash can leave zero-filled blocks past the last write
        b"\xff" * 40,  # a garbage length larger than MAX_PAYLOAD
        record_bytes(99, b"skipped ahead"),  # non-consecutive seq
        record_bytes(21, b"partial")[:-3],
    ],
)
def test_garbage_after_last_record_is_dropped(tmp_path: Path, tail: bytes) -> None:
    written, path, _ = write_records(tmp_path, 20)
    with open(path, "ab") as file:
        file.write(tail)
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 20
        assert journal.append(b"next") == 21
    assert reopen_all(tmp_path) == [*written, (21, b"next")]
    assert path.stat().st_size == record_offsets(path)[-1] + HEADER.size + len(b"next")


@pytest.mark.parametrize(
    ("record_index", "offset_in_record", "kind"),
    [
        (5, HEADER.size + 1, "bad crc"),
        (5, 1, "short payload"),  # a length that swallows the records after it
        (0, 8, "bad crc"),  # the seq field of the segment's first record
        (-2, 3, "length 1073741874 exceeds the maximum"),
    ],
)
def test_damage_in_the_middle_of_the_last_segment_refuses_to_open(
    tmp_path: Path, record_index: int, offset_in_record: int, kind: str
) -> None:
    _, path, offsets = write_records(tmp_path, 20)
    flip_byte(record_index, offset_in_record)(path, offsets)
    with pytest.raises(JournalCorrupt) as error:
        Journal(tmp_path)
    message = str(error.value)
    assert f"{path} at offset {offsets[record_index]}: {kind}" in message
    assert "valid records follow" in message
    assert path.stat().st_size == offsets[-1] + HEADER.size + len(payload_for(20)), "nothing truncated"
    assert_unlocked(tmp_path)


def test_damage_in_an_earlier_segment_raises_when_read(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=512) as journal:
        written = fill(journal, 60)
    first = segments(tmp_path)[0]
    offsets = record_offsets(first)
    data = bytearray(first.read_bytes())
    data[offsets[-1] + HEADER.size] ^= 1  # the last record of a closed segment is not a torn tail
    first.write_bytes(bytes(data))
    with Journal(tmp_path, segment_bytes=512) as journal:
        assert journal.last_seq == 60, "earlier segments are trusted at open"
        reader = journal.records()
        assert [next(reader) for _ in range(len(offsets) - 1)] == written[: len(offsets) - 1]
        with pytest.raises(JournalCorrupt, match=re.escape(f"{first} at offset {offsets[-1]}: bad crc")):
            next(reader)
        # Reading from a later segment does not touch the damaged one.
        assert list(journal.records(after=len(offsets))) == written[len(offsets) :]


def test_missing_segment_is_a_gap(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256) as journal:
        fill(journal, 40)
    paths = segments(tmp_path)
    assert len(paths) >= 4
    paths[1].unlink()
    with Journal(tmp_path, segment_bytes=256) as journal, pytest.raises(JournalCorrupt, match="expected"):
        list(journal.records())


def test_missing_magic_refuses_to_open(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    segments(tmp_path)[0].write_bytes(b"ZMXJ9\n")
    with pytest.raises(JournalCorrupt, match="offset 0"):
        Journal(tmp_path)


# --- segments -----------------------------------------------------------------------------


def test_segments_rotate_by_size_and_carry_their_first_seq(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=300) as journal:
        written = fill(journal, 100, per_commit=3)
    paths = segments(tmp_path)
    assert len(paths) > 5
    for path in paths:
        first_seq = int(path.stem.split("-")[1])
        data = path.read_bytes()
        if len(data) > len(SEGMENT_MAGIC):
            assert HEADER.unpack_from(data, len(SEGMENT_MAGIC))[1] == first_seq
    assert reopen_all(tmp_path, segment_bytes=300) == written


def test_records_after_any_seq_across_segments(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=400) as journal:
        written = fill(journal, 120)
        firsts = [int(path.stem.split("-")[1]) for path in segments(tmp_path)]
        assert len(firsts) >= 3
        boundary = firsts[1]
        afters = [0, 1, 5, boundary - 2, boundary - 1, boundary, boundary + 3, firsts[-1], 119, 120, 121, 500]
        for after in afters:
            assert list(journal.records(after=after)) == written[after:], after


def test_explicit_rotate(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.append(b"a")
        journal.rotate()
        assert [path.name for path in segments(tmp_path)] == [
            "journal-00000000000000000001.log",
            "journal-00000000000000000002.log",
        ]
        journal.rotate()  # the new segment is still empty: no third segment
        assert len(segments(tmp_path)) == 2
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 1
        assert journal.append(b"b") == 2
    assert reopen_all(tmp_path) == [(1, b"a"), (2, b"b")]
    assert HEADER.unpack_from(segments(tmp_path)[1].read_bytes(), len(SEGMENT_MAGIC))[1] == 2


def test_leftover_tmp_segment_is_removed(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 3)
    (tmp_path / "journal-00000000000000000004.log.tmp").write_bytes(b"ZMX")
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 3
    assert not list(tmp_path.glob("*.tmp"))


# --- snapshots ----------------------------------------------------------------------------


def test_snapshot_round_trip_and_recovery_order(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert journal.latest_snapshot() is None
        written = fill(journal, 30)
        path = journal.write_snapshot(20, b"state@20")
        assert path == tmp_path / "snapshot-00000000000000000020.snap"
        journal.rotate()
        written += fill(journal, 5)
    with Journal(tmp_path) as journal:
        seq, state = journal.latest_snapshot()
        assert (seq, state) == (20, b"state@20")
        assert list(journal.records(after=seq)) == written[20:]


def test_snapshot_must_not_be_ahead_of_the_journal(tmp_path: Path) -> None:
    with Journal(tmp_path, fsync="off") as journal:
        journal.append(b"a")
        assert journal.write_snapshot(1, b"s").exists(), "write_snapshot commits pending records first"
        with pytest.raises(ValueError, match="not in the journal"):
            journal.write_snapshot(2, b"s")


def test_snapshots_keep_only_the_newest_two(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 10)
        for seq in (2, 4, 6, 8):
            journal.write_snapshot(seq, b"state@%d" % seq)
        assert [path.name for path in snapshots(tmp_path)] == [
            "snapshot-00000000000000000006.snap",
            "snapshot-00000000000000000008.snap",
        ]
        assert journal.latest_snapshot() == (8, b"state@8")


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend", "magic"])
def test_corrupt_newest_snapshot_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 10)
        journal.write_snapshot(5, b"state@5")
        newest = journal.write_snapshot(9, b"state@9")
    data = bytearray(newest.read_bytes())
    if damage == "flip":
        data[-2] ^= 1
    elif damage == "truncate":
        del data[-1]
    elif damage == "extend":
        data += b"\n"
    else:
        data[0:1] = b"X"
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="zmx.journal"), Journal(tmp_path) as journal:
        assert journal.latest_snapshot() == (5, b"state@5")
    assert str(newest) in caplog.text


def test_leftover_tmp_snapshot_is_ignored(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 10)
        journal.write_snapshot(4, b"state@4")
        # A crash between writing the temporary file and renaming it.
        (tmp_path / "snapshot-00000000000000000009.snap.tmp").write_bytes(b"ZMXS1\npartial")
        assert journal.latest_snapshot() == (4, b"state@4")
    with Journal(tmp_path) as journal:
        assert journal.latest_snapshot() == (4, b"state@4")
    assert not list(tmp_path.glob("*.tmp"))


def test_seq_continues_after_snapshot_when_segments_are_gone(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 10)
        journal.write_snapshot(10, b"state@10")
    for path in segments(tmp_path):
        path.unlink()
    with Journal(tmp_path) as journal:
        assert journal.last_seq == 10
        assert journal.append(b"eleven") == 11
        journal.commit()
        assert list(journal.records(after=10)) == [(11, b"eleven")]
        with pytest.raises(JournalCorrupt, match="starts at seq 11"):
            journal.records(after=0)


def test_snapshot_ahead_of_the_journal_refuses_to_open(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        fill(journal, 10)
        journal.write_snapshot(9, b"state@9")
    os.truncate(segments(tmp_path)[0], record_offsets(segments(tmp_path)[0])[5])
    with pytest.raises(JournalCorrupt, match="ahead of the journal"):
        Journal(tmp_path)


# --- crashes ------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from matcher.journal import Journal

    journal = Journal(sys.argv[1], fsync=sys.argv[2], segment_bytes=8192)
    for round_ in range(1_000_000):
        for n in range(1 + round_ % 5):
            seq = journal.append(b"payload %d " % round_ + b"z" * (round_ % 300))
        journal.commit()
        print(seq, flush=True)
    """
)


@pytest.mark.parametrize("mode", ["always", "batch", "off"])
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path, mode: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), mode],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acknowledged = []
    try:
        for line in writer.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) == 400:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        _, stderr = writer.communicate()
    assert len(acknowledged) == 400, stderr.decode()
    with Journal(tmp_path, fsync=mode, segment_bytes=8192) as journal:
        seqs = [seq for seq, _ in journal.records()]
        assert seqs == list(range(1, journal.last_seq + 1))
        assert journal.last_seq >= acknowledged[-1]
        assert len(segments(tmp_path)) > 1
        last_seq = journal.last_seq
        assert journal.append(b"after the crash") == last_seq + 1


@settings(max_examples=150, deadline=None)
@given(
    committed=st.lists(st.binary(max_size=60), max_size=25),
    in_flight=st.lists(st.binary(max_size=60), min_size=1, max_size=25),
    cut=st.floats(min_value=0, max_value=1),
    tail=st.one_of(st.just(b""), st.binary(min_size=1, max_size=64), st.builds(bytes, st.integers(1, 600))),
)
@example(committed=[], in_flight=[bytes(5)], cut=0.75, tail=bytes(5))  # the garbage restores the cut bytes
def test_torn_in_flight_batch_keeps_a_prefix_with_every_committed_record(
    committed: list[bytes], in_flight: list[bytes], cut: float, tail: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with Journal(directory, fsync="off") as journal:
            for payload in committed:
                journal.append(payload)
            journal.commit()
            path = segments(Path(directory))[-1]
            acknowledged_size = path.stat().st_size
            for payload in in_flight:
                journal.append(payload)
        # The in-flight batch reached the disk only up to the cut, then garbage.
        written = path.read_bytes()
        cut_at = acknowledged_size + round(cut * (len(written) - acknowledged_size))
        os.truncate(path, cut_at)
        with open(path, "ab") as file:
            file.write(tail)
        on_disk = path.read_bytes()
        # A record survives when its bytes are all there, including when the garbage happens
        # to repeat the bytes that were cut (then the record is genuinely intact).
        surviving, start = 0, acknowledged_size
        for payload in in_flight:
            end = start + HEADER.size + len(payload)
            if on_disk[start:end] != written[start:end]:
                break
            surviving, start = surviving + 1, end
        expected = list(enumerate([*committed, *in_flight[:surviving]], start=1))
        with Journal(directory, fsync="off") as journal:
            assert list(journal.records()) == expected
            assert journal.last_seq == len(expected)
            assert journal.append(b"next") == len(expected) + 1
        assert reopen_all(Path(directory)) == [*expected, (len(expected) + 1, b"next")]


# ---------------------------------------------------------------- read(): replicas of the journal


@pytest.mark.parametrize("tail_records", [0, 5, 100_000])
def test_read_returns_every_committed_record_in_order_from_memory_or_files(tmp_path: Path, tail_records: int) -> None:
    with Journal(tmp_path, segment_bytes=700, tail_records=tail_records) as journal:
        written = fill(journal, 3000, per_commit=13)
        for after, limit in [(0, 1), (0, 2500), (1023, 1), (1024, 1025), (2990, 100), (1500, 10_000)]:
            assert journal.read(after, limit) == written[after : after + limit]
        chunked, after = [], 0
        while chunk := journal.read(after, 257):
            chunked += chunk
            after = chunk[-1][0]
        assert chunked == written
        assert journal.read(3000, 10) == []


def test_read_after_reopen_serves_old_records_from_files(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=4096) as journal:
        written = fill(journal, 5000)
    with Journal(tmp_path, segment_bytes=4096) as journal:
        assert journal.read(0, 10) == written[:10]
        assert journal.read(4321, 3000) == written[4321:]
        more = journal.append(b"after reopen")
        assert journal.read(5000, 10) == []  # buffered, not committed: a replica never sees it
        journal.commit()
        assert journal.read(5000, 10) == [(more, b"after reopen")]


def test_read_never_returns_uncommitted_records(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        journal.append(b"one")
        assert journal.read(0, 10) == []
        journal.commit()
        assert journal.read(0, 10) == [(1, b"one")]


def test_snapshot_at_most_picks_the_newest_snapshot_not_after_the_seq(tmp_path: Path) -> None:
    with Journal(tmp_path, keep_snapshots=3) as journal:
        fill(journal, 30)
        for seq in (10, 20, 30):
            journal.write_snapshot(seq, b"state at %d" % seq)
        assert journal.snapshot_at_most(9) is None
        assert journal.snapshot_at_most(25) == (20, b"state at 20")
        assert journal.snapshot_at_most(30) == (30, b"state at 30")
