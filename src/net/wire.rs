//! Raft RPC bodies, the only owner of their wire format: the bincode encoding (via `codec`) of
//! openraft's request structs, and of `Result<response, RaftError>` for replies. The format is
//! versioned by the content type, so a node talking to a peer of another format fails loudly
//! instead of misreading bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError};

pub const CONTENT_TYPE: &str = "application/x-cairn-raft-v1";

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode(v)
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    codec::decode(b)
}
