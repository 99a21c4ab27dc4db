"""A Server-Sent Events parser, line by line, following the HTML standard's rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- a line starting with ':' is a comment (Cairn's keep-alives);
- `field: value` (one leading space of the value dropped), or a bare `field` with an empty value;
- `data` lines accumulate, joined by '\\n'; `event` names the event (default `message`); `id`
  sets the id buffer (ignored if it holds a NUL); `retry` is a reconnection delay;
- a blank line dispatches the event: the id buffer becomes the last event id, then the event is
  delivered unless it has no data. The last event id moves only when a blank line completes an
  event, so a stream that breaks in the middle of one resumes before it, not after.

It is fed decoded lines without their line ending; the caller splits the stream on '\\n' and
drops a trailing '\\r', which covers the '\\n' and '\\r\\n' endings servers use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional

__all__ = ["SSEEvent", "SSEParser", "parse_lines"]


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    # The last event id in force when this event was dispatched (it persists across events,
    # as in an EventSource), or None if no id was ever given.
    id: Optional[str]


class SSEParser:
    def __init__(self) -> None:
        # The last event id of the stream: the id a reconnection sends as Last-Event-ID.
        self.last_id: Optional[str] = None
        self._id_buffer: Optional[str] = None
        self.retry_ms: Optional[int] = None
        self._event = ""
        self._data: List[str] = []
        self._has_data = False

    def feed(self, line: str) -> Optional[SSEEvent]:
        """Takes one line (no line ending). Returns the event a blank line completes, if any."""
        if line.endswith("\r"):
            line = line[:-1]
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        # Any other field name is ignored, as the standard says.
        return None

    def _dispatch(self) -> Optional[SSEEvent]:
        self.last_id = self._id_buffer
        event, data, has_data = self._event or "message", "\n".join(self._data), self._has_data
        self._event, self._data, self._has_data = "", [], False
        if not has_data:
            return None
        return SSEEvent(event=event, data=data, id=self.last_id)


def parse_lines(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Events from an iterable of lines. An event not ended by a blank line is not dispatched
    (the stream broke in the middle of it)."""
    parser = SSEParser()
    for line in lines:
        ev = parser.feed(line.rstrip("\n"))
        if ev is not None:
            yield ev
