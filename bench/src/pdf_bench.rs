//! Invoice PDF rendering speed: a synthetic invoice of `--lines` lines (an adjustment every 25th)
//! rendered `--rounds` times on one core, as the notifier does on its blocking pool.
//! `--out` keeps the long PDF; `--sample` writes a short, realistic invoice (the one whose first
//! page is in `docs/`).
#![allow(clippy::print_stdout)]

mod summary;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use billing_testkit::invoices::sample_invoice;
use clap::Parser;
use notifier::pdf::{self, Issuer};
use rust_decimal::Decimal;

#[derive(Parser)]
#[command(name = "pdf-bench", about = "Times invoice PDF rendering")]
struct Args {
    #[arg(long, default_value_t = 2000)]
    lines: usize,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Write the long invoice's PDF here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write a short sample invoice (10% tax, one adjustment, bank transfer) here and exit.
    #[arg(long)]
    sample: Option<PathBuf>,
}

fn issuer() -> Issuer {
    Issuer {
        legal_name: "Example Booking Platform Pty Ltd".into(),
        address: "Level 4, 100 Example Street\nSydney NSW 2000\nAustralia".into(),
        tax_id: "ABN 00 000 000 000 (example)".into(),
        email: "billing@platform.example".into(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = args.sample {
        let rendered = pdf::render(&sample_invoice(12, Decimal::new(10, 2)), &issuer())?;
        std::fs::write(&path, &rendered.bytes)?;
        println!("sample: {} ({} pages)", path.display(), rendered.pages);
        return Ok(());
    }
    let inv = sample_invoice(args.lines, Decimal::ZERO);
    let issuer = issuer();
    let mut times: Vec<Duration> = Vec::with_capacity(args.rounds);
    let mut last = None;
    for _ in 0..args.rounds.max(1) {
        let started = Instant::now();
        let rendered = pdf::render(&inv, &issuer)?;
        times.push(started.elapsed());
        last = Some(rendered);
    }
    times.sort();
    let rendered = last.ok_or_else(|| anyhow::anyhow!("no round ran"))?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "pdf: {} lines, {} pages, {} KiB; render min {:.1} ms, median {:.1} ms, max {:.1} ms ({} rounds)",
        args.lines,
        rendered.pages,
        rendered.bytes.len() / 1024,
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
    summary::record(&summary::Figure {
        bench: "pdf",
        figure: &format!(
            "{}-line invoice ({} pages) rendered, median",
            args.lines, rendered.pages
        ),
        value: ms(times[times.len() / 2]),
        unit: "ms",
        ceiling: 1000.0,
        ceiling_source: "goal (one core, as the notifier renders on its blocking pool)",
        higher_is_better: false,
    })?;
    if let Some(path) = args.out {
        std::fs::write(&path, &rendered.bytes)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
