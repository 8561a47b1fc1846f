//! billingctl as an operator runs it (a separate process over gRPC): tenants' billing profiles,
//! the month-end close, exports, payments from a bank statement, reconciliation with
//! SimplyBook, clients' personal details and their erasure, an unknown invoice's emails, and a
//! reader that stops reading (`| head`).

mod clients;
mod endings;
mod month_end;
mod onboarding;
mod reconciliation;
mod support;
mod tenants;
