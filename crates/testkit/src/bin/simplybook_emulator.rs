//! `simplybook_emulator`: a local SimplyBook.me for the demo, answering only in the shapes of the
//! contract fixtures (`tests/fixtures/simplybook/`), so the demo never talks to SimplyBook.
//!
//! Usage: `simplybook_emulator ADDR TENANTS_JSON OUT_DIR [SECRETS_JSON ...]`
//!
//! SECRETS_JSON are the services' tenant secrets files (`{"tenants": {"<id>": {…}}}`, as
//! `deploy/tenant-secrets/`): SimplyBook knows a company's API keys, admin user and callback
//! tokens, which the tenants file itself no longer holds.
//!
//! Every tenant of the file with a SimplyBook company and API keys gets a company: the first on
//! ADDR (also the login API every `getServiceUrl` is asked on), the others on a port of their
//! own that `getServiceUrl` names, as SimplyBook places companies on several API domains. Each
//! company holds five bookings for the tenant's last month, one per shape (paid, the Status
//! feature's "Completed", awaiting approval, cancelled, and a plain one priced from the service
//! list). OUT_DIR/callbacks.json lists the native callbacks SimplyBook would send for them, except
//! the plain booking of a tenant with an admin user: that one's callback is "lost", for
//! reconciliation to find and repair.

use std::path::PathBuf;

use billing_testkit::{Details, FakeSimplyBook};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

/// (fixture shape, day of the month (0 = the last), local time)
const SHAPES: [(&str, u32, &str); 5] = [
    ("confirmed", 4, "10:00:00"),
    ("completed", 12, "14:30:00"),
    ("pending", 15, "09:00:00"),
    ("canceled", 22, "16:00:00"),
    ("plain", 0, "23:30:00"),
];

fn last_month(zone: Tz) -> (NaiveDate, NaiveDate) {
    let today = Utc::now().with_timezone(&zone).date_naive();
    let last = today.with_day(1).unwrap_or(today) - Duration::days(1);
    (last.with_day(1).unwrap_or(last), last)
}

/// Each tenant's entry in `secrets["tenants"][<id>]` merged into its profile in `tenants`.
fn merge_secrets(tenants: &mut Value, secrets: &Value) {
    for tenant in tenants["tenants"].as_array_mut().into_iter().flatten() {
        let id = tenant["id"].as_str().unwrap_or_default().to_string();
        if let (Some(profile), Some(fields)) =
            (tenant.as_object_mut(), secrets["tenants"][&id].as_object())
        {
            profile.extend(fields.clone());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, tenants_file, out_dir, secrets_files @ ..] = args.as_slice() else {
        anyhow::bail!("usage: simplybook_emulator ADDR TENANTS_JSON OUT_DIR [SECRETS_JSON ...]");
    };
    let mut tenants: Value = serde_json::from_str(&std::fs::read_to_string(tenants_file)?)?;
    for file in secrets_files {
        let secrets: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        merge_secrets(&mut tenants, &secrets);
    }
    let mut companies: Vec<FakeSimplyBook> = Vec::new();
    let mut callbacks = Vec::new();
    let mut next_id = 1001u32;
    for tenant in tenants["tenants"].as_array().into_iter().flatten() {
        let text = |key: &str| tenant[key].as_str().map(str::to_string);
        let (Some(id), Some(company), Some(api_key), Some(secret_key)) = (
            text("id"),
            text("simplybook_company"),
            text("simplybook_api_key"),
            text("simplybook_secret_key"),
        ) else {
            continue;
        };
        let listener = match companies.is_empty() {
            true => tokio::net::TcpListener::bind(addr.as_str()).await?,
            false => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        };
        let fake = FakeSimplyBook::serve(listener, &company, &api_key, &secret_key).await?;
        let zone: Tz = text("time_zone")
            .unwrap_or_else(|| "Australia/Sydney".into())
            .parse()
            .map_err(|_| anyhow::anyhow!("tenant {id}: unknown time zone"))?;
        fake.set_time_zone(zone.name());
        let admin = text("simplybook_user_login").zip(text("simplybook_user_password"));
        if let Some((login, password)) = &admin {
            fake.set_admin_user(login, password);
        }
        let currency = text("currency").unwrap_or_default();
        let (first, last) = last_month(zone);
        for (n, (shape, day, time)) in SHAPES.iter().enumerate() {
            // The service list is priced in AUD: other currencies are priced per booking.
            if *shape == "plain" && currency != "AUD" {
                continue;
            }
            let date = if *day == 0 {
                last
            } else {
                first.with_day(*day).unwrap_or(first)
            };
            let start = format!("{date} {time}");
            let amount = match currency.as_str() {
                "JPY" => ["8000", "12003", "9000", "15000"][n % 4].to_string(),
                _ => ["150.00", "95.50", "120.00", "180.00"][n % 4].to_string(),
            };
            let details = match *shape {
                "plain" => Details::fixture("confirmed_plain")
                    .with("start_date_time", start.as_str())
                    .with("end_date_time", start.as_str()),
                state => Details::booking(&start, state, &amount)
                    .with("price.currency", currency.as_str()),
            };
            let booking = next_id.to_string();
            next_id += 1;
            let hash = format!("{:032x}", u128::from(next_id) * 0x9e37_79b9_7f4a_7c15);
            fake.put_booking(&booking, &hash, details);
            let lost = *shape == "plain" && admin.is_some();
            tracing::info!(tenant = %id, booking, shape, start, lost, "booking");
            if !lost {
                callbacks.push(json!({
                    "tenant": id,
                    "token": tenant["callback_tokens"][0],
                    "body": {"booking_id": booking, "booking_hash": hash, "company": company,
                        "notification_type": "create"},
                }));
            }
        }
        if let Some(login_domain) = companies.first() {
            login_domain.add_company_host(&company, &fake.host());
        }
        tracing::info!(tenant = %id, company, url = %fake.url(), "company served");
        companies.push(fake);
    }
    anyhow::ensure!(
        !companies.is_empty(),
        "no tenant has a SimplyBook company and API keys"
    );
    let out = PathBuf::from(out_dir).join("callbacks.json");
    std::fs::write(&out, serde_json::to_string_pretty(&callbacks)?)?;
    tracing::info!(callbacks = callbacks.len(), file = %out.display(), "simplybook emulator ready");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
