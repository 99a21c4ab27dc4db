//! The openraft type configuration: which types flow through Raft on every node.

use openraft::BasicNode;

use crate::model::command::{Proposal, ProposalResult};

pub use crate::config::NodeId;

openraft::declare_raft_types!(
    /// Cairn's Raft types. Snapshots are files so a large state machine streams from disk
    /// instead of being held in memory.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
