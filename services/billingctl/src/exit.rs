//! How a run ends: its exit status, in one table ([`status`]), and the error on stderr; or
//! early, when standard output fails ([`stdout_failed`]).

use std::io::Write as _;
use std::process::ExitCode;

use billing_runtime::error::ErrorCode;

/// What a command found when it ran to its end (an error is the `Err` beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything done.
    Done,
    /// Ran, but part of it failed (`invoices generate`: a tenant's close).
    Failed,
    /// Ran, and found something a person must look at.
    NeedsAttention,
}

impl Outcome {
    /// [`Outcome::Done`] when `ok`, else [`Outcome::NeedsAttention`].
    pub fn attention_unless(ok: bool) -> Self {
        if ok {
            Outcome::Done
        } else {
            Outcome::NeedsAttention
        }
    }

    /// [`Outcome::Failed`] when `failed`, else [`Outcome::Done`].
    pub fn failed_if(failed: bool) -> Self {
        if failed {
            Outcome::Failed
        } else {
            Outcome::Done
        }
    }
}

/// An error found in the user's input (exit status 65).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The table below in words, shown at the end of `billingctl --help`.
pub const SUMMARY: &str = "Exit status: 0 done, 1 failed, 3 something needs a person \
    (reconciliation gaps, unmatched transfers, a broken hash chain), 64 bad argument, 65 bad \
    input file, 69 a service is unreachable or too slow, 77 no token or a too narrow role.";

/// `EX_DATAERR`.
const EXIT_DATA: u8 = 65;
/// Not in sysexits.h: the command worked and found something for a person.
const EXIT_ATTENTION: u8 = billing_runtime::error::EXIT_ATTENTION;

/// The exit status of a run, and a hint at the fix (`{urls}` stands for the services' addresses):
///
/// | status | meaning | from |
/// |-------:|---------|------|
/// | 0  | done | [`Outcome::Done`] (also `--help` and `--version`); the reader closed standard output early ([`stdout_failed`]) |
/// | 1  | failed | [`Outcome::Failed`]; an error not listed below (an invalid address); gRPC `NotFound`, `AlreadyExists`, `FailedPrecondition`, `Internal` and codes not listed |
/// | 3  | something needs a person | [`Outcome::NeedsAttention`]: reconciliation gaps, unmatched transfers, a broken hash chain, a failed SimplyBook check; gRPC `DataLoss` (a chain holding a value the ledger never writes) |
/// | 64 | bad argument (`EX_USAGE`) | clap refused the command line (`parse_or_exit` exits before this); gRPC `InvalidArgument` |
/// | 65 | bad input (`EX_DATAERR`) | an [`InputError`] anywhere in the error's chain (checked first): a file that cannot be read or parsed |
/// | 69 | unreachable or too slow (`EX_UNAVAILABLE`) | gRPC `Unavailable`, `ResourceExhausted`, `DeadlineExceeded`, `Cancelled` (`--timeout-secs` ran out); with a hint |
/// | 77 | no token or a too narrow role (`EX_NOPERM`) | no token configured; gRPC `Unauthenticated`, `PermissionDenied`; with a hint |
///
/// gRPC codes map through the workspace's one table, [`ErrorCode`].
/// The first gRPC status in the error's chain decides. [`SUMMARY`] says the same for `--help`.
pub fn status(result: &anyhow::Result<Outcome>) -> (u8, Option<&'static str>) {
    let err = match result {
        Ok(Outcome::Done) => return (0, None),
        Ok(Outcome::Failed) => return (1, None),
        Ok(Outcome::NeedsAttention) => return (EXIT_ATTENTION, None),
        Err(err) => err,
    };
    if err
        .chain()
        .any(|c| c.downcast_ref::<InputError>().is_some())
    {
        return (EXIT_DATA, None);
    }
    let Some(status) = err.chain().find_map(|c| c.downcast_ref::<tonic::Status>()) else {
        return (1, None);
    };
    let hint = match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            Some("the call took longer than --timeout-secs (BILLINGCTL_TIMEOUT_SECS) allows")
        }
        tonic::Code::Unavailable => Some(
            "is the service running at the address used? ({urls}; set with --ledger-url, --invoicing-url, --notifier-url or BILLINGCTL_*_URL)",
        ),
        tonic::Code::Unauthenticated => {
            Some("set BILLINGCTL_TOKEN (or --token) to a token the services accept")
        }
        tonic::Code::PermissionDenied => {
            Some("this needs a token with a wider role (viewer < billing < admin)")
        }
        _ => None,
    };
    (ErrorCode::from_grpc(status.code()).exit_status(), hint)
}

/// Ends the run: an error and its hint on stderr (`urls` in place of `{urls}`), then the exit
/// status from [`status`].
pub fn finish(result: anyhow::Result<Outcome>, urls: &str) -> ExitCode {
    let (code, hint) = status(&result);
    if let Err(err) = &result {
        eprintln!("billingctl: {}", describe(err));
        if let Some(hint) = hint {
            eprintln!("hint: {}", hint.replace("{urls}", urls));
        }
    }
    ExitCode::from(code)
}

/// Ends the run at once because writing to standard output failed: `billingctl` has no other
/// use for its output, and a `println!` would panic (exit status 101, a panic message).
///
/// A reader that went away (a closed pipe, `EPIPE`: `billingctl … | head -1`, a pager quit before
/// the end) ends it quietly with status 0, as ripgrep does, rather than by the SIGPIPE
/// convention (killed by the signal, 141 in a shell) as git does. Why 0: the reader stopping is
/// its choice, not a failure of the command, and with `set -o pipefail` a 141 would fail a script
/// that only wanted the first lines. By the time anything is printed every command has made its
/// calls (an export stops fetching pages here), so only unread output is lost; the status a
/// command would have ended with (1 or 3) is lost too, so judge a run by its status with the
/// whole output read or redirected to a file. (Dying by the real signal is not available either:
/// Rust ignores SIGPIPE, and restoring it takes `unsafe` code, which this workspace forbids.)
///
/// Any other failure (a full disk behind `> file`) is one line on stderr and status 1.
pub fn stdout_failed(err: &std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Ignored if stderr is gone as well: there is nowhere left to say it.
    let _ = writeln!(
        std::io::stderr(),
        "billingctl: writing to standard output: {err}"
    );
    std::process::exit(1);
}

/// The error chain in words, a gRPC status shown by its message (not its debug dump).
fn describe(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            parts.push(format!("{} ({:?})", status.message(), status.code()));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc(code: tonic::Code) -> anyhow::Result<Outcome> {
        Err(anyhow::Error::new(tonic::Status::new(code, "no")).context("calling"))
    }

    #[test]
    fn the_table() {
        let code = |result: anyhow::Result<Outcome>| status(&result).0;
        assert_eq!(code(Ok(Outcome::Done)), 0);
        assert_eq!(code(Ok(Outcome::Failed)), 1);
        assert_eq!(code(Ok(Outcome::NeedsAttention)), 3);
        assert_eq!(code(Err(anyhow::anyhow!("invalid service address"))), 1);
        assert_eq!(code(grpc(tonic::Code::InvalidArgument)), 64);
        assert_eq!(
            code(Err(
                anyhow::Error::new(InputError("bad".into())).context("reading")
            )),
            65
        );
        assert_eq!(code(grpc(tonic::Code::Unavailable)), 69);
        assert_eq!(code(grpc(tonic::Code::DeadlineExceeded)), 69);
        assert_eq!(
            code(grpc(tonic::Code::Cancelled)),
            69,
            "the client's timeout"
        );
        assert_eq!(code(grpc(tonic::Code::ResourceExhausted)), 69);
        assert_eq!(code(grpc(tonic::Code::DataLoss)), 3);
        assert_eq!(code(grpc(tonic::Code::Unauthenticated)), 77);
        assert_eq!(code(grpc(tonic::Code::PermissionDenied)), 77);
        assert_eq!(code(grpc(tonic::Code::NotFound)), 1);
        assert_eq!(code(grpc(tonic::Code::Internal)), 1);
    }

    #[test]
    fn a_grpc_status_is_described_by_its_message() {
        let err = grpc(tonic::Code::NotFound).expect_err("an error");
        assert_eq!(describe(&err), "calling: no (NotFound)");
    }
}
