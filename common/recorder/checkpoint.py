"""The recorder's own checkpoint of its replica: one file per shard, written atomically.

`<data_dir>/recorder/shard-<id>.snap` holds the replica's engine state after journal record
`journal_seq`, so a restart replays only the records after it instead of the whole journal.

    ZMXR1\\n
    {"shard_id": 0, "journal_seq": 120000, "length": 5321, "crc32": 1234567}\\n
    <payload: matcher.snapshot.encode bytes>

It is written as a `.tmp` file, synced, renamed over the old one and the directory synced,
so a crash leaves the old checkpoint or the new one, never half of one. A file that does
not verify is ignored with a warning (the recorder falls back to the matcher's snapshot
or to replaying from the first record).
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import orjson

MAGIC = b"ZMXR1\n"

log = logging.getLogger("zmx.recorder")


def checkpoint_path(data_dir: Path, shard_id: int) -> Path:
    return Path(data_dir) / "recorder" / f"shard-{shard_id}.snap"


def write_checkpoint(path: Path, shard_id: int, journal_seq: int, payload: bytes) -> None:
    """Durably replace the checkpoint at `path` with `payload` taken after `journal_seq`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = orjson.dumps({"shard_id": shard_id, "journal_seq": journal_seq, "length": len(payload),
                           "crc32": zlib.crc32(payload)})
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(MAGIC + header + b"\n")
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_checkpoint(path: Path, shard_id: int) -> tuple[int, bytes] | None:
    """Return (journal_seq, payload) of a checkpoint that verifies, else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        if not data.startswith(MAGIC):
            raise ValueError("missing magic")
        end = data.index(b"\n", len(MAGIC))
        header = orjson.loads(data[len(MAGIC):end])
        payload = data[end + 1:]
        if header.get("shard_id") != shard_id:
            raise ValueError(f"written for shard {header.get('shard_id')}")
        if len(payload) != header["length"] or zlib.crc32(payload) != header["crc32"]:
            raise ValueError("length or checksum mismatch")
        seq = header["journal_seq"]
        if type(seq) is not int or seq < 0:
            raise ValueError("bad journal_seq")
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
        log.warning("ignoring recorder checkpoint", extra={"path": str(path), "reason": str(error)})
        return None
    return seq, payload
