// The package's public surface: the client, its typed errors and the shapes it takes and gives.

export { Client } from "./client.js";
export { Election, Lease, Lock } from "./coordination.js";
export type { ElectOptions, LockOptions } from "./coordination.js";
export {
  BadRequest,
  CairnError,
  Compacted,
  Conflict,
  Forbidden,
  NotFound,
  PreconditionFailed,
  RateLimited,
  Unauthorized,
  Unavailable,
  UnknownOutcome,
} from "./errors.js";
export type { CairnErrorFields } from "./errors.js";
export type {
  BatchOp,
  BatchResult,
  Change,
  ClientOptions,
  DeleteOptions,
  ElectionLeader,
  Entry,
  Item,
  LeaseInfo,
  LeaseOptions,
  LeaseStatus,
  ObserveOptions,
  PutOptions,
  QueryValue,
  RawResponse,
  RequestOptions,
  RetryOptions,
  ScanItem,
  IncrementOptions,
  ScanOptions,
  WatchEvent,
  WatchOptions,
} from "./types.js";
