//! The replicated data model: the commands that go through Raft and their results
//! (`command`), openraft's type configuration built on them (`types`), and the private key
//! space that dialects keep their own records in (`private`). Storage (`wal`,
//! `sm`), the peer network (`net`) and the node all speak these types; this folder imports
//! nothing else from the crate but the codec-free `serde` derives.

pub mod command;
pub mod private;
pub mod types;
