//! TEST ONLY: a crash between a batch's commit and its acks, for the fault suite
//! (`bench/run.sh faults --scenarios kill-ledger`), which must show that a ledger dying there
//! leaves nothing lost and nothing applied twice. A kill from outside rarely lands in that window.
//!
//! It exists only in debug builds (`cfg(debug_assertions)`): release builds, which every image and
//! deployment runs (`deploy/Dockerfile` builds `--release`), do not contain it, whatever their
//! environment says. In a debug build it also needs `LEDGER_TEST_FAULT_CRASH_AFTER_COMMIT_FILE`,
//! a path: once a file exists there, the next batch that commits aborts the process before any
//! of its messages is acked.

/// Aborts the process if the test's trigger file exists (debug builds only).
#[cfg(debug_assertions)]
#[allow(clippy::print_stderr)]
pub(super) fn crash_after_commit(events: usize, first_seq: u64, last_seq: u64) {
    let Some(path) = std::env::var_os("LEDGER_TEST_FAULT_CRASH_AFTER_COMMIT_FILE") else {
        return;
    };
    if std::path::Path::new(&path).exists() {
        eprintln!(
            "LEDGER_TEST_FAULT: aborting after committing a batch of {events} events \
             (stream seq {first_seq}..{last_seq}), before acking any of them"
        );
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub(super) fn crash_after_commit(_events: usize, _first_seq: u64, _last_seq: u64) {}
