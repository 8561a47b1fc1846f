//! `billingctl simplybook check`: the go-live check of a tenant's SimplyBook account, run by the
//! ledger (which holds the tenant's credentials) against the live account. Prints each call and
//! whether it worked; `--save-fixtures DIR` writes the raw answers, client details masked, so a
//! real account's shapes can be compared with (or become) `tests/fixtures/simplybook/`.

use std::path::PathBuf;

use anyhow::Context as _;
use billing_proto::ledger::{CheckSimplyBookRequest, SimplyBookCheck};

use crate::clients::Conn;
use crate::exit::Outcome;
use crate::output::{self, Table, last, left, outln};

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

/// One line a call: its result, step, method and what came back. No header.
const CHECKS: Table<4> = Table::indented(
    "  ",
    [
        left("RESULT", 8),
        left("STEP", 18),
        left("METHOD", 18),
        last("DETAIL"),
    ],
);

/// Runs the command; needs attention when a call failed.
pub async fn run(conn: &Conn, json: bool, cmd: SimplybookCmd) -> anyhow::Result<Outcome> {
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
    let check_json = |c: &SimplyBookCheck| {
        serde_json::json!({"step": c.step, "method": c.method, "result": c.result,
            "detail": c.detail})
    };
    output::print_list(json, &checks, check_json, |checks| {
        outln!("SimplyBook account of tenant {tenant}:");
        for c in checks {
            CHECKS.row([&c.result.to_uppercase(), &c.step, &c.method, &c.detail]);
        }
    })?;
    Ok(Outcome::attention_unless(ok))
}
