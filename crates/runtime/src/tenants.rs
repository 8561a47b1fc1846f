//! The tenants as their files say now. Ingest, the ledger and invoicing read the same tenants
//! file (and each its own secrets file); each re-reads it when its content changes, so a tenant
//! added or changed (`billingctl tenants onboard`, or a Kubernetes Secret update) is in force
//! without a restart. A file that does not parse is refused with an error and the tenants
//! already in force stay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use billing_domain::Tenants;
use billing_domain::tenant::TenantsError;
use tokio::sync::watch;

use crate::Shutdown;

/// The least time between two reloads asked for by a lookup that missed ([`LiveTenants::refresh`]),
/// so a flood of events for an unknown tenant reads the files at most this often.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files are as they were (or could not be read: the tenants in force stay).
    Unchanged,
    /// They changed and now hold this many tenants, in force from now.
    Reloaded(usize),
    /// They changed and do not parse; the tenants in force stay.
    Invalid(TenantsError),
}

/// The tenants in force, swapped whole when the files change.
#[derive(Clone)]
pub struct LiveTenants(Arc<Inner>);

struct Inner {
    /// The service, for the `tenants_reloads_total` counter.
    service: &'static str,
    /// `None` for tenants fixed at construction (tests, tools): nothing to re-read.
    files: Option<Files>,
    current: RwLock<Arc<Tenants>>,
    changes: watch::Sender<u64>,
}

struct Files {
    profile: PathBuf,
    secrets: Option<PathBuf>,
    /// The bytes last loaded (or refused), and when a lookup last asked for a reload.
    seen: Mutex<Seen>,
    /// [`REFRESH_AT_MOST_EVERY`], but in tests.
    refresh_every: Duration,
}

struct Seen {
    bytes: Option<FileBytes>,
    refreshed: Option<Instant>,
}

type FileBytes = (Vec<u8>, Option<Vec<u8>>);

impl LiveTenants {
    /// Loads the tenants file at `profile` with `secrets` merged in; an error names the file.
    pub fn load(
        service: &'static str,
        profile: &Path,
        secrets: Option<&Path>,
    ) -> Result<Self, TenantsError> {
        let files = Files {
            profile: profile.to_path_buf(),
            secrets: secrets.map(Path::to_path_buf),
            seen: Mutex::new(Seen {
                bytes: None,
                refreshed: None,
            }),
            refresh_every: REFRESH_AT_MOST_EVERY,
        };
        let bytes = files.read();
        let tenants = Tenants::load_with_secrets(profile, secrets)?;
        lock(&files.seen).bytes = bytes;
        Ok(Self::new(service, Some(files), tenants))
    }

    /// Tenants that never change.
    pub fn fixed(service: &'static str, tenants: Tenants) -> Self {
        Self::new(service, None, tenants)
    }

    fn new(service: &'static str, files: Option<Files>, tenants: Tenants) -> Self {
        for result in ["ok", "invalid"] {
            metrics::counter!("tenants_reloads_total", "service" => service, "result" => result)
                .increment(0);
        }
        Self(Arc::new(Inner {
            service,
            files,
            current: RwLock::new(Arc::new(tenants)),
            changes: watch::Sender::new(0),
        }))
    }

    /// The tenants in force now. Hold the `Arc` for the length of one piece of work, so it
    /// sees one version of the files throughout.
    pub fn current(&self) -> Arc<Tenants> {
        match self.0.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes whenever new tenants come into force (its value counts the reloads).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    /// Reads the files and, when their content changed and parses, puts it in force.
    pub fn reload(&self) -> Reload {
        let Some(files) = &self.0.files else {
            return Reload::Unchanged;
        };
        let mut seen = lock(&files.seen);
        let bytes = files.read();
        if bytes.is_none() || bytes == seen.bytes {
            return Reload::Unchanged;
        }
        seen.bytes = bytes;
        let service = self.0.service;
        match Tenants::load_with_secrets(&files.profile, files.secrets.as_deref()) {
            Ok(tenants) => {
                let count = tenants.iter().count();
                match self.0.current.write() {
                    Ok(mut guard) => *guard = Arc::new(tenants),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(tenants),
                }
                drop(seen);
                self.0.changes.send_modify(|n| *n += 1);
                metrics::counter!("tenants_reloads_total", "service" => service, "result" => "ok")
                    .increment(1);
                tracing::info!(tenants = count, "tenants file changed: reloaded");
                Reload::Reloaded(count)
            }
            Err(err) => {
                metrics::counter!("tenants_reloads_total", "service" => service, "result" => "invalid")
                    .increment(1);
                tracing::error!(error = %err, "tenants file changed but is invalid; keeping the tenants in force");
                Reload::Invalid(err)
            }
        }
    }

    /// A reload asked for by a lookup that found no tenant: at most once a second, so a tenant
    /// added a moment ago is found before the next periodic look. Returns whether new tenants
    /// came into force.
    pub fn refresh(&self) -> bool {
        let Some(files) = &self.0.files else {
            return false;
        };
        {
            // Never wait on the request path: a reload in progress (the periodic one, or another
            // lookup's) is as good as this one.
            let Ok(mut seen) = files.seen.try_lock() else {
                return false;
            };
            let now = Instant::now();
            if seen
                .refreshed
                .is_some_and(|at| now.duration_since(at) < files.refresh_every)
            {
                return false;
            }
            seen.refreshed = Some(now);
        }
        matches!(self.reload(), Reload::Reloaded(_))
    }

    /// Looks at the files every `every` until `shutdown`.
    pub async fn watch(self, every: Duration, shutdown: Shutdown) {
        if self.0.files.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            // Reading a file is quick but blocking; keep it off the runtime's workers.
            let this = self.clone();
            if tokio::task::spawn_blocking(move || this.reload())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

impl Files {
    /// Both files' bytes, or `None` when one cannot be read (a Secret being swapped).
    fn read(&self) -> Option<FileBytes> {
        let profile = std::fs::read(&self.profile).ok()?;
        let secrets = match &self.secrets {
            Some(path) => Some(std::fs::read(path).ok()?),
            None => None,
        };
        Some((profile, secrets))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> String {
        format!(
            r#"{{"id":"{id}","name":"{id}","billing_email":"{id}@example.test","currency":"AUD"}}"#
        )
    }

    fn write(path: &Path, ids: &[&str]) {
        let list: Vec<String> = ids.iter().map(|id| tenant(id)).collect();
        std::fs::write(path, format!(r#"{{"tenants":[{}]}}"#, list.join(","))).expect("write");
    }

    #[test]
    fn a_changed_file_is_in_force_after_a_reload_and_a_broken_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("live-tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tenants.json");
        write(&path, &["a"]);
        let mut live = LiveTenants::load("test", &path, None).expect("load");
        // Longer than the test can take, so the second refresh below is inside it.
        if let Some(inner) = Arc::get_mut(&mut live.0)
            && let Some(files) = &mut inner.files
        {
            files.refresh_every = Duration::from_secs(3600);
        }
        let mut changes = live.changes();
        assert!(live.current().get("b").is_none());
        assert!(matches!(live.reload(), Reload::Unchanged));

        write(&path, &["a", "b"]);
        assert!(matches!(live.reload(), Reload::Reloaded(2)));
        assert!(live.current().get("b").is_some());
        assert!(changes.has_changed().expect("open"));
        changes.mark_unchanged();

        std::fs::write(&path, "{not json").expect("write");
        assert!(matches!(live.reload(), Reload::Invalid(_)));
        assert!(
            live.current().get("b").is_some(),
            "the tenants in force stay"
        );
        assert!(!changes.has_changed().expect("open"));
        // The same broken bytes are not reported again.
        assert!(matches!(live.reload(), Reload::Unchanged));

        write(&path, &["c"]);
        assert!(live.refresh(), "a lookup that missed reloads at once");
        assert!(live.current().get("c").is_some());
        write(&path, &["d"]);
        assert!(!live.refresh(), "but not twice within refresh_every");
        std::fs::remove_dir_all(&dir).ok();
    }
}
