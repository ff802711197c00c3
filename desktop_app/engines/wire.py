"""The pickle-free wire protocol between Atelier and its engine child processes (chat, images).

Qt-free, and free of torch/llama_cpp: both sides import it.

A message is one line of UTF-8 JSON (an object) followed by the raw bytes of its blobs. The
header's ``"blobs"`` key, when present, lists ``[name, length]`` pairs; the blobs follow the
newline in that order. Requests (parent -> child) carry ``op`` and ``id``; events (child ->
parent) carry ``type``, ``job`` and ``data``. Every job ends with exactly one terminal event:
``done``, ``cancelled`` or ``error``. A header line is bounded (``MAX_HEADER``) and so are blobs
(``MAX_BLOB``), so a confused peer cannot make the other side allocate without limit.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any, Callable

ERROR = "error"
CANCELLED = "cancelled"
DONE = "done"
PONG = "pong"
READY = "ready"
TERMINAL = (ERROR, CANCELLED, DONE)
MAX_HEADER = 256 * 1024 * 1024  # a chat request carries whole conversations (pasted files)
MAX_BLOB = 1024 * 1024 * 1024


@dataclass
class Event:
    """One event from the engine. ``image``: encoded bytes for ``preview`` (JPEG) and ``result`` (PNG)."""

    type: str
    job: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


# Framing ------------------------------------------------------------------------------------

def write_message(stream: IO[bytes], header: dict, blobs: dict[str, bytes] | None = None) -> None:
    header = dict(header)
    items = [(k, v) for k, v in (blobs or {}).items() if v is not None]
    if items:
        header["blobs"] = [[k, len(v)] for k, v in items]
    data = json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n"
    stream.write(data + b"".join(v for _, v in items))
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple[dict, dict[str, bytes]] | None:
    """The next message, or None at end of stream."""
    line = stream.readline(MAX_HEADER + 1)
    if not line:
        return None
    if len(line) > MAX_HEADER:
        raise ValueError("message header too long")
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("message header is not an object")
    blobs: dict[str, bytes] = {}
    for name, n in header.pop("blobs", []):
        if not isinstance(n, int) or not 0 <= n <= MAX_BLOB:
            raise ValueError("bad blob length")
        buf = b""
        while len(buf) < n:
            chunk = stream.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        blobs[name] = buf
    return header, blobs


def event_to_wire(ev: Event) -> tuple[dict, dict[str, bytes]]:
    return {"type": ev.type, "job": ev.job, "data": ev.data}, ({"image": ev.image} if ev.image else {})


def event_from_wire(header: dict, blobs: dict[str, bytes]) -> Event:
    return Event(type=header["type"], job=header.get("job"), data=header.get("data") or {}, image=blobs.get("image"))


# The child's side ---------------------------------------------------------------------------

class EventWriter:
    """Thread-safe event writer on the protocol stream."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, ev: Event) -> None:
        header, blobs = event_to_wire(ev)
        with self._lock:
            write_message(self._stream, header, blobs)


def child_streams():
    """(protocol in, protocol out) for an engine child: private copies of stdin and stdout, with
    fd 1 pointed at stderr, so a stray ``print`` in a library cannot corrupt the protocol."""
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    return proto_in, proto_out


def start_reader(proto_in, jobs: queue.Queue, cancel: Callable[[str | None], None],
                 ping: Callable[[str | None], None], name: str = "engine-reader") -> threading.Thread:
    """The child's reader thread: ``cancel`` and ``ping`` are answered at once, while the main thread
    computes; every other request (and ``shutdown``, also when the parent goes away) is queued on
    ``jobs`` as ``(header, blobs)`` for the main thread."""

    def run() -> None:
        while True:
            try:
                msg = read_message(proto_in)
            except (ValueError, OSError):
                msg = None
            if msg is None:  # the parent went away: stop the work and exit
                cancel(None)
                jobs.put(({"op": "shutdown"}, {}))
                return
            header, blobs = msg
            op = header.get("op")
            if op == "cancel":
                cancel(header.get("id"))
            elif op == "ping":
                ping(header.get("id"))
            else:
                if op == "shutdown":
                    cancel(None)
                jobs.put((header, blobs))
                if op == "shutdown":
                    return

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


def job_loop(jobs: queue.Queue, run: Callable[[str | None, str | None, dict, dict], None]) -> None:
    """The child's main loop: each queued request goes to ``run(op, job_id, header, blobs)``, one
    after another, until ``shutdown`` (which the reader also queues when the parent goes away)."""
    while True:
        header, blobs = jobs.get()
        if header.get("op") == "shutdown":
            return
        run(header.get("op"), header.get("id"), header, blobs)
