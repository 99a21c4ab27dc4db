//! WAL unit tests: recovery after reopen, torn tails, truncate and purge.
