//! Whether a test system shares the process with others or runs alone in it.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::watch;

/// Whose services run in this process now: systems sharing it, or one alone.
#[derive(Debug, Default)]
struct Occupancy {
    sharing: usize,
    alone: bool,
}

static OCCUPANCY: LazyLock<watch::Sender<Occupancy>> =
    LazyLock::new(|| watch::Sender::new(Occupancy::default()));

/// A system's place in the process, shared or alone
/// ([`Builder::alone`](super::builder::Builder::alone)); given up when the system is dropped. A
/// system that shares waits while one is alone; one alone waits until no other runs (systems
/// that share may start meanwhile, so a test holding one never waits for itself).
pub(super) struct Occupant {
    alone: bool,
}

impl Occupant {
    pub(super) async fn enter(alone: bool) -> Self {
        let mut changed = OCCUPANCY.subscribe();
        loop {
            let entered = OCCUPANCY.send_if_modified(|now| {
                let free = !now.alone && (!alone || now.sharing == 0);
                if free && alone {
                    now.alone = true;
                } else if free {
                    now.sharing += 1;
                }
                free
            });
            if entered {
                return Occupant { alone };
            }
            if changed.changed().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for Occupant {
    fn drop(&mut self) {
        OCCUPANCY.send_modify(|now| {
            if self.alone {
                now.alone = false;
            } else {
                now.sharing = now.sharing.saturating_sub(1);
            }
        });
    }
}
