//! The one place bincode is used. Every persisted or wire byte format (WAL records, sled
//! values, snapshot files, Raft RPC bodies) encodes its payloads through these functions, so
//! the serializer can be swapped in one file. bincode 2.0.1 is pinned: 3.x is an empty crate.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(String);

impl CodecError {
    pub fn new(msg: impl Into<String>) -> Self {
        CodecError(msg.into())
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Appends the encoding of `value` to `out`, avoiding a temporary buffer on hot paths.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config()).map(|_| ()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value at the start of the slice and ignores what follows: for reading the leading
/// field of a larger record without decoding the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(bytes, config()).map(|(v, _)| v).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value that must occupy the whole slice: trailing bytes mean corruption.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| CodecError(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError(format!("{} trailing bytes after value", bytes.len() - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let v = (7u64, "x".to_string(), Some(3i64));
        let mut b = encode(&v).unwrap();
        assert_eq!(decode::<(u64, String, Option<i64>)>(&b).unwrap(), v);
        b.push(0);
        assert!(decode::<(u64, String, Option<i64>)>(&b).is_err());
    }
}
