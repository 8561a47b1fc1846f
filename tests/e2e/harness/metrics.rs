//! One service's `/metrics` page, read since the test system started.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One service's `/metrics` page ([`System::metrics`](super::System::metrics)).
pub struct Metrics {
    pub(super) page: String,
    pub(super) samples: BTreeMap<String, f64>,
    pub(super) at_start: Arc<BTreeMap<String, f64>>,
}

impl Metrics {
    /// The value of `series` (its name and labels as the page prints them, e.g.
    /// `ingest_webhooks_accepted_total{source="simplybook"}`) as the page shows it: what to read
    /// of a gauge.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// What the counter `series` (or a histogram's `_count` or `_sum`) counted since the
    /// system started: its value less the process's when the system started (0 if it had none
    /// then). In a process of its own, the value itself. `None` when the page lacks the series.
    pub fn since_start(&self, series: &str) -> Option<f64> {
        let before = self.at_start.get(series).copied().unwrap_or(0.0);
        Some(self.value(series)? - before)
    }

    pub fn text(&self) -> &str {
        &self.page
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.page)
    }
}

/// Every sample of a Prometheus text page: the series as printed, and its value.
pub(super) fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}
