"""The SSE line parser, on the cases the standard spells out."""

from cairn_client.sse import SSEEvent, SSEParser, parse_lines


def events(text: str):
    return list(parse_lines(text.split("\n")))


def test_fields_comments_and_dispatch():
    evs = events('id: 41\nevent: progress\ndata: {"index":"41"}\n\n: keep-alive\n\nid: 42\nevent: change\ndata: x\n\n')
    assert evs == [SSEEvent("progress", '{"index":"41"}', "41"), SSEEvent("change", "x", "42")]


def test_multiline_data_default_event_and_space_rules():
    evs = events("data:a\ndata:  b\ndata\n\n")
    assert evs == [SSEEvent("message", "a\n b\n", None)]


def test_crlf_line_endings():
    evs = events("id: 1\r\nevent: change\r\ndata: d\r\n\r\n")
    assert evs == [SSEEvent("change", "d", "1")]


def test_id_persists_and_an_event_without_data_is_not_delivered():
    p = SSEParser()
    for line in ["id: 9", "event: change", ""]:
        assert p.feed(line) is None
    assert p.last_id == "9"
    assert p.feed("data: later") is None
    assert p.feed("") == SSEEvent("message", "later", "9")


def test_the_id_moves_only_when_an_event_completes():
    p = SSEParser()
    p.feed("id: 5")
    p.feed("data: x")
    p.feed("")
    p.feed("id: 6")
    p.feed("data: half")
    # The stream breaks here: the resume point is still 5.
    assert p.last_id == "5"


def test_id_with_nul_is_ignored_and_unknown_fields_too():
    p = SSEParser()
    p.feed("id: 3")
    p.feed("data: a")
    p.feed("")
    p.feed("id: 4\x00")
    p.feed("foo: bar")
    p.feed("retry: 250")
    p.feed("data: b")
    assert p.feed("") == SSEEvent("message", "b", "3")
    assert p.retry_ms == 250
