//! `billingctl tenants onboard`: a new tenant, end to end, without restarting anything. It
//! writes the tenant into the tenant files every service re-reads (with a callback token and a
//! webhook secret made here), creates its billing profile in invoicing, prints the callback URL
//! to paste into SimplyBook once, and watches the ledger's audit log until the first callback
//! arrives.
//!
//! The files are the deployment's own (the demo's and compose's files on disk; in Kubernetes,
//! copies of the Secrets to apply afterwards, docs/operations.md "Onboarding a tenant").

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use billing_domain::tenant::{NewTenant, TenantFiles};
use billing_domain::{Secret, TenantId};
use billing_proto::invoicing::{PutTenantProfileRequest, TenantProfile};
use billing_proto::ledger::{AuditEvent, ListAuditEventsRequest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::clients::{self, Conn};
use crate::exit::{InputError, Outcome};
use crate::output::outln;

#[derive(clap::Args)]
pub struct OnboardArgs {
    /// The new tenant's id, as in URLs and subjects: 1-50 of a-z, 0-9, '-', '_'.
    tenant: TenantId,
    /// Legal or trading name, printed on invoices.
    #[arg(long)]
    name: String,
    /// Where invoices are emailed.
    #[arg(long)]
    billing_email: String,
    /// ISO 4217, e.g. AUD.
    #[arg(long)]
    currency: String,
    /// IANA zone of the tenant's billing months (default Australia/Sydney).
    #[arg(long)]
    time_zone: Option<String>,
    /// Invoice numbers are <prefix>-<year>-<seq> (default: the id upper-cased).
    #[arg(long)]
    invoice_prefix: Option<String>,
    /// Days from issue to due date (default 7).
    #[arg(long)]
    payment_terms_days: Option<u32>,
    /// Decimal fraction (default 0.20).
    #[arg(long)]
    deposit_rate: Option<String>,
    /// Decimal fraction (default 0.20).
    #[arg(long)]
    platform_fee_rate: Option<String>,
    /// The company login the tenant's SimplyBook account uses.
    #[arg(long)]
    simplybook_company: String,
    /// The company's SimplyBook API key (Settings → API); from the environment only.
    #[arg(
        long,
        env = "SIMPLYBOOK_API_KEY",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    simplybook_api_key: Secret<String>,
    /// The company's SimplyBook API secret key; from the environment only.
    #[arg(
        long,
        env = "SIMPLYBOOK_SECRET_KEY",
        hide_env_values = true,
        value_parser = billing_runtime::config::SecretParser
    )]
    simplybook_secret_key: Secret<String>,
    /// The shared tenants file every service reads.
    #[arg(long, env = "BILLINGCTL_TENANTS_FILE", hide_env_values = true)]
    tenants_file: PathBuf,
    /// Ingest's secrets file, when the deployment keeps one apart (callback tokens and webhook
    /// secrets go there, else into the tenants file).
    #[arg(long, env = "BILLINGCTL_INGEST_SECRETS_FILE", hide_env_values = true)]
    ingest_secrets_file: Option<PathBuf>,
    /// The ledger's secrets file, when kept apart (the SimplyBook keys go there, else into the
    /// tenants file).
    #[arg(long, env = "BILLINGCTL_LEDGER_SECRETS_FILE", hide_env_values = true)]
    ledger_secrets_file: Option<PathBuf>,
    /// Ingest's public address, as SimplyBook reaches it, e.g. https://billing.example.com.
    #[arg(long, env = "BILLINGCTL_PUBLIC_URL", hide_env_values = true)]
    public_url: String,
    /// How long to wait for the first callback (0: do not wait).
    #[arg(long, default_value_t = 900)]
    wait_secs: u64,
}

pub async fn run(conn: &Conn, json: bool, args: OnboardArgs) -> anyhow::Result<Outcome> {
    let public_url = args.public_url.trim_end_matches('/').to_string();
    if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
        return Err(InputError(format!(
            "--public-url {public_url:?} must start with https:// (or http:// on a test machine)"
        ))
        .into());
    }
    let tenant = NewTenant {
        id: args.tenant.clone(),
        name: args.name,
        billing_email: args.billing_email,
        currency: args.currency,
        time_zone: args.time_zone,
        invoice_prefix: args.invoice_prefix,
        payment_terms_days: args.payment_terms_days,
        deposit_rate: args.deposit_rate,
        platform_fee_rate: args.platform_fee_rate,
        simplybook_company: args.simplybook_company,
        simplybook_api_key: args.simplybook_api_key,
        simplybook_secret_key: args.simplybook_secret_key,
    };
    let paths = Paths {
        profile: args.tenants_file,
        ingest: args.ingest_secrets_file,
        ledger: args.ledger_secrets_file,
    };
    // One onboarding at a time per tenants file: each reads, adds and writes all three.
    let _lock = paths.lock()?;
    let files = paths.read()?;
    let mut random = [0u8; 64];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| anyhow::anyhow!("the system's random generator failed"))?;
    let (next, credentials) = tenant
        .onboard(&files, &random)
        .map_err(|e| InputError(e.to_string()))?;
    paths.write(&files, &next)?;

    // The profile invoicing invoices by; created here, so it exists even where invoicing is
    // given no tenants file to seed profiles from.
    let mut invoicing = conn.invoicing()?;
    match clients::profile(&mut invoicing, tenant.id.as_str()).await {
        Ok(_) => {}
        Err(err) if clients::is_not_found(&err) => {
            let profile = TenantProfile {
                tenant_id: tenant.id.to_string(),
                legal_name: tenant.name.trim().to_string(),
                billing_email: tenant.billing_email.trim().to_string(),
                time_zone: tenant.time_zone.clone().unwrap_or_default(),
                currency: tenant.currency.trim().to_string(),
                payment_terms_days: tenant.payment_terms_days.unwrap_or(7),
                invoice_prefix: tenant.invoice_prefix.clone().unwrap_or_default(),
                ..Default::default()
            };
            invoicing
                .put_tenant_profile(PutTenantProfileRequest {
                    profile: Some(profile),
                })
                .await
                .context("the tenant is in the files, but creating its billing profile failed; run `billingctl tenants set` to create it")?;
        }
        Err(err) => return Err(err),
    }

    let callback_url = format!(
        "{public_url}/api/v1/webhooks/simplybook/{}/callback/{}",
        tenant.id,
        credentials.callback_token.expose()
    );
    let signed_url = format!("{public_url}/api/v1/webhooks/simplybook/{}", tenant.id);
    if json {
        crate::output::print_json_line(&serde_json::json!({
            "tenant": tenant.id.as_str(),
            "callback_url": callback_url,
            "signed_webhook_url": signed_url,
            "webhook_secret": credentials.webhook_secret.expose(),
        }));
    } else {
        outln!(
            "Tenant {} onboarded: in every service's files, billing profile created.",
            tenant.id
        );
        outln!();
        outln!("Shown once, kept nowhere else but the secrets files:");
        outln!("  SimplyBook callback URL (Settings > API > Callback URL, or the Notification");
        outln!("  plugin's callback URL):");
        outln!("    {callback_url}");
        outln!("  Webhook secret, for a forwarder that signs booking details (Standard Webhooks)");
        outln!("  and posts them to {signed_url}:");
        outln!("    {}", credentials.webhook_secret.expose());
    }
    if args.wait_secs == 0 {
        return Ok(Outcome::Done);
    }
    let mut ledger = conn.ledger()?;
    if !json {
        outln!();
        outln!(
            "Waiting up to {} s for the first callback (make or change a booking in SimplyBook)...",
            args.wait_secs
        );
    }
    let arrived = first_callback(&mut ledger, tenant.id.as_str(), args.wait_secs, json).await?;
    Ok(Outcome::attention_unless(arrived))
}

/// Watches the ledger's audit log for the tenant's first SimplyBook event: a stored booking
/// ends the wait; a refusal (wrong token, a booking SimplyBook does not confirm) is shown and
/// the wait goes on, for the operator to fix it.
async fn first_callback(
    ledger: &mut billing_proto::ledger::ledger_service_client::LedgerServiceClient<
        clients::Channel,
    >,
    tenant: &str,
    wait_secs: u64,
    json: bool,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    let mut shown = 0u64;
    loop {
        let events = ledger
            .list_audit_events(ListAuditEventsRequest {
                tenant_id: tenant.to_string(),
                source: "simplybook".into(),
                limit: 20,
                ..Default::default()
            })
            .await?
            .into_inner()
            .events;
        // Newest first: show the new ones oldest first.
        let seen = shown;
        for event in events.iter().rev().filter(|e| e.id > seen) {
            report(event, json);
            shown = shown.max(event.id);
            if stored(event) {
                return Ok(true);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if !json {
                outln!("No booking stored for {tenant} within {wait_secs} s.");
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn report(event: &AuditEvent, json: bool) {
    if json {
        crate::output::print_json_line(&serde_json::json!({
            "first_callback": event.outcome, "booking": event.booking_id,
            "reason": event.reason, "http_status": event.http_status,
        }));
        return;
    }
    match event.outcome.as_str() {
        _ if stored(event) => outln!(
            "First callback arrived: booking {} confirmed with SimplyBook and stored.",
            event.booking_id
        ),
        "rejected" => outln!(
            "A callback arrived and was refused (HTTP {}): {}. Check the URL pasted into SimplyBook.",
            event.http_status,
            event.reason
        ),
        other => outln!(
            "A callback arrived: {other}{}{}",
            if event.reason.is_empty() { "" } else { ": " },
            event.reason
        ),
    }
}

/// Whether the audit entry is a booking the ledger stored (new, or a change to one it had).
fn stored(event: &AuditEvent) -> bool {
    matches!(
        event.outcome.as_str(),
        "stored" | "status_changed" | "revised"
    )
}

/// Where the tenant files are.
struct Paths {
    profile: PathBuf,
    ingest: Option<PathBuf>,
    ledger: Option<PathBuf>,
}

impl Paths {
    /// An exclusive lock on `.<tenants file>.lock` beside the tenants file (kept, empty), held
    /// until dropped.
    fn lock(&self) -> anyhow::Result<File> {
        let name = self
            .profile
            .file_name()
            .map(|n| format!(".{}.lock", n.to_string_lossy()))
            .unwrap_or_else(|| ".tenants.lock".into());
        let path = self.profile.with_file_name(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        file.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another onboarding holds {}; try again when it has finished",
                path.display()
            )
        })?;
        Ok(file)
    }

    fn read(&self) -> anyhow::Result<TenantFiles> {
        let read = |path: &Path| {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        Ok(TenantFiles {
            profile: read(&self.profile)?,
            ingest_secrets: self.ingest.as_deref().map(read).transpose()?,
            ledger_secrets: self.ledger.as_deref().map(read).transpose()?,
        })
    }

    /// Replaces each changed file whole (a reader sees the old file or the new, never half):
    /// the tenants file first, so a service that reloads between two writes sees the new
    /// tenant without its secrets, which refuses its callbacks, never secrets for a tenant it
    /// does not know.
    fn write(&self, before: &TenantFiles, after: &TenantFiles) -> anyhow::Result<()> {
        let mut changes = vec![(&self.profile, &before.profile, &after.profile)];
        for (path, old, new) in [
            (&self.ingest, &before.ingest_secrets, &after.ingest_secrets),
            (&self.ledger, &before.ledger_secrets, &after.ledger_secrets),
        ] {
            if let (Some(path), Some(old), Some(new)) = (path, old, new) {
                changes.push((path, old, new));
            }
        }
        let mut written = Vec::new();
        for (path, old, new) in changes {
            if old == new {
                continue;
            }
            replace(path, new).with_context(|| {
                format!(
                    "writing {} (written before it: {:?}); fix the cause and finish by hand, or \
                     restore the files",
                    path.display(),
                    written
                )
            })?;
            written.push(path.display().to_string());
        }
        Ok(())
    }
}

/// Writes `text` to a new file beside `path`, with `path`'s permissions, and renames it over.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let permissions = fs::metadata(path)?.permissions();
    let name = path
        .file_name()
        .map(|n| format!(".{}.onboarding", n.to_string_lossy()))
        .unwrap_or_else(|| ".onboarding".into());
    let temporary = path.with_file_name(name);
    let result = (|| {
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        file.set_permissions(permissions)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        fs::remove_file(&temporary).ok();
    }
    result
}
