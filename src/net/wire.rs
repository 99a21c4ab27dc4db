//! Raft RPC bodies, the only owner of their wire format: the bincode encoding (via `codec`) of
//! openraft's request structs, and of `Result<response, RaftError>` for replies. The format is
//! versioned by the content type, so a node talking to a peer of another format fails loudly
//! instead of misreading bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use openraft::raft::InstallSnapshotRequest;

use crate::codec::{self, CodecError};
use crate::model::types::TypeConfig;

pub const CONTENT_TYPE: &str = "application/x-cairn-raft-v1";

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode(v)
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    codec::decode(b)
}

/// Snapshot chunks carry megabytes of opaque data: they travel as `[u32 LE: length of the
/// bincode of the request without its data][that bincode][the data, raw]`, so the data is
/// copied, not serialised byte by byte (serde sees a `Vec<u8>` as a sequence of numbers).
pub fn encode_snapshot_chunk(mut req: InstallSnapshotRequest<TypeConfig>) -> Result<Vec<u8>, CodecError> {
    let data = std::mem::take(&mut req.data);
    let head = codec::encode(&req)?;
    let mut out = Vec::with_capacity(4 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

pub fn decode_snapshot_chunk(b: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    let short = || CodecError::new("snapshot chunk shorter than its header");
    let len = u32::from_le_bytes(b.get(..4).ok_or_else(short)?.try_into().map_err(|_| short())?) as usize;
    let head = b.get(4..4 + len).ok_or_else(short)?;
    let mut req: InstallSnapshotRequest<TypeConfig> = codec::decode(head)?;
    req.data = b[4 + len..].to_vec();
    Ok(req)
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, SnapshotMeta, Vote};

    use super::*;
    use crate::model::types::LogId;

    #[test]
    fn snapshot_chunks_round_trip_with_raw_data() {
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
                last_membership: Default::default(),
                snapshot_id: "s".into(),
            },
            offset: 1 << 20,
            data: (0..=255u8).cycle().take(5000).collect(),
            done: false,
        };
        let bytes = encode_snapshot_chunk(req.clone()).unwrap();
        assert_eq!(decode_snapshot_chunk(&bytes).unwrap(), req);
        assert!(decode_snapshot_chunk(&bytes[..3]).is_err());
    }
}
