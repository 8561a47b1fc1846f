//! SimplyBook.me's real contract end to end: callbacks through ingest, the ledger confirming
//! each with a fake that answers only in the shapes of `tests/fixtures/simplybook/` (each named
//! after its source), reconciliation from admin lists that carry no booking hash, and the go-live
//! check.

mod callbacks;
mod go_live;
mod reconciliation;
mod support;
