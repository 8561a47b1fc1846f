//! Every metric describes itself: HELP text and a unit, registered once at start-up, so that
//! `/metrics` says what each series means and `promtool check metrics` finds nothing to flag.
//!
//! The runtime's own metrics are described by [`describe`] (called by
//! [`crate::ops::prometheus`] when it installs the recorder); each service describes its own in
//! `services/<svc>/src/metrics.rs`, whose `describe` its `run` calls right after
//! [`crate::ops::prometheus`]. A description given before the recorder exists is lost.
//!
//! Names carry their unit the Prometheus way (`_seconds`, `_bytes`; counters end in `_total`)
//! and the unit given with each description agrees with the name ([`naming_problems`]), so the
//! exporter's optional unit suffix, which stays off, would change no name. [`check`] compares
//! what a crate's sources emit with what its `describe` registers; each crate's unit test runs
//! it, so a metric added without a description, or a description left behind by a renamed
//! metric, fails the tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    describe_counter, describe_gauge, describe_histogram,
};

/// Describes the metrics the runtime itself emits, on every service.
pub fn describe() {
    describe_histogram!(
        "grpc_server_seconds",
        Unit::Seconds,
        "Time a gRPC call took to answer, per method (rpc: the full method path; unknown for a path that is not one of ours)."
    );
    describe_counter!(
        "grpc_auth_refusals_total",
        Unit::Count,
        "gRPC calls refused by bearer-token authentication, per reason (unauthenticated: no or an unknown token; permission_denied: the token's role may not call the method)."
    );
    describe_histogram!(
        "http_server_seconds",
        Unit::Seconds,
        "Time an HTTP request took to answer, per route template (never the raw path) and status code."
    );
    describe_gauge!(
        "nats_consumer_pending_messages",
        Unit::Count,
        "Messages on the stream not yet delivered to this durable consumer (its lag), per stream and consumer."
    );
    describe_gauge!(
        "nats_consumer_ack_pending_messages",
        Unit::Count,
        "Messages delivered to this durable consumer and not yet acknowledged, per stream and consumer."
    );
    describe_gauge!(
        "nats_consumer_redelivered_messages",
        Unit::Count,
        "Messages this durable consumer has had delivered more than once and not yet acknowledged, per stream and consumer."
    );
    describe_counter!(
        "nats_connections_lost_total",
        Unit::Count,
        "NATS connections lost (closed by the server, cut, or dropped after an unanswered probe), per client name; the client reconnects on its own."
    );
    describe_counter!(
        "nats_liveness_probes_total",
        Unit::Count,
        "Probes of the NATS connection sent when an acknowledgement did not come in time, per result: answered (the server is alive) or unanswered (the connection was dropped for a new one)."
    );
    describe_counter!(
        "tenants_reloads_total",
        Unit::Count,
        "Changes to the tenant files picked up, per service and result: ok (in force from then) or invalid (refused, the tenants in force kept)."
    );
    describe_counter!(
        "outbox_published_total",
        Unit::Count,
        "Outbox rows published to JetStream and marked published, per service."
    );
    describe_counter!(
        "outbox_failures_total",
        Unit::Count,
        "Outbox relay passes that failed (database or JetStream) and will be retried, per service; the rows stay in the outbox."
    );
    describe_counter!(
        "outbox_refused_total",
        Unit::Count,
        "Outbox rows whose subject the service may not publish to, never published, per service."
    );
}

/// The three kinds of metric the `metrics` facade knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Counter, Kind::Gauge, Kind::Histogram];

    /// The name of the facade's macro that emits it (`counter`, …), and Prometheus' type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric's description, as a `describe_*!` call gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub name: String,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: String,
}

/// A recorder that keeps the descriptions it is given and records nothing else.
#[derive(Default)]
struct Capture(Mutex<Vec<Description>>);

impl Capture {
    fn keep(&self, name: KeyName, kind: Kind, unit: Option<Unit>, help: SharedString) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Description {
                name: name.as_str().to_string(),
                kind,
                unit,
                help: help.to_string(),
            });
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.keep(key, Kind::Counter, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.keep(key, Kind::Gauge, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.keep(key, Kind::Histogram, unit, description);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// What `describe` describes, in order, without touching the process's recorder.
pub fn capture(describe: impl FnOnce()) -> Vec<Description> {
    let capture = Capture::default();
    metrics::with_local_recorder(&capture, describe);
    capture
        .0
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A metric a source file emits: `counter!("name", …)`, `gauge!(…)` or `histogram!(…)`, with or
/// without the `metrics::` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub name: String,
    pub kind: Kind,
    /// `file:line` of the call.
    pub at: String,
}

/// Every metric the `.rs` files under `src` emit. `Err` lists calls whose name is not a string
/// literal (they cannot be checked: give them one) and files that cannot be read.
pub fn emitted(src: &Path) -> Result<Vec<Emitted>, String> {
    let mut files = Vec::new();
    rust_files(src, &mut files).map_err(|e| format!("reading {}: {e}", src.display()))?;
    files.sort();
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let (f, p) = scan(&text, &file.display().to_string());
        found.extend(f);
        problems.extend(p);
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems.join("\n"))
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The metric-emitting macro calls in one file's text. Calls in `//` comments are skipped; a
/// `describe_counter!` is not a `counter!`.
fn scan(text: &str, file: &str) -> (Vec<Emitted>, Vec<String>) {
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    for kind in Kind::ALL {
        let call = format!("{}!", kind.as_str());
        for (at, _) in text.match_indices(&call) {
            let before = &text[..at];
            if before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            if before[line_start..].contains("//") {
                continue;
            }
            let line = before.matches('\n').count() + 1;
            let rest = text[at + call.len()..].trim_start();
            let Some(args) = rest.strip_prefix('(') else {
                continue; // the macro named in prose or a `use`
            };
            let name = args
                .trim_start()
                .strip_prefix('"')
                .and_then(|s| s.split_once('"'))
                .map(|(name, _)| name);
            match name {
                Some(name) => found.push(Emitted {
                    name: name.to_string(),
                    kind,
                    at: format!("{file}:{line}"),
                }),
                None => problems.push(format!(
                    "{file}:{line}: a {kind} whose name is not a string literal (it cannot be \
                     checked against the descriptions)"
                )),
            }
        }
    }
    found.sort_by(|a, b| (&a.name, &a.at).cmp(&(&b.name, &b.at)));
    (found, problems)
}

/// What Prometheus' conventions (and `promtool check metrics`) would say about a description:
/// a snake_case name; counters, and only counters, end in `_total`; no name ends in a suffix
/// histograms add; no type in the name; a unit, Prometheus' base unit (count, seconds, bytes),
/// and the name ends in it (before `_total`) unless it is a count.
pub fn naming_problems(d: &Description) -> Vec<String> {
    const UNIT_WORDS: [&str; 12] = [
        "seconds",
        "bytes",
        "milliseconds",
        "microseconds",
        "nanoseconds",
        "ms",
        "secs",
        "minutes",
        "hours",
        "days",
        "kilobytes",
        "megabytes",
    ];
    let name = d.name.as_str();
    let mut problems = Vec::new();
    let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !snake {
        problems.push(format!("{name}: not a snake_case name"));
    }
    let base = match (d.kind, name.strip_suffix("_total")) {
        (Kind::Counter, Some(base)) => base,
        (Kind::Counter, None) => {
            problems.push(format!("{name}: a counter's name ends in _total"));
            name
        }
        (kind, Some(_)) => {
            problems.push(format!("{name}: a {kind}'s name does not end in _total"));
            name
        }
        (_, None) => name,
    };
    for reserved in ["_count", "_sum", "_bucket"] {
        if base.ends_with(reserved) {
            problems.push(format!("{name}: {reserved} is added by histograms"));
        }
    }
    for kind in ["counter", "gauge", "histogram", "summary"] {
        if name.split('_').any(|w| w == kind) {
            problems.push(format!("{name}: the type ({kind}) is not part of a name"));
        }
    }
    let unit_word = base.rsplit('_').next().unwrap_or_default();
    match d.unit {
        None => problems.push(format!(
            "{name}: no unit (Unit::Count for a number of things)"
        )),
        Some(Unit::Count) if UNIT_WORDS.contains(&unit_word) => problems.push(format!(
            "{name}: described as a count, but the name says {unit_word}"
        )),
        Some(Unit::Count) => {}
        Some(unit @ (Unit::Seconds | Unit::Bytes)) if unit_word != unit.as_str() => {
            problems.push(format!(
                "{name}: in {}, so its name ends in _{}",
                unit.as_str(),
                unit.as_str()
            ))
        }
        Some(Unit::Seconds | Unit::Bytes) => {}
        Some(unit) => problems.push(format!(
            "{name}: {} is not a Prometheus base unit (count, seconds, bytes)",
            unit.as_str()
        )),
    }
    if d.help.trim().is_empty() {
        problems.push(format!("{name}: no help text"));
    }
    problems
}

/// Checks one crate: every metric its sources under `src` emit is described by `describe` as
/// the same kind, everything `describe` describes is emitted there, nothing is described twice,
/// and every description follows [`naming_problems`]. Returns the descriptions, or every
/// problem found, one a line.
pub fn check(src: &Path, describe: impl FnOnce()) -> Result<Vec<Description>, String> {
    let described = capture(describe);
    let emitted = emitted(src)?;
    let mut problems = Vec::new();
    for e in &emitted {
        match described.iter().find(|d| d.name == e.name) {
            None => problems.push(format!(
                "{}: {} {} has no description (describe it in this crate's describe())",
                e.at, e.kind, e.name
            )),
            Some(d) if d.kind != e.kind => problems.push(format!(
                "{}: {} is emitted as a {} but described as a {}",
                e.at, e.name, e.kind, d.kind
            )),
            Some(_) => {}
        }
    }
    for (i, d) in described.iter().enumerate() {
        if !emitted.iter().any(|e| e.name == d.name) {
            problems.push(format!(
                "{} is described but nothing under {} emits it (renamed or removed?)",
                d.name,
                src.display()
            ));
        }
        if described[..i].iter().any(|earlier| earlier.name == d.name) {
            problems.push(format!("{} is described twice", d.name));
        }
        problems.extend(naming_problems(d));
    }
    if problems.is_empty() {
        Ok(described)
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(name: &str, kind: Kind, unit: Option<Unit>) -> Description {
        Description {
            name: name.into(),
            kind,
            unit,
            help: "what it counts".into(),
        }
    }

    #[test]
    fn every_runtime_metric_is_described_and_well_named() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let described = check(&src, describe).unwrap_or_else(|problems| panic!("{problems}"));
        assert_eq!(described.len(), 12);
    }

    #[test]
    fn the_scanner_finds_literal_names_across_lines_and_refuses_others() {
        // Built at run time, so that this file's own text holds no call the check would find.
        let text = [
            "metrics::COUNTER!(\"a_total\", \"k\" => v).increment(1);",
            "GAUGE!(\n    \"b_things\",\n    \"tenant\" => t\n).set(1.0);",
            "metrics::describe_COUNTER!(\"c_total\", \"not emitted\");",
            "// metrics::COUNTER!(\"commented_total\")",
            "The `HISTOGRAM!` macro named in prose.",
            "metrics::HISTOGRAM!(name).record(1.0);",
        ]
        .join("\n")
        .replace("COUNTER", "counter")
        .replace("GAUGE", "gauge")
        .replace("HISTOGRAM", "histogram");
        let (found, problems) = scan(&text, "x.rs");
        let found: Vec<_> = found
            .iter()
            .map(|e| (e.name.as_str(), e.kind, e.at.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("a_total", Kind::Counter, "x.rs:1"),
                ("b_things", Kind::Gauge, "x.rs:2"),
            ]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("x.rs:9: a histogram"),
            "{problems:?}"
        );
    }

    #[test]
    fn names_that_break_prometheus_conventions_are_named() {
        let cases = [
            (
                described("x_requests", Kind::Counter, Some(Unit::Count)),
                "ends in _total",
            ),
            (
                described("x_open_total", Kind::Gauge, Some(Unit::Count)),
                "does not end in _total",
            ),
            (
                described("x_latency", Kind::Histogram, Some(Unit::Seconds)),
                "ends in _seconds",
            ),
            (
                described("x_latency_ms", Kind::Histogram, Some(Unit::Milliseconds)),
                "not a Prometheus base unit",
            ),
            (
                described("x_wait_seconds", Kind::Gauge, Some(Unit::Count)),
                "the name says seconds",
            ),
            (described("x_things", Kind::Gauge, None), "no unit"),
            (
                described("x_rows_count", Kind::Gauge, Some(Unit::Count)),
                "added by histograms",
            ),
            (
                described("xRequests_total", Kind::Counter, Some(Unit::Count)),
                "snake_case",
            ),
            (
                described("x_counter_total", Kind::Counter, Some(Unit::Count)),
                "the type",
            ),
            (
                described("x_sent_bytes_total", Kind::Counter, Some(Unit::Seconds)),
                "ends in _seconds",
            ),
        ];
        for (d, expected) in cases {
            let problems = naming_problems(&d);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{}: {problems:?} does not say {expected:?}",
                d.name
            );
        }
        let fine = [
            described("x_sent_bytes_total", Kind::Counter, Some(Unit::Bytes)),
            described("x_busy_seconds_total", Kind::Counter, Some(Unit::Seconds)),
            described(
                "x_last_success_timestamp_seconds",
                Kind::Gauge,
                Some(Unit::Seconds),
            ),
            described("x_unpaid_48h_invoices", Kind::Gauge, Some(Unit::Count)),
        ];
        for d in fine {
            assert_eq!(naming_problems(&d), Vec::<String>::new(), "{}", d.name);
        }
        let mut silent = described("x_total", Kind::Counter, Some(Unit::Count));
        silent.help = " ".into();
        assert!(
            naming_problems(&silent)
                .iter()
                .any(|p| p.contains("no help text"))
        );
    }

    #[test]
    fn a_missing_a_stale_and_a_mistyped_description_fail_the_check() {
        let dir = std::env::temp_dir().join(format!("metric-docs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("temp dir");
        let emit = |kind: &str, name: &str| format!("metrics::{kind}!(\"{name}\").increment(1);\n");
        std::fs::write(dir.join("a.rs"), emit("counter", "x_done_total")).expect("write");
        std::fs::write(
            dir.join("sub").join("b.rs"),
            emit("counter", "x_undescribed_total") + &emit("gauge", "x_open_things"),
        )
        .expect("write");
        let result = check(&dir, || {
            describe_counter!("x_done_total", Unit::Count, "done");
            describe_counter!("x_open_things", Unit::Count, "open");
            describe_counter!("x_gone_total", Unit::Count, "renamed");
        });
        std::fs::remove_dir_all(&dir).ok();
        let problems = result.expect_err("problems");
        for expected in [
            "x_undescribed_total has no description",
            "x_open_things is emitted as a gauge but described as a counter",
            "x_gone_total is described but nothing",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
        assert_eq!(problems.lines().count(), 4, "{problems}"); // and x_open_things lacks _total
    }
}
