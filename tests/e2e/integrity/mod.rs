//! The ledger as a tamper-evident record: a price change is a new revision on the hash chain,
//! never an edit, and VerifyIntegrity names the first record someone with a database shell
//! changed or deleted behind the triggers' back.

mod chain;
mod privileges;
mod support;
mod tampering;
