// The SSE parser against the WHATWG rules, with the stream cut at every possible byte.

import assert from "node:assert/strict";
import { test } from "node:test";

import { SseParser } from "../dist/sse.js";

const bytes = (text) => new TextEncoder().encode(text);

/** Events from `text` fed in chunks cut at `cuts` (byte offsets), plus the id a resume would use. */
function parse(text, cuts = []) {
  const parser = new SseParser();
  const all = bytes(text);
  const events = [];
  let from = 0;
  for (const cut of [...cuts, all.length]) {
    events.push(...parser.push(all.slice(from, cut)));
    from = cut;
  }
  events.push(...parser.end());
  return { events, lastEventId: parser.lastEventId };
}

const STREAM =
  ": keep-alive\n\n" +
  "id: 41\nevent: progress\ndata: {\"index\":\"41\"}\n\n" +
  "id: 42\r\nevent: change\r\ndata: {\"index\":\"42\",\"changes\":[{\"key\":\"ké\"}]}\r\n\r\n" +
  "event: change\rdata:first\rdata: second\r\r" +
  "data\n\n";

const EXPECTED = [
  { id: "41", event: "progress", data: '{"index":"41"}' },
  { id: "42", event: "change", data: '{"index":"42","changes":[{"key":"ké"}]}' },
  { id: "42", event: "change", data: "first\nsecond" },
  { id: "42", event: "message", data: "" },
];

test("fields, comments, CRLF, CR, multi-line data and an id that carries over", () => {
  assert.deepEqual(parse(STREAM).events, EXPECTED);
});

test("the same events whatever byte the chunks are cut at, a UTF-8 character and a CRLF included", () => {
  const length = bytes(STREAM).length;
  for (let cut = 0; cut <= length; cut++) {
    assert.deepEqual(parse(STREAM, [cut]).events, EXPECTED, `cut at byte ${cut}`);
  }
  const oneByteChunks = Array.from({ length }, (_, i) => i);
  assert.deepEqual(parse(STREAM, oneByteChunks).events, EXPECTED);
});

test("an event cut off before its blank line is dropped, and its id is not a resume point", () => {
  const { events, lastEventId } = parse('id: 7\nevent: change\ndata: {}\n\nid: 8\nevent: change\ndata: {"half":');
  assert.deepEqual(events, [{ id: "7", event: "change", data: "{}" }]);
  assert.equal(lastEventId, "7");
});

test("an id with no data still moves the resume point, as in EventSource", () => {
  const { events, lastEventId } = parse("id: 9\n\n");
  assert.deepEqual(events, []);
  assert.equal(lastEventId, "9");
});

test("a leading BOM is ignored, and an id holding NUL is refused", () => {
  const { events } = parse("\uFEFFdata: a\n\nid: 1\0\ndata: b\n\n");
  assert.deepEqual(events, [
    { id: null, event: "message", data: "a" },
    { id: null, event: "message", data: "b" },
  ]);
});
