// A Server-Sent Events parser that follows the WHATWG rules (the ones `EventSource` follows), fed
// with the response body's chunks as they come. Chunks split lines, fields and UTF-8 characters
// anywhere, so it keeps the incomplete tail of each and decodes as a stream.

export interface SseEvent {
  /** The last event id seen so far (the spec's "last event ID buffer"), or null before any. */
  id: string | null;
  /** The `event:` field, `message` when absent. */
  event: string;
  data: string;
}

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private pending = "";
  /** A chunk ended in CR: a LF opening the next chunk belongs to the same line end. */
  private lastWasCR = false;
  private data: string[] = [];
  private event = "";
  private sawData = false;
  /** Survives events, as in `EventSource`: an event without `id:` keeps the one before. */
  private idBuffer: string | null = null;
  /**
   * The id as of the last complete event (a blank line), data or not: where a reconnect
   * resumes. An `id:` line whose event never completed does not count, or a break between the
   * two would skip that event.
   */
  lastEventId: string | null = null;

  /** Feeds bytes; returns the events they complete. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.lines(this.decoder.decode(chunk, { stream: true }));
  }

  /** The body ended: an event without its closing blank line is dropped, as the spec says. */
  end(): SseEvent[] {
    const events = this.lines(this.decoder.decode());
    this.pending = "";
    this.data = [];
    this.event = "";
    this.sawData = false;
    return events;
  }

  private lines(text: string): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    if (this.lastWasCR && text.startsWith("\n")) start = 1;
    this.lastWasCR = false;
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.pending + text.slice(start, i);
      this.pending = "";
      if (c === 13) {
        if (i + 1 === text.length) this.lastWasCR = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
      const event = this.line(line);
      if (event !== null) events.push(event);
    }
    this.pending += text.slice(start);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment: the server's keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        this.sawData = true;
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      default:
        break; // `retry:` and unknown fields: nothing this client uses
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    const sawData = this.sawData;
    this.lastEventId = this.idBuffer;
    const event: SseEvent = { id: this.idBuffer, event: this.event || "message", data: this.data.join("\n") };
    this.data = [];
    this.event = "";
    this.sawData = false;
    return sawData ? event : null;
  }
}
