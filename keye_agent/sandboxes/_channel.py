"""The host end of the JSON-lines protocol, over a container's attach stream.

Without a TTY the engine multiplexes the container's stdout and stderr on the attach socket: each frame is an
8-byte header (stream type, three zero bytes, big-endian payload length) then the payload. Stdin is written raw.
The supervisor writes one JSON object per line on stdout; its stderr only carries its own crash messages, kept
here (the last few KiB) for error reports.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

_HEADER = struct.Struct(">BxxxI")


class ChannelClosed(Exception):
    """The attach stream ended: the container exited or was removed."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._raw = bytearray()  # undecoded frames
        self._out = bytearray()  # stdout payload not yet split into lines
        self._scan = 0  # where to resume looking for a newline in _out
        self.stderr_tail = bytearray()

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, deadline: float) -> dict[str, Any]:
        """The next JSON line from the supervisor; `TimeoutError` at ``deadline`` (time.monotonic())."""
        while True:
            nl = self._out.find(b"\n", self._scan)
            if nl >= 0:
                line = bytes(self._out[:nl])
                del self._out[: nl + 1]
                self._scan = 0
                return json.loads(line)
            self._scan = len(self._out)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                raise
            except OSError as e:
                raise ChannelClosed(str(e)) from e
            if not data:
                raise ChannelClosed("the container's output stream ended")
            self._raw += data
            self._decode()

    def _decode(self) -> None:
        raw = self._raw
        pos = 0
        while len(raw) - pos >= _HEADER.size:
            kind, size = _HEADER.unpack_from(raw, pos)
            if len(raw) - pos - _HEADER.size < size:
                break
            start = pos + _HEADER.size
            if kind == 2:
                self.stderr_tail += raw[start : start + size]
                del self.stderr_tail[:-4096]
            else:
                self._out += raw[start : start + size]
            pos = start + size
        del raw[:pos]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
