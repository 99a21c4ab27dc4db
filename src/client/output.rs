//! `-o text|json|jsonl` of `cairn kv get` and `cairn kv ls`: how an item or a listing is printed.
//! Text is for people and shell pipelines (a value alone, a key per line), JSON for reading
//! whole, JSON lines for streaming into `jq` or a program, one item per line.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

use super::types::{Item, Listed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// `get`: the value alone (a string without quotes); `ls`: a key per line, with `--values`
    /// the key, a tab and the value as compact JSON
    Text,
    /// Indented JSON: `get` the item, `ls` one array of every item
    Json,
    /// Compact JSON, one item per line
    Jsonl,
}

fn compact<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("JSON values serialize")
}

/// A value as text: a string as itself, anything else as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// What `cairn kv get -o FORMAT` prints.
pub fn item(item: &Item, format: Output) -> String {
    match format {
        Output::Text => value_text(&item.value),
        Output::Json => serde_json::to_string_pretty(item).expect("JSON values serialize"),
        Output::Jsonl => compact(item),
    }
}

/// Prints a listing as its pages arrive, so `ls` of a million keys holds one page at a time.
pub struct Listing<W: Write> {
    out: W,
    format: Output,
    printed: u64,
}

impl<W: Write> Listing<W> {
    pub fn new(out: W, format: Output) -> Self {
        Listing { out, format, printed: 0 }
    }

    pub fn push(&mut self, item: &Listed) -> std::io::Result<()> {
        match self.format {
            Output::Text => match &item.value {
                Some(value) => writeln!(self.out, "{}\t{}", item.key, compact(value))?,
                None => writeln!(self.out, "{}", item.key)?,
            },
            Output::Jsonl => writeln!(self.out, "{}", compact(item))?,
            Output::Json => {
                let sep = if self.printed == 0 { "[\n  " } else { ",\n  " };
                write!(self.out, "{sep}{}", compact(item))?;
            }
        }
        self.printed += 1;
        Ok(())
    }

    /// Ends the listing (a JSON array is closed, `[]` when empty) and flushes.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if self.format == Output::Json {
            writeln!(self.out, "{}", if self.printed == 0 { "[]" } else { "\n]" })?;
        }
        self.out.flush()?;
        Ok(self.printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listed(key: &str, value: Option<Value>) -> Listed {
        Listed { key: key.into(), value, version: "7".into(), expires_at: None }
    }

    fn print(format: Output, items: &[Listed]) -> String {
        let mut buf = Vec::new();
        let mut listing = Listing::new(&mut buf, format);
        for i in items {
            listing.push(i).unwrap();
        }
        assert_eq!(listing.finish().unwrap(), items.len() as u64);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_format_of_a_listing_is_what_it_says() {
        let items = [listed("a", Some(json!({"n": 1}))), listed("b", Some(json!("x")))];
        assert_eq!(print(Output::Text, &items), "a\t{\"n\":1}\nb\t\"x\"\n");
        assert_eq!(print(Output::Text, &[listed("a", None)]), "a\n");
        let jsonl = print(Output::Jsonl, &items);
        let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[1], json!({"key": "b", "value": "x", "version": "7", "expiresAt": null}));
        let array: Value = serde_json::from_str(&print(Output::Json, &items)).unwrap();
        assert_eq!(array.as_array().unwrap().len(), 2);
        assert_eq!(array[0]["value"], json!({"n": 1}));
        assert_eq!(serde_json::from_str::<Value>(&print(Output::Json, &[])).unwrap(), json!([]));
    }

    #[test]
    fn a_value_as_text_is_a_string_itself_or_compact_json() {
        let it = |v: Value| Item { key: "k".into(), value: v, version: "1".into(), expires_at: None };
        assert_eq!(item(&it(json!("hello")), Output::Text), "hello");
        assert_eq!(item(&it(json!({"a": [1, 2]})), Output::Text), "{\"a\":[1,2]}");
        assert_eq!(item(&it(json!(null)), Output::Text), "null");
        let line: Value = serde_json::from_str(&item(&it(json!(1)), Output::Jsonl)).unwrap();
        assert_eq!(line, json!({"key": "k", "value": 1, "version": "1", "expiresAt": null}));
    }
}
