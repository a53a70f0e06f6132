"""ROS 2 bags of camera images, panoptic label images and category maps, without ROS.

Pure ``rosbags`` + numpy: importable where rclpy is not (``pip install .`` on training
clusters). Used by ``upsnet_ros.tools.make_bag`` / ``replay_eval`` and by fleet ingest.

Messages are the ``rosbags`` dataclasses of one typestore (:func:`typestore`: the ROS 2
Kilted store, or the newest ROS 2 store the installed ``rosbags`` has) with this package's
messages (``upsnet_ros/msg/CategoryMap`` ...) registered from the ``msg/*.msg`` files
(:func:`msg_dir`). Bags are written as rosbag2 metadata version 8, storage ``mcap`` or
``sqlite3``.

API:

* reading: :func:`open_reader` (a :class:`BagReader`; clear errors for a missing bag or
  one of which nothing can be read), :func:`topics`, :func:`iter_messages` ``(log_ns, msg)``,
  :func:`iter_raw` ``(log_ns, cdr_bytes, msgtype)``, :func:`iter_images` ``(stamp_ns,
  frame_id, rgb)`` for Image and CompressedImage topics, :func:`iter_label_images`
  ``(stamp_ns, frame_id, labels)``, :func:`read_categories`. Damaged bags (cut off
  mid-write, corrupt parts, messages that do not decode) give every intact message and
  report the rest (:class:`BagReader`, :mod:`upsnet_core.bag_salvage`);
* message building: :func:`header`, :func:`image_message`, :func:`compressed_message`,
  :func:`label_message`, :func:`category_map_message`; decoding: :func:`decode_image`,
  :func:`decode_label_image`, :func:`categories_from_message`, :func:`stamp_ns`,
  :func:`cdr_stamp_ns` (the stamp of serialized bytes), :func:`deserialize`;
* writing: :func:`open_writer` (a :class:`BagWriter`: ``write(topic, msg, log_ns)``,
  ``write_raw(topic, msgtype, cdr_bytes, log_ns)``) and :func:`write_frames` (images, optional
  ground-truth label images and the category map, with stamps at a fixed rate).

Stamps are integer nanoseconds (``sec * 10**9 + nanosec``) of the messages' header.
Ground truth is a ``32SC1`` label image in the node's own encoding (``category_id * 1000
+ k`` for thing instance ``k >= 1``, ``category_id * 1000`` for stuff, ``0`` void); a thing
category with ``k = 0`` is a crowd region (as in :mod:`upsnet_core.data.target`).
"""
from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import apsw
import numpy as np
from rosbags.interfaces import Typestore
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from .bag_salvage import Salvage, SalvageError, SkippedMessage, salvage
from .categories import IGNORE_INDEX, VOID_ID, Category, CategorySet
from .image_messages import (LABEL_ENCODING, ImageConversionError, compressed_to_rgb,
                             encode_compressed, image_fields, image_to_rgb,
                             label_image_to_array)

PACKAGE = "upsnet_ros"
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
GT_LABELS_TOPIC = "/ground_truth/panoptic/labels"
GT_CATEGORIES_TOPIC = "/ground_truth/panoptic/categories"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CATEGORY_MAP_TYPE = "upsnet_ros/msg/CategoryMap"
STORAGES = ("mcap", "sqlite3")
BAG_VERSION = 8
START_NS = 1_700_000_000 * 10**9
"""Stamp of the first frame :func:`write_frames` writes when none is given."""
_STORES = ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE")


class BagError(ValueError):
    """A bag that cannot be used: missing, corrupt, lacking a topic, bad content."""


# ---------------------------------------------------------------- typestore
def msg_dir() -> Path:
    """The folder of this package's ``*.msg`` files: ``<repo>/msg`` in the repository,
    ``<prefix>/share/upsnet_ros/msg`` when installed (colcon, or ``pip install .``), or
    under any ``AMENT_PREFIX_PATH`` entry. Raises FileNotFoundError naming the places
    looked in when there is none."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "msg"]  # repository checkout
    if len(here.parents) > 3:  # installed: <prefix>/lib/pythonX.Y/site-packages/upsnet_core
        candidates.append(here.parents[3] / "share" / PACKAGE / "msg")
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    candidates += [Path(p) / "share" / PACKAGE / "msg"
                   for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for candidate in candidates:
        if (candidate / "CategoryMap.msg").is_file():
            return candidate
    raise FileNotFoundError("the upsnet_ros message definitions (msg/*.msg) were not found; "
                            f"looked in: {', '.join(str(c) for c in candidates)}")


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 typestore (Kilted, else the newest of Jazzy/Humble that ``rosbags`` has)
    with ``upsnet_ros/msg/*`` registered."""
    store = get_typestore(next(getattr(Stores, s) for s in _STORES if hasattr(Stores, s)))
    types: dict = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def message_type(name: str) -> type:
    """The dataclass of message type ``name`` (e.g. ``sensor_msgs/msg/Image``)."""
    return typestore().types[name]


# ---------------------------------------------------------------- messages
def stamp_ns(msg: Any) -> int:
    """The header stamp of ``msg`` in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def cdr_stamp_ns(data: bytes) -> int:
    """The header stamp (nanoseconds) of a CDR-serialized message whose first field is a
    ``std_msgs/Header`` (Image, CompressedImage, the panoptic outputs), read without
    deserializing the rest (e.g. the pixels)."""
    if len(data) < 12:
        raise ValueError(f"CDR message of {len(data)} bytes is too short for a header")
    sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 10**9 + nanosec


def format_stamp(stamp: int) -> str:
    """``sec.nanosec`` text of a stamp in nanoseconds (for messages and reports)."""
    return f"{stamp // 10**9}.{stamp % 10**9:09d}"


def header(stamp: int, frame_id: str) -> Any:
    """A ``std_msgs/msg/Header`` with ``stamp`` (nanoseconds) and ``frame_id``."""
    time = message_type("builtin_interfaces/msg/Time")(sec=stamp // 10**9, nanosec=stamp % 10**9)
    return message_type("std_msgs/msg/Header")(stamp=time, frame_id=frame_id)


def image_message(array: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """A ``sensor_msgs/msg/Image`` of ``array`` (``(H, W)`` or ``(H, W, C)`` matching
    ``encoding``, e.g. ``rgb8``)."""
    fields = image_fields(array, encoding)
    fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8)
    return message_type(IMAGE_TYPE)(header=header(stamp, frame_id), **fields)


def compressed_message(rgb: np.ndarray, stamp: int, frame_id: str,
                       image_format: str = "png") -> Any:
    """A ``sensor_msgs/msg/CompressedImage`` of ``(H, W, 3)`` uint8 RGB (``png``: lossless)."""
    data = np.frombuffer(encode_compressed(rgb, image_format), dtype=np.uint8)
    return message_type(COMPRESSED_TYPE)(header=header(stamp, frame_id), format=image_format,
                                         data=data)


def label_message(labels: np.ndarray, stamp: int, frame_id: str) -> Any:
    """A ``32SC1`` Image of an ``(H, W)`` label image in the node's encoding."""
    return image_message(labels, LABEL_ENCODING, stamp, frame_id)


def category_map_message(categories: CategorySet, stamp: int = 0) -> Any:
    """An ``upsnet_ros/msg/CategoryMap`` of ``categories`` (void 0, semantic unknown 255)."""
    category = message_type(f"{PACKAGE}/msg/Category")
    entries = [category(id=c.id, name=c.name, is_thing=c.isthing,
                        color=np.asarray(c.color, dtype=np.uint8)) for c in categories]
    return message_type(CATEGORY_MAP_TYPE)(header=header(stamp, ""), categories=entries,
                                           void_id=VOID_ID, semantic_unknown=IGNORE_INDEX)


def categories_from_message(msg: Any) -> CategorySet:
    """The :class:`CategorySet` of a CategoryMap message."""
    return CategorySet(Category(int(c.id), str(c.name), bool(c.is_thing),
                                tuple(int(v) for v in c.color)) for c in msg.categories)


def decode_image(msg: Any, max_pixels: int = 0) -> np.ndarray:
    """An Image (camera encodings) or CompressedImage message as ``(H, W, 3)`` uint8 RGB;
    :class:`~upsnet_core.image_messages.ImageConversionError` when malformed."""
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


def decode_label_image(msg: Any) -> np.ndarray:
    """A ``32SC1`` label image message as an ``(H, W)`` int32 array."""
    return label_image_to_array(msg)


# ---------------------------------------------------------------- reading
class BagReader:
    """An open bag: read through ``rosbags`` while it can, else salvaged.

    A bag that ``rosbags`` cannot open (an MCAP or SQLite file cut off mid-write, an
    unreadable ``metadata.yaml``), or that fails while its messages are read (a corrupt
    part), is read by :mod:`upsnet_core.bag_salvage`: every intact message is kept. What
    was found damaged is in ``damage`` and the messages that could not be used are in
    ``skipped`` (:class:`SkippedMessage`: topic, stamp or log time, reason), including
    messages whose bytes do not decode (:func:`iter_messages`).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.damage: list[str] = []
        self.skipped: list[SkippedMessage] = []
        self._reader: Optional[Reader] = None
        self._salvage: Optional[Salvage] = None

    def open(self) -> None:
        """BagError naming the bag when it does not exist or nothing of it can be read."""
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        try:
            reader = Reader(self.path)
            reader.open()
            self._reader = reader
        except (ReaderError, OSError, ValueError, KeyError) as error:
            self._open_salvage(f"rosbags cannot read it: {error}")

    def _open_salvage(self, why: str) -> None:
        try:
            self._salvage = salvage(self.path)
        except (SalvageError, OSError) as error:
            raise BagError(f"bag {self.path} cannot be read: {why}; {error}") from None
        self.damage += [why, *self._salvage.damage]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._salvage is not None:
            self._salvage.close()

    @property
    def damaged(self) -> bool:
        return self._salvage is not None

    def topics(self) -> dict[str, str]:
        """``{topic: message type}``."""
        if self._salvage is not None:
            return dict(self._salvage.topics)
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topic: str) -> int:
        """Messages of ``topic`` (in a salvaged bag: the intact ones found)."""
        if self._salvage is not None:
            return self._salvage.count(topic)
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def raw(self, topic: str) -> Iterator[tuple[int, bytes, str]]:
        """``(log_ns, cdr_bytes, msgtype)`` of the messages of ``topic``, in log-time order;
        a failure of ``rosbags`` half-way switches to salvage, without repeating messages."""
        msgtype = self.topics()[topic]
        done: set[tuple[int, int]] = set()
        if self._salvage is None:
            connections = [c for c in self._reader.connections if c.topic == topic]
            try:
                for _, log_ns, data in self._reader.messages(connections=connections):
                    done.add((log_ns, zlib.crc32(data)))
                    yield log_ns, bytes(data), msgtype
                return
            except (ReaderError, OSError, ValueError, apsw.Error) as error:
                self._reader.close()
                self._reader = None
                self._open_salvage(f"rosbags failed reading {topic}: {error}")
        for log_ns, data in self._salvage.messages(topic):
            if (log_ns, zlib.crc32(data)) not in done:
                yield log_ns, data, msgtype

    def problems(self) -> list[str]:
        """What was damaged and every skipped message, as text (damage first)."""
        skipped = [*self.skipped, *(self._salvage.skipped if self._salvage else [])]
        return [*self.damage, *(str(s) for s in dict.fromkeys(skipped))]


@contextlib.contextmanager
def open_reader(path: str | Path) -> Iterator[BagReader]:
    """An open :class:`BagReader` of the bag folder (or ``.mcap``/``.db3`` file) ``path``.

    Raises:
        BagError: the bag does not exist or nothing of it can be read; the message names
            the bag.
    """
    reader = BagReader(path)
    reader.open()
    try:
        yield reader
    finally:
        reader.close()


def topics(reader: BagReader) -> dict[str, str]:
    """``{topic: message type}`` of an open bag."""
    return reader.topics()


def _check_topic(reader: BagReader, topic: str) -> None:
    if topic not in reader.topics():
        damage = f" (the bag is damaged: {'; '.join(reader.damage)})" if reader.damaged else ""
        raise BagError(f"bag {reader.path} has no topic {topic}; its topics: "
                       f"{', '.join(sorted(reader.topics())) or 'none'}{damage}")


def iter_raw(reader: BagReader, topic: str) -> Iterator[tuple[int, bytes, str]]:
    """``(log_ns, cdr_bytes, msgtype)`` of every intact message of ``topic``, in log-time
    order (see :class:`BagReader`). BagError when the topic is missing."""
    _check_topic(reader, topic)
    yield from reader.raw(topic)


def deserialize(data: bytes, msgtype: str) -> Any:
    """A message dataclass from CDR bytes."""
    return typestore().deserialize_cdr(data, msgtype)


def iter_messages(reader: BagReader, topic: str) -> Iterator[tuple[int, Any]]:
    """``(log_ns, message)`` of every message of ``topic`` that decodes, in log-time order;
    the others are added to ``reader.skipped`` (with their log time)."""
    for log_ns, data, msgtype in iter_raw(reader, topic):
        try:
            yield log_ns, deserialize(data, msgtype)
        except Exception as error:  # noqa: BLE001 - rosbags raises many kinds on bad CDR
            reader.skipped.append(SkippedMessage(
                topic, f"cannot be decoded as {msgtype} ({type(error).__name__}: {error})",
                log_ns=log_ns))


def _iter_decoded(path: str | Path, topic: str, decode: Callable[[Any], np.ndarray],
                  problems: Optional[list[str]]) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(stamp_ns, frame_id, decode(msg))`` of a topic; messages that do not decode are
    skipped, and with every other problem of the bag appended to ``problems``."""
    with open_reader(path) as reader:
        try:
            for _, msg in iter_messages(reader, topic):
                try:
                    array = decode(msg)
                except ImageConversionError as error:
                    reader.skipped.append(SkippedMessage(topic, str(error), stamp_ns=stamp_ns(msg)))
                    continue
                yield stamp_ns(msg), msg.header.frame_id, array
        finally:
            if problems is not None:
                problems.extend(p for p in reader.problems() if p not in problems)


def iter_images(path: str | Path, topic: str = IMAGE_TOPIC, problems: Optional[list[str]] = None
                ) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(stamp_ns, frame_id, rgb)`` of an Image or CompressedImage topic of a bag; ``rgb``
    ``(H, W, 3)`` uint8. Malformed images are skipped; the bag's problems (damage and
    skipped messages, with topic and stamp) are appended to ``problems``."""
    return _iter_decoded(path, topic, decode_image, problems)


def iter_label_images(path: str | Path, topic: str = GT_LABELS_TOPIC,
                      problems: Optional[list[str]] = None) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(stamp_ns, frame_id, labels)`` of a 32SC1 label-image topic; ``labels`` ``(H, W)``
    int32. Malformed messages are skipped and reported as in :func:`iter_images`."""
    return _iter_decoded(path, topic, decode_label_image, problems)


def read_categories(path: str | Path, topic: str = GT_CATEGORIES_TOPIC) -> CategorySet:
    """The categories of the last CategoryMap message of ``topic``."""
    with open_reader(path) as reader:
        maps = [msg for _, msg in iter_messages(reader, topic)]
    if not maps:
        raise BagError(f"bag {path}: topic {topic} holds no CategoryMap message")
    return categories_from_message(maps[-1])


# ---------------------------------------------------------------- writing
class BagWriter:
    """An open ``rosbags`` Writer that adds one connection per topic on first use."""

    def __init__(self, writer: Writer):
        self._writer = writer
        self._connections: dict[str, Any] = {}

    def _connection(self, topic: str, msgtype: str) -> Any:
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                                   typestore=typestore())
        return self._connections[topic]

    def write(self, topic: str, msg: Any, log_ns: int) -> None:
        """Serialize a message dataclass and write it at log time ``log_ns``."""
        self.write_raw(topic, msg.__msgtype__, typestore().serialize_cdr(msg, msg.__msgtype__),
                       log_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, log_ns: int) -> None:
        """Write CDR bytes (e.g. as received from rclpy with ``raw=True``) of ``msgtype``."""
        self._writer.write(self._connection(topic, msgtype), log_ns, data)


@contextlib.contextmanager
def open_writer(path: str | Path, storage: str = "mcap") -> Iterator[BagWriter]:
    """A :class:`BagWriter` creating the bag folder ``path`` (which must not exist)."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(Path(path), version=BAG_VERSION, storage_plugin=plugin)
        writer.open()
    except WriterError as error:
        raise BagError(f"cannot write bag {path}: {error}") from None
    try:
        yield BagWriter(writer)
    finally:
        writer.close()


@dataclass
class Frame:
    """One camera frame for :func:`write_frames`: ``rgb`` ``(H, W, 3)`` uint8, optional
    ground-truth ``labels`` ``(H, W)`` int32 (node encoding), optional stamp (nanoseconds)."""

    rgb: np.ndarray
    labels: Optional[np.ndarray] = None
    stamp_ns: Optional[int] = None
    frame_id: str = "camera"


def write_frames(out: str | Path, frames: Iterable[Frame | np.ndarray], *, rate: float = 10.0,
                 storage: str = "mcap", compressed: bool = False, image_format: str = "png",
                 categories: Optional[CategorySet] = None, start_ns: int = START_NS,
                 image_topic: Optional[str] = None) -> int:
    """Write a bag of camera frames; the number of frames written.

    Frame ``i`` without a stamp gets ``start_ns + i / rate`` seconds. Each frame is written
    on ``image_topic`` (default :data:`IMAGE_TOPIC`, or :data:`COMPRESSED_TOPIC` with
    ``compressed``) and, when it has ``labels``, on :data:`GT_LABELS_TOPIC` with the same
    header; ``categories`` go once on :data:`GT_CATEGORIES_TOPIC` before the first frame.
    Messages are logged at their stamp. Plain arrays are frames without labels.
    """
    if rate <= 0:
        raise ValueError(f"rate must be > 0 Hz, got {rate}")
    topic = image_topic or (COMPRESSED_TOPIC if compressed else IMAGE_TOPIC)
    count = 0
    with open_writer(out, storage) as writer:
        if categories is not None:
            writer.write(GT_CATEGORIES_TOPIC, category_map_message(categories, start_ns), start_ns)
        for index, frame in enumerate(frames):
            frame = frame if isinstance(frame, Frame) else Frame(frame)
            stamp = frame.stamp_ns if frame.stamp_ns is not None else \
                start_ns + round(index * 1e9 / rate)
            image = (compressed_message(frame.rgb, stamp, frame.frame_id, image_format)
                     if compressed else image_message(frame.rgb, "rgb8", stamp, frame.frame_id))
            writer.write(topic, image, stamp)
            if frame.labels is not None:
                writer.write(GT_LABELS_TOPIC, label_message(frame.labels, stamp, frame.frame_id),
                             stamp)
            count += 1
    return count
