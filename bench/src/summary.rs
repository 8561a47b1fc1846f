//! One line of JSON per headline figure, appended to the file `BENCH_SUMMARY` names (set by
//! `bench/run.sh report`), for `bench-report` to turn into `bench/RESULTS.md`. Each figure
//! carries the ceiling it is judged against: a bound measured in the same run, a probe of this
//! machine from docs/performance.md, or a goal, and says which.

use std::io::Write;

pub struct Figure<'a> {
    pub bench: &'a str,
    pub figure: &'a str,
    pub value: f64,
    pub unit: &'a str,
    pub ceiling: f64,
    /// Where the ceiling comes from.
    pub ceiling_source: &'a str,
    /// Throughputs: value / ceiling. Times and latencies: ceiling / value.
    pub higher_is_better: bool,
}

/// Appends `f` to the summary file, when there is one.
pub fn record(f: &Figure<'_>) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("BENCH_SUMMARY") else {
        return Ok(());
    };
    let ratio = if f.higher_is_better {
        f.value / f.ceiling
    } else {
        f.ceiling / f.value
    };
    let line = serde_json::json!({
        "bench": f.bench, "figure": f.figure, "value": f.value, "unit": f.unit,
        "ceiling": f.ceiling, "ceiling_source": f.ceiling_source, "ratio": ratio,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    Ok(())
}
