//! `billingctl simplybook check`: the go-live check of a tenant's SimplyBook account, run by the
//! ledger (which holds the tenant's credentials) against the live account. Prints each call and
//! whether it worked; `--save-fixtures DIR` writes the raw answers, client details masked, so a
//! real account's shapes can be compared with (or become) `tests/fixtures/simplybook/`.

use std::path::PathBuf;

use anyhow::Context as _;
use billing_proto::ledger::CheckSimplyBookRequest;

use crate::Conn;

#[derive(clap::Subcommand)]
pub enum SimplybookCmd {
    /// Calls the tenant's live SimplyBook account as the ledger will (API domain, services,
    /// admin login and a day's bookings, the latest booking's details, the company's time zone)
    /// and says what works. Exits 3 when a call failed. Needs an admin token.
    Check {
        #[arg(long)]
        tenant: String,
        /// Write each raw answer (client names, emails, phones and comments masked) to
        /// DIR/<step>.json.
        #[arg(long, value_name = "DIR")]
        save_fixtures: Option<PathBuf>,
    },
}

/// Runs the command; true when nothing failed.
pub async fn run(conn: &Conn, json: bool, cmd: SimplybookCmd) -> anyhow::Result<bool> {
    let SimplybookCmd::Check {
        tenant,
        save_fixtures,
    } = cmd;
    let checks = conn
        .ledger()?
        .check_simply_book(CheckSimplyBookRequest {
            tenant_id: tenant.clone(),
            raw_answers: save_fixtures.is_some(),
        })
        .await
        .context("checking the tenant's SimplyBook account")?
        .into_inner()
        .checks;
    let ok = checks.iter().all(|c| c.result != "failed");
    if let Some(dir) = &save_fixtures {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for c in checks.iter().filter(|c| !c.raw.is_empty()) {
            let path = dir.join(format!("{}.json", c.step));
            std::fs::write(&path, format!("{}\n", c.raw))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} ({})", path.display(), c.method);
        }
    }
    if json {
        let rows: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({"step": c.step, "method": c.method, "result": c.result,
                    "detail": c.detail})
            })
            .collect();
        crate::print_json(&rows)?;
        return Ok(ok);
    }
    println!("SimplyBook account of tenant {tenant}:");
    for c in &checks {
        println!(
            "  {:<8} {:<18} {:<18} {}",
            c.result.to_uppercase(),
            c.step,
            c.method,
            c.detail
        );
    }
    Ok(ok)
}
