//! A small but real SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
//! keeps every message it accepts, for tests and for the local demo. Tests can take it down
//! (connections refused, open sessions answered 421) and bring it back on the same port, and
//! make it refuse chosen recipients for good (550).
//!
//! Opt-in ([`Options`]), it is a submission server as production has: STARTTLS (RFC 3207) with
//! a certificate for `localhost` and 127.0.0.1 signed by a CA made when it starts
//! ([`MailSink::ca_pem`]), and AUTH PLAIN (RFC 4616) or LOGIN (RFC 4954), offered only inside
//! TLS and required before MAIL, with a password a test can change while the sink runs
//! ([`MailSink::set_password`]).
//!
//! # Layout
//!
//! - `sink`: [`MailSink`], the running server and what a test does with it (start, stop,
//!   restart, refuse a recipient, change the password, read what arrived).
//! - `options`: what a sink offers beyond plain SMTP ([`Options`]), and the CA made for its TLS.
//! - `inbox`: what a sink keeps: the messages it accepted, its refusals, its state; and each
//!   message written to a directory for the demo.
//! - `state`: what a session runs over (TCP, then TLS) and where it stands, and the replies
//!   more than one command gives.
//! - `session`: one SMTP session, command by command (EHLO, STARTTLS, MAIL, RCPT, DATA, …).
//! - `auth`: AUTH with PLAIN or LOGIN, inside TLS only.

mod auth;
mod inbox;
mod options;
mod session;
mod sink;
mod state;

pub use inbox::ReceivedMail;
pub use options::Options;
pub use sink::MailSink;
