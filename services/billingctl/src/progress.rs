//! A one-line progress indicator on stderr for long runs, shown only when stderr is a terminal
//! (scripts and CronJobs get clean output).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    shown: bool,
    enabled: bool,
    last: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: Option<u64>) -> Self {
        Progress {
            what,
            total,
            shown: false,
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now() - Duration::from_secs(1),
        }
    }

    /// Shows `done` (at most ten times a second).
    pub fn set(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let mut err = std::io::stderr().lock();
        let _ = match self.total {
            Some(total) if total > 0 => {
                const WIDTH: u64 = 30;
                let filled = (done.min(total) * WIDTH / total) as usize;
                write!(
                    err,
                    "\r[{}{}] {done}/{total} {}",
                    "=".repeat(filled),
                    " ".repeat(WIDTH as usize - filled),
                    self.what
                )
            }
            _ => write!(err, "\r{done} {}", self.what),
        };
        let _ = err.flush();
    }

    /// Ends the line, if one was drawn.
    pub fn done(self) {
        if self.shown {
            eprintln!();
        }
    }
}
