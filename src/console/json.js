// Lossless JSON for the console. Cairn keeps every digit a client wrote
// (`12345678901234567890123`, `2.50`), but JSON.parse turns numbers into doubles and would
// show, and save back, other digits. This parser keeps such a number as a RawNumber holding
// its text, and `stringify` writes it back verbatim. Numbers a double holds exactly stay
// plain numbers, so the rest of the console (the Increment button, say) sees ordinary values.

/** A JSON number whose text a double would not keep. */
export class RawNumber {
  constructor(text) {
    this.text = text;
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Parses JSON text like JSON.parse (the same errors for bad input), keeping numbers exact. */
export function parse(text) {
  // JSON.parse does the validation and gives the familiar error messages; the walk below
  // then only has to read text already known to be valid.
  JSON.parse(text);
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        const k = string();
        ws();
        i++; // ':'
        Object.defineProperty(obj, k, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i++] === "}") return obj;
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i++] === "]") return arr;
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) { i += 4; return true; }
    if (text.startsWith("false", i)) { i += 5; return false; }
    if (text.startsWith("null", i)) { i += 4; return null; }
    NUMBER.lastIndex = i;
    const raw = NUMBER.exec(text)[0];
    i += raw.length;
    const n = Number(raw);
    return String(n) === raw ? n : new RawNumber(raw);
  };
  const string = () => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  return value();
}

/** JSON text of a value from `parse`, RawNumbers verbatim; `indent` as JSON.stringify's. */
export function stringify(v, indent = 0, depth = 0) {
  if (v instanceof RawNumber) return v.text;
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  const pad = indent ? `\n${" ".repeat(indent * (depth + 1))}` : "";
  const end = indent ? `\n${" ".repeat(indent * depth)}` : "";
  const sep = indent ? ": " : ":";
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return `[${v.map((x) => pad + stringify(x, indent, depth + 1)).join(",")}${end}]`;
  }
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return `{${keys.map((k) => pad + JSON.stringify(k) + sep + stringify(v[k], indent, depth + 1)).join(",")}${end}}`;
}
