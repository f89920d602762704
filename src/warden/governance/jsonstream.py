"""A tolerant, incremental reader of JSON event files, for input that DuckDB rejects.

It reads the three shapes that logs come in (`{"Records": [...]}`, a bare array, JSON Lines),
plain or gzipped, in chunks, so memory stays bounded by the largest single event. Each event
comes with the line it starts on. A truncated file, a line that is not JSON or gzip that is
not gzip ends or skips that part with a `StreamProblem` naming the line, and the events
before it are still returned.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_CHARS = 1 << 20
# Largest single event accepted, in characters; CloudTrail events are far smaller.
MAX_EVENT_CHARS = 64 << 20
# Length of the first slice passed to the decoder for each value; a larger value gets a
# slice twice as long.
SLICE_CHARS = 1 << 14
# A decoding error this close to the slice's end may come from a token that the slice cuts
# (`-Infinity`, a `\uXXXX` escape, a literal such as `false`), so more text is read first.
CUT_MARGIN_CHARS = 16


_TOO_DEEP = "arrays or objects nested too deeply"


def _null_constant(_name: str) -> None:
    return None


# NaN and Infinity are not JSON, but Python's parser accepts them; reading them as null keeps
# them out of reports, which must stay valid JSON.
_decoder = json.JSONDecoder(parse_constant=_null_constant)


def loads(text: str) -> Any:
    """Parse a JSON document, reading NaN and Infinity as null.

    Raises json.JSONDecodeError, also for arrays or objects nested too deeply for Python's
    parser, which raises RecursionError for them.
    """
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise json.JSONDecodeError(_TOO_DEEP, text, 0) from None


@dataclass(frozen=True)
class StreamProblem:
    line: int | None
    message: str


@dataclass(frozen=True)
class StreamItem:
    line: int
    value: Any


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_text(path: Path) -> BinaryIO:
    """Open `path` for reading bytes, decompressing when its content starts with the gzip magic."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def sniff_shape(path: Path) -> str:
    """Return "records", "array" or "lines" from the first bytes of the (decompressed) file.

    Raises OSError or zlib.error when the file cannot be read or decompressed.
    """
    with open_text(path) as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "array"
    if head.startswith(b"{"):
        compact = (
            head.replace(b" ", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b"\t", b"")
        )
        if compact.startswith(b'{"Records"'):
            return "records"
        return "lines"
    return "lines"


class _Buffer:
    """Decoded text in a sliding window over the stream, with the line number of its start."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._decoder = _utf8_decoder()
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def fill(self) -> bool:
        """Read the next chunk; return False at the end of the stream."""
        if self.eof:
            return False
        chunk = self._handle.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            self.text = self.text[self.pos :] + self._decoder.decode(b"", final=True)
            self.pos = 0
            return False
        self.text = self.text[self.pos :] + self._decoder.decode(chunk)
        self.pos = 0
        return True

    def advance(self, new_pos: int) -> None:
        self.line += self.text.count("\n", self.pos, new_pos)
        self.pos = new_pos

    def skip_space(self) -> bool:
        """Move past whitespace; return False when the stream ends first."""
        while True:
            text = self.text
            pos = self.pos
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            self.advance(pos)
            if self.pos < len(self.text):
                return True
            if not self.fill():
                return False

    def peek(self) -> str:
        return self.text[self.pos]

    def decode_value(self) -> Any:
        """Decode one JSON value at the cursor, reading more chunks until it is complete.

        Raises ValueError when the value is invalid or the stream ends inside it.
        """
        # The decoder gets a slice from the cursor because its error message counts the
        # lines before the error, which over the whole window would cost the window's length
        # for every bad line. The slice doubles while a value does not fit in it.
        size = SLICE_CHARS
        while True:
            piece = self.text[self.pos : self.pos + size]
            whole = len(piece) < size  # the slice reaches the end of the text read so far
            try:
                value, end = _decoder.raw_decode(piece)
            except RecursionError:
                raise ValueError(_TOO_DEEP) from None
            except json.JSONDecodeError as error:
                # A value cut by the slice's end looks like invalid JSON: read more and
                # retry, up to a bound so that garbage cannot pull the whole file into memory.
                # An error far from the end is real and more text cannot fix it, except an
                # unterminated string, which the decoder reports where the string starts.
                cut = len(piece) - error.pos <= CUT_MARGIN_CHARS or error.msg.startswith(
                    "Unterminated string"
                )
                if cut and not whole:
                    size *= 2
                    continue
                if cut and len(self.text) - self.pos < MAX_EVENT_CHARS and self.fill():
                    continue
                raise ValueError(error.msg) from None
            # A number at the slice's end may continue after it.
            if end == len(piece) and not whole:
                size *= 2
                continue
            if end == len(piece) and not self.eof and self.fill():
                continue
            self.advance(self.pos + end)
            return value


def _utf8_decoder() -> Any:
    import codecs

    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def iter_events(path: Path) -> Iterator[StreamItem | StreamProblem]:
    """Yield each event object of `path` with its line, and a problem for each part skipped."""
    try:
        shape = sniff_shape(path)
        handle = open_text(path)
    except (OSError, EOFError, zlib.error) as error:
        yield StreamProblem(1, f"cannot read or decompress the file: {error}")
        return
    with handle:
        buffer = _Buffer(handle)
        try:
            buffer.fill()
            if shape == "lines":
                yield from _iter_lines(buffer)
            else:
                yield from _iter_array(buffer, shape)
        except (OSError, EOFError, zlib.error) as error:
            yield StreamProblem(buffer.line, f"file is damaged after this line: {error}")


def _iter_lines(buffer: _Buffer) -> Iterator[StreamItem | StreamProblem]:
    while buffer.skip_space():
        line = buffer.line
        try:
            value = buffer.decode_value()
        except ValueError as error:
            yield StreamProblem(line, f"invalid JSON ({error}); line skipped")
            _skip_to_next_line(buffer)
            continue
        if isinstance(value, dict):
            yield StreamItem(line, value)
        elif isinstance(value, list):
            # A pretty-printed export may hold one array; take its objects.
            skipped = 0
            for item in value:
                if isinstance(item, dict):
                    yield StreamItem(line, item)
                else:
                    skipped += 1
            if skipped:
                yield StreamProblem(line, f"{skipped} array items are not JSON objects; skipped")
        else:
            yield StreamProblem(line, f"expected a JSON object, found {type(value).__name__}")


def _skip_to_next_line(buffer: _Buffer) -> None:
    while True:
        newline = buffer.text.find("\n", buffer.pos)
        if newline >= 0:
            buffer.advance(newline + 1)
            return
        buffer.advance(len(buffer.text))
        if not buffer.fill():
            return


def _iter_array(buffer: _Buffer, shape: str) -> Iterator[StreamItem | StreamProblem]:
    if shape == "records" and not _enter_records(buffer):
        yield StreamProblem(buffer.line, 'no "Records" array found')
        return
    if not buffer.skip_space() or buffer.peek() != "[":
        yield StreamProblem(buffer.line, "expected '[' to open the array of events")
        return
    buffer.advance(buffer.pos + 1)
    while True:
        if not buffer.skip_space():
            yield StreamProblem(buffer.line, "file ends inside the array of events (truncated)")
            return
        if buffer.peek() == "]":
            return
        if buffer.peek() == ",":
            buffer.advance(buffer.pos + 1)
            continue
        line = buffer.line
        try:
            value = buffer.decode_value()
        except ValueError as error:
            yield StreamProblem(
                line, f"invalid or truncated JSON ({error}); the rest of the file is skipped"
            )
            return
        if isinstance(value, dict):
            yield StreamItem(line, value)
        else:
            yield StreamProblem(line, f"expected an event object, found {type(value).__name__}")


def _enter_records(buffer: _Buffer) -> bool:
    """Move the cursor to the value of the top-level "Records" key."""
    while True:
        index = buffer.text.find('"Records"', buffer.pos)
        if index >= 0:
            colon = buffer.text.find(":", index)
            while colon < 0:
                if not buffer.fill():
                    return False
                index = buffer.text.find('"Records"')
                colon = buffer.text.find(":", index)
            buffer.advance(colon + 1)
            return True
        keep = max(buffer.pos, len(buffer.text) - 16)
        buffer.advance(keep)
        if not buffer.fill():
            return False
