"""Every intact message of a damaged ROS 2 bag: a file cut off mid-write (the robot
powered down), a corrupt part, a missing or unreadable ``metadata.yaml``.

``rosbags`` reads intact bags (:mod:`upsnet_core.rosbag_io` uses it first) but refuses a
bag whose MCAP file has lost its footer and summary, and an SQLite file cut at any byte.
This module reads the storage files record by record instead, from the file formats:

* MCAP (https://mcap.dev/spec): a stream of ``opcode (u8), length (u64), body`` records;
  schemas and channels precede the messages that use them, chunks hold records of their
  own. Scanning from the start gives every complete message record; an uncompressed chunk
  cut off still gives the messages before the cut; a message cut off is reported with its
  topic and log time; a compressed chunk cut off is reported with its time range.
* SQLite (rosbag2's ``topics`` and ``messages`` tables): a file cut off is made readable
  by dropping its partial last page and setting the page count of the header to the
  pages that remain (on a temporary copy: the bag is never written); then every message
  row is read on its own, so that a row whose data lies on lost pages is reported (topic,
  log time) and the others are kept.

Where ``metadata.yaml`` can be read, its message counts name how many messages of each
topic were not found at all. Nothing here needs ROS.
"""
from __future__ import annotations

import mmap
import shutil
import sqlite3
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import yaml

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
STORAGE_SUFFIXES = (".mcap", ".db3")
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _FOOTER = 0x03, 0x04, 0x05, 0x06, 0x02
_RECORD_HEADER = 9  # opcode u8 + length u64
_MESSAGE_HEADER = 22  # channel u16, sequence u32, log time u64, publish time u64
Buffer = Union[mmap.mmap, bytes]


class SalvageError(ValueError):
    """Nothing can be read from the bag's storage files."""


@dataclass(frozen=True)
class SkippedMessage:
    """A message that is in the bag but could not be used: its topic (``(unknown)`` where
    the damage hides it), its header stamp or else its log time (nanoseconds), and why."""

    topic: str
    reason: str
    stamp_ns: Optional[int] = None
    log_ns: Optional[int] = None

    def __str__(self) -> str:
        when = (f"stamp {_seconds(self.stamp_ns)}" if self.stamp_ns is not None else
                f"log time {_seconds(self.log_ns)}" if self.log_ns is not None else "")
        return f"{self.topic} {when}: {self.reason}".replace("  ", " ")


def _seconds(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


@dataclass
class _Entry:
    topic: str
    log_ns: int
    buffer: Buffer
    start: int
    end: int


@dataclass
class Salvage:
    """What could be read: ``{topic: msgtype}``, the messages by topic, the problems found
    in the files (``damage``) and the messages that could not be read (``skipped``)."""

    path: Path
    topics: dict[str, str] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    skipped: list[SkippedMessage] = field(default_factory=list)
    _entries: list[_Entry] = field(default_factory=list)
    _rows: list[tuple[str, int, int]] = field(default_factory=list)
    _sqlite: Optional[sqlite3.Connection] = None
    _closers: list = field(default_factory=list)

    def count(self, topic: str) -> int:
        return (sum(e.topic == topic for e in self._entries)
                + sum(r[0] == topic for r in self._rows))

    def messages(self, topic: str) -> Iterator[tuple[int, bytes]]:
        """``(log_ns, cdr bytes)`` of the intact messages of ``topic``, in log-time order."""
        for entry in self._entries:
            if entry.topic == topic:
                yield entry.log_ns, bytes(entry.buffer[entry.start:entry.end])
        for row_topic, log_ns, row_id in self._rows:
            if row_topic != topic:
                continue
            try:
                (data,) = self._sqlite.execute("SELECT data FROM messages WHERE id = ?",
                                               (row_id,)).fetchone()
            except sqlite3.DatabaseError as error:
                self._skip(SkippedMessage(topic, f"data unreadable ({error})", log_ns=log_ns))
                continue
            yield log_ns, bytes(data)

    def _skip(self, skipped: SkippedMessage) -> None:
        if skipped not in self.skipped:
            self.skipped.append(skipped)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def storage_files(path: Path) -> list[Path]:
    """The storage files of a bag folder (or the lone file ``path``)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES) if path.is_dir() else []


def salvage(path: Path) -> Salvage:
    """Read what is intact in the bag folder or storage file ``path`` (see the module
    docstring). SalvageError when no storage file can be read at all."""
    result = Salvage(path)
    files = storage_files(path)
    if not files:
        raise SalvageError(f"no storage file (*.mcap, *.db3) in {path}")
    try:
        for file in files:
            with open(file, "rb") as stream:
                magic = stream.read(16)
            if magic.startswith(MCAP_MAGIC):
                _scan_mcap(file, result)
            elif magic == SQLITE_MAGIC:
                _read_sqlite(file, result)
            else:
                result.damage.append(f"{file.name} is neither MCAP nor SQLite (bad magic)")
        if not result.topics:
            raise SalvageError(f"no topic could be read from {', '.join(f.name for f in files)}"
                               f"{': ' + '; '.join(result.damage) if result.damage else ''}")
    except BaseException:
        result.close()
        raise
    _compare_with_metadata(result)
    result._entries.sort(key=lambda e: e.log_ns)
    result._rows.sort(key=lambda r: r[1])
    return result


# ---------------------------------------------------------------- MCAP
def _string(buffer: Buffer, offset: int) -> tuple[str, int]:
    (size,) = struct.unpack_from("<I", buffer, offset)
    return bytes(buffer[offset + 4:offset + 4 + size]).decode(), offset + 4 + size


def _scan_mcap(file: Path, result: Salvage) -> None:
    with open(file, "rb") as stream:
        buffer = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    result._closers.append(buffer.close)
    channels: dict[int, tuple[str, str]] = {}
    schemas: dict[int, str] = {}
    header_end = len(MCAP_MAGIC)
    _scan_records(buffer, header_end, len(buffer), file.name, channels, schemas, result)


def _scan_records(buffer: Buffer, start: int, stop: int, where: str,
                  channels: dict[int, tuple[str, str]], schemas: dict[int, str],
                  result: Salvage) -> None:
    """Records of ``buffer[start:stop]`` (the file, or one chunk's records)."""
    offset = start
    while offset < stop:
        if offset + _RECORD_HEADER > stop:
            result.damage.append(f"{where} ends inside a record header at byte {offset}")
            return
        opcode = buffer[offset]
        (length,) = struct.unpack_from("<Q", buffer, offset + 1)
        body, end = offset + _RECORD_HEADER, offset + _RECORD_HEADER + length
        if opcode == _FOOTER:
            return
        complete = end <= stop
        try:
            if opcode == _SCHEMA and complete:
                (schema_id,) = struct.unpack_from("<H", buffer, body)
                schemas[schema_id] = _string(buffer, body + 2)[0]
            elif opcode == _CHANNEL and complete:
                channel_id, schema_id = struct.unpack_from("<HH", buffer, body)
                topic, _ = _string(buffer, body + 4)
                channels[channel_id] = (topic, schemas.get(schema_id, ""))
                result.topics.setdefault(topic, schemas.get(schema_id, ""))
            elif opcode == _MESSAGE:
                _message(buffer, body, min(end, stop), complete, where, channels, result)
            elif opcode == _CHUNK:
                _chunk(buffer, body, min(end, stop), complete, where, channels, schemas, result)
        except (struct.error, UnicodeDecodeError, IndexError) as error:
            result.damage.append(f"{where}: malformed record at byte {offset} ({error})")
            return
        if not complete:
            result.damage.append(f"{where} is cut off at byte {stop}, inside a record that "
                                 f"starts at byte {offset} and needs {end - stop} more bytes")
            return
        offset = end


def _message(buffer: Buffer, body: int, end: int, complete: bool, where: str,
             channels: dict[int, tuple[str, str]], result: Salvage) -> None:
    if end - body < 14:  # not even the channel and the log time
        result._skip(SkippedMessage("(unknown)", f"message record cut off in {where}"))
        return
    channel_id, _, log_ns = struct.unpack_from("<HIQ", buffer, body)
    topic = channels.get(channel_id, (f"(unknown channel {channel_id})", ""))[0]
    if not complete:
        result._skip(SkippedMessage(topic, f"cut off in {where}", log_ns=log_ns))
    elif channel_id not in channels:
        result._skip(SkippedMessage(topic, "its channel record is lost", log_ns=log_ns))
    else:
        result._entries.append(_Entry(topic, log_ns, buffer, body + _MESSAGE_HEADER, end))


def _chunk(buffer: Buffer, body: int, end: int, complete: bool, where: str,
           channels: dict[int, tuple[str, str]], schemas: dict[int, str],
           result: Salvage) -> None:
    first_ns, last_ns, size, _ = struct.unpack_from("<QQQI", buffer, body)
    compression, offset = _string(buffer, body + 28)
    (records_length,) = struct.unpack_from("<Q", buffer, offset)
    records = offset + 8
    if not compression:
        _scan_records(buffer, records, min(end, records + records_length),
                      f"{where} (chunk at byte {body - _RECORD_HEADER})", channels, schemas,
                      result)
        return
    lost = SkippedMessage("(unknown)", f"{compression} chunk of messages logged "
                          f"{_seconds(first_ns)} to {_seconds(last_ns)} is cut off in {where}",
                          log_ns=first_ns)
    if not complete:
        result._skip(lost)
        return
    try:
        from rosbags.rosbag2.storage_mcap import decompress
        data = decompress(bytes(buffer[records:records + records_length]), compression, size, 0)
    except Exception as error:  # noqa: BLE001 - any codec error means the chunk is lost
        result._skip(SkippedMessage("(unknown)", f"{lost.reason} ({error})", log_ns=first_ns))
        return
    _scan_records(data, 0, len(data), f"{where} ({compression} chunk)", channels, schemas, result)


# ---------------------------------------------------------------- SQLite
def _readable_copy(file: Path, folder: Path) -> tuple[Path, str]:
    """A copy of an SQLite file cut to whole pages, its header's page count set to them;
    and how the file was cut off ('' when it holds every page its header lists)."""
    copy = folder / file.name
    shutil.copyfile(file, copy)
    with open(copy, "r+b") as stream:
        header = stream.read(100)
        (page_size,) = struct.unpack_from(">H", header, 16)
        (listed,) = struct.unpack_from(">I", header, 28)
        page_size = 65536 if page_size == 1 else page_size
        size = copy.stat().st_size
        stream.truncate(size - size % page_size)
        stream.seek(28)
        stream.write(struct.pack(">I", size // page_size))
    if size % page_size or listed > size // page_size:
        return copy, (f"{file.name} is cut off at byte {size}: {size // page_size} whole pages "
                      f"of the {listed} its header lists")
    return copy, ""


def _read_sqlite(file: Path, result: Salvage) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bag_salvage_"))
    result._closers.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    copy, cut = _readable_copy(file, folder)
    if cut:
        result.damage.append(cut)
    connection = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
    result._closers.append(connection.close)
    result._sqlite = connection
    try:
        topics = {i: (name, kind) for i, name, kind in
                  connection.execute("SELECT id, name, type FROM topics")}
    except sqlite3.DatabaseError as error:
        result.damage.append(f"{file.name}: the topics table cannot be read ({error})")
        return
    result.topics.update(dict(topics.values()))

    def add(row_id: int, topic_id: int, log_ns: int) -> None:
        topic = topics.get(topic_id, (f"(unknown topic {topic_id})", ""))[0]
        result._rows.append((topic, log_ns, row_id))
    try:
        for row in connection.execute("SELECT id, topic_id, timestamp FROM messages ORDER BY id"):
            add(*row)
    except sqlite3.DatabaseError as error:
        # The rows (not their data) are on B-tree leaf pages, written as the table grows:
        # a lost page hides its rows, but rows on later pages may still be found by id.
        result.damage.append(f"{file.name}: the messages table is damaged after "
                             f"{len(result._rows)} rows ({error})")
        _probe_rows(connection, result._rows[-1][2] if result._rows else 0, add)


def _probe_rows(connection: sqlite3.Connection, last_id: int, add) -> None:
    """Look up, one by one, the message rows after ``last_id`` (up to the largest id)."""
    try:
        (largest,) = connection.execute("SELECT max(id) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        return
    for row_id in range(last_id + 1, (largest or 0) + 1):
        try:
            row = connection.execute("SELECT id, topic_id, timestamp FROM messages WHERE id = ?",
                                     (row_id,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            add(*row)


def _compare_with_metadata(result: Salvage) -> None:
    """Name the messages that ``metadata.yaml`` lists and the files do not hold."""
    metadata = result.path / "metadata.yaml"
    try:
        info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
        listed = {t["topic_metadata"]["name"]: int(t["message_count"])
                  for t in info["topics_with_message_count"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        if result.path.is_dir():
            result.damage.append(f"metadata.yaml cannot be used ({type(error).__name__}: "
                                 f"{error})")
        return
    for topic, count in sorted(listed.items()):
        missing = count - result.count(topic) - sum(s.topic == topic for s in result.skipped)
        if missing > 0:
            result.damage.append(f"{missing} of the {count} messages of {topic} listed in "
                                 "metadata.yaml are not in the storage files")
