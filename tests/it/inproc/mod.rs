//! The in-process tier: API semantics on nodes running inside the test process
//! (`support::Cluster::in_process*`). Nothing here kills a node or reads a node's log, and
//! nothing asserts on `/metrics` counters, which every in-process node shares.

mod bad_input;
mod console;
mod data_api;
mod dialects_auth;
mod dialects_bad_input;
mod dialects_echovalue;
mod dialects_kvdb;
mod dialects_rocketstack;
mod dialects_saasignal;
mod follower_reads;
mod fuzz_requests;
mod internal_headers;
mod kv_semantics;
mod leases;
mod locks;
mod openapi;
mod permissions;
mod rate_limit;
mod slow_clients;
mod strict_requests;
mod token_expiry;
mod ttl_expiry;
mod watch;
