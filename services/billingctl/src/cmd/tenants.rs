//! `billingctl tenants`: tenants' billing profiles, kept by invoicing: list, show, create or
//! change field by field.

use billing_proto::invoicing::{ListTenantProfilesRequest, PutTenantProfileRequest, TenantProfile};

use crate::clients::{self, Conn};
use crate::exit::Outcome;
use crate::output::{self, Table, last, left, right};

#[derive(clap::Subcommand)]
pub enum TenantsCmd {
    /// Every tenant with a billing profile.
    List,
    /// One tenant's billing profile.
    Show { tenant: String },
    /// A new tenant, end to end and without a restart: writes it into the tenant files with a
    /// callback token and webhook secret made for it, creates its billing profile, prints the
    /// callback URL for SimplyBook once and waits for the first callback. The SimplyBook keys
    /// come from SIMPLYBOOK_API_KEY and SIMPLYBOOK_SECRET_KEY.
    Onboard(Box<super::onboard::OnboardArgs>),
    /// Creates a tenant's profile or changes the given fields of an existing one.
    Set {
        tenant: String,
        #[command(flatten)]
        fields: Box<ProfileFields>,
    },
}

/// The fields `tenants set` can change; those not given keep their value.
#[derive(clap::Args)]
pub struct ProfileFields {
    /// Legal name printed on invoices.
    #[arg(long)]
    legal_name: Option<String>,
    #[arg(long)]
    billing_email: Option<String>,
    /// Postal address; `;` separates lines.
    #[arg(long)]
    address: Option<String>,
    /// e.g. "ABN 00 000 000 000".
    #[arg(long)]
    tax_id: Option<String>,
    /// IANA zone of the tenant's billing months, e.g. Australia/Sydney.
    #[arg(long)]
    time_zone: Option<String>,
    /// ISO 4217; must match the ledger's currency for the tenant.
    #[arg(long)]
    currency: Option<String>,
    /// Days from issue to due date.
    #[arg(long)]
    payment_terms_days: Option<u32>,
    /// Decimal fraction, e.g. 0.10.
    #[arg(long)]
    tax_rate: Option<String>,
    /// manual (bank transfer) or stripe.
    #[arg(long)]
    mode: Option<String>,
    #[arg(long)]
    stripe_customer_id: Option<String>,
    /// Invoice numbers are <prefix>-<year>-<seq>.
    #[arg(long)]
    invoice_prefix: Option<String>,
}

impl ProfileFields {
    fn apply(self, p: &mut TenantProfile) {
        let set = |field: &mut String, value: Option<String>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut p.legal_name, self.legal_name);
        set(&mut p.billing_email, self.billing_email);
        set(&mut p.address, self.address.map(|a| a.replace(';', "\n")));
        set(&mut p.tax_id, self.tax_id);
        set(&mut p.time_zone, self.time_zone);
        set(&mut p.currency, self.currency);
        set(&mut p.tax_rate, self.tax_rate);
        set(&mut p.invoicing_mode, self.mode);
        set(&mut p.stripe_customer_id, self.stripe_customer_id);
        set(&mut p.invoice_prefix, self.invoice_prefix);
        if let Some(days) = self.payment_terms_days {
            p.payment_terms_days = days;
        }
    }
}

const LIST: Table<8> = Table::new([
    left("TENANT", 12),
    left("LEGAL NAME", 32),
    left("TIME ZONE", 20),
    left("CUR", 4),
    right("TERMS", 5),
    right("TAX", 6),
    left("MODE", 7),
    last("BILLING EMAIL"),
]);

/// Every subcommand prints the profiles it listed, read or wrote as the same table. In JSON,
/// `list` prints an array and `show` and `set` the one profile (the rule in [`output`]).
pub async fn run(conn: &Conn, json: bool, cmd: TenantsCmd) -> anyhow::Result<Outcome> {
    let mut invoicing = conn.invoicing()?;
    match cmd {
        TenantsCmd::Onboard(args) => return super::onboard::run(conn, json, *args).await,
        TenantsCmd::List => {
            let profiles = invoicing
                .list_tenant_profiles(ListTenantProfilesRequest {})
                .await?
                .into_inner()
                .profiles;
            output::print_list(json, &profiles, profile_json, print_table)?;
        }
        TenantsCmd::Show { tenant } => {
            let profile = clients::profile(&mut invoicing, &tenant).await?;
            if json {
                output::print_json(&profile_json(&profile))?;
            } else {
                print_table(&[profile]);
            }
        }
        TenantsCmd::Set { tenant, fields } => {
            let mut current = match clients::profile(&mut invoicing, &tenant).await {
                Ok(p) => p,
                Err(err) if clients::is_not_found(&err) => TenantProfile {
                    tenant_id: tenant.clone(),
                    ..Default::default()
                },
                Err(err) => return Err(err),
            };
            fields.apply(&mut current);
            let written = invoicing
                .put_tenant_profile(PutTenantProfileRequest {
                    profile: Some(current),
                })
                .await?
                .into_inner();
            if json {
                output::print_json_line(&profile_json(&written));
            } else {
                print_table(&[written]);
            }
        }
    }
    Ok(Outcome::Done)
}

fn print_table(profiles: &[TenantProfile]) {
    LIST.header();
    for p in profiles {
        LIST.row([
            &p.tenant_id,
            &p.legal_name,
            &p.time_zone,
            &p.currency,
            &p.payment_terms_days,
            &p.tax_rate,
            &p.invoicing_mode,
            &p.billing_email,
        ]);
    }
}

fn profile_json(p: &TenantProfile) -> serde_json::Value {
    serde_json::json!({
        "tenant": p.tenant_id, "legal_name": p.legal_name, "billing_email": p.billing_email,
        "address": p.address, "tax_id": p.tax_id, "time_zone": p.time_zone,
        "currency": p.currency, "payment_terms_days": p.payment_terms_days,
        "tax_rate": p.tax_rate, "invoicing_mode": p.invoicing_mode,
        "stripe_customer_id": p.stripe_customer_id, "invoice_prefix": p.invoice_prefix,
    })
}
