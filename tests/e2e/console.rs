//! The operator console (issue 22) over HTTP against the real services: signing in (CSRF on the
//! form, wrong passwords, the throttle), the session cookie's attributes and the security
//! headers, the overview and invoice pages, a bank payment and a void confirmed and recorded
//! with the operator's name (and the receipt email at the SMTP sink), the PDF inline and as a
//! download, a viewer who sees no write control and whose forged POST is refused 403, a form
//! without its CSRF token refused, and signing out ending the session.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use billing_domain::Secret;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use tokio_util::sync::CancellationToken;

use crate::harness::{ADMIN_TOKEN, System, eventually};
use crate::invoicing::{Publisher, client, issued, ledger_has};

pub(crate) const DANA_PASSWORD: &str = "correct horse battery staple";
pub(crate) const VIC_PASSWORD: &str = "viewer password for vic";

/// A browser as far as the console can tell: cookies kept by hand (the console's are Secure,
/// which a cookie jar would not send over plain HTTP on loopback), redirects not followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> anyhow::Result<String> {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .context("no csrf field on the page")?;
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        Ok(rest[..rest.find('"').context("unterminated value")?].to_string())
    }

    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Browser {
    fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: format!("http://{addr}"),
            cookies: Vec::new(),
        })
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for set in headers.get_all(SET_COOKIE) {
            let Some((pair, _)) = set.to_str().ok().and_then(|s| s.split_once(';')) else {
                continue;
            };
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&mut self, response: reqwest::Response) -> anyhow::Result<Page> {
        let status = response.status();
        let headers = response.headers().clone();
        self.keep_cookies(&headers);
        Ok(Page {
            status,
            headers,
            body: response.text().await?,
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await?;
        self.answer(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await?;
        self.answer(response).await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> anyhow::Result<Page> {
        let form = self.get("/login").await?;
        let csrf = form.csrf()?;
        self.post(
            "/login",
            &[("name", name), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

/// A console for `system` with Dana (billing) and Vic (viewer).
pub(crate) async fn start_console(
    system: &System,
) -> anyhow::Result<(SocketAddr, CancellationToken, tokio::task::JoinHandle<()>)> {
    start_console_with(
        system,
        &format!(
            "# test operators\ndana billing {}\nvic viewer {}\n",
            console::accounts::hash_password(DANA_PASSWORD),
            console::accounts::hash_password(VIC_PASSWORD)
        ),
    )
    .await
}

/// A console for `system` with the accounts file `accounts`, sharing the system's database
/// (and so its sessions) with any other.
async fn start_console_with(
    system: &System,
    accounts_text: &str,
) -> anyhow::Result<(SocketAddr, CancellationToken, tokio::task::JoinHandle<()>)> {
    let accounts = std::env::temp_dir().join(format!(
        "console-accounts-{}",
        billing_testkit::unique_namespace()
    ));
    std::fs::write(&accounts, accounts_text)?;
    let db = system.db.as_ref().context("the system has a database")?;
    let config = console::Config {
        listen_addr: "127.0.0.1:0".parse()?,
        database_url: db.url.clone(),
        migrate_only: false,
        ledger_url: format!("http://{}", system.ledger),
        invoicing_url: format!("http://{}", system.invoicing),
        notifier_url: format!("http://{}", system.notifier),
        token: Some(Secret::new(ADMIN_TOKEN.to_string())),
        accounts_file: Some(accounts),
        session_hours: 8,
        call_timeout_secs: 30,
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(err) = console::run(config, listener, stop).await {
            tracing::error!(error = %err, "console failed");
        }
    });
    // Ready once its database answers.
    eventually(Duration::from_secs(30), || async move {
        let ready = reqwest::get(format!("http://{addr}/readyz")).await;
        Ok(ready.ok().filter(|r| r.status().is_success()).map(|_| ()))
    })
    .await?;
    Ok((addr, shutdown, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_signs_in_pays_and_voids_and_a_viewer_cannot() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = console_flow(&system).await;
    system.finish(result).await
}

async fn console_flow(system: &System) -> anyhow::Result<()> {
    let pb = Publisher::new(system).await?;
    pb.book(
        "claire",
        "C1",
        "150.00",
        "confirmed",
        "2026-08-12T10:00:00+10:00",
    )
    .await?;
    pb.book(
        "claire",
        "C2",
        "80.00",
        "confirmed",
        "2026-09-12T10:00:00+10:00",
    )
    .await?;
    ledger_has(system, 2).await?;
    let mut invoicing = client(system).await?;
    let august = issued(&mut invoicing, "claire", "2026-08").await?;
    let september = issued(&mut invoicing, "claire", "2026-09").await?;
    let (addr, shutdown, task) = start_console(system).await?;
    let result = scenario(system, addr, &august.id, &september.id).await;
    shutdown.cancel();
    let _ = task.await;
    result
}

async fn scenario(
    system: &System,
    addr: SocketAddr,
    august: &str,
    september: &str,
) -> anyhow::Result<()> {
    let mut dana = Browser::new(addr)?;

    // Not signed in: every page leads to the sign-in form.
    let home = dana.get("/").await?;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), "/login");

    // The form: security headers, no script, its CSRF token in a strict cookie too.
    let form = dana.get("/login").await?;
    assert_eq!(form.status, StatusCode::OK);
    let csp = form
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(!form.body.contains("<script"), "{}", form.body);
    let csrf = form.csrf()?;

    // A sign-in form without its token, or a wrong password: refused.
    let forged = dana
        .post(
            "/login",
            &[("name", "dana"), ("password", DANA_PASSWORD), ("csrf", "")],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let wrong = dana
        .post(
            "/login",
            &[("name", "dana"), ("password", "guess"), ("csrf", &csrf)],
        )
        .await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong name or password"));

    // Signed in: a session cookie the browser keeps to itself and to this site.
    let signed_in = dana.sign_in("dana", DANA_PASSWORD).await?;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let session_cookie = signed_in
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(console::SESSION_COOKIE))
        .unwrap_or_default()
        .to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }

    // The overview names both months' invoices; the list finds the demo invoice by filter.
    let overview = dana.get("/").await?;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(
        overview.body.contains("Claire Hamilton Therapies"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("<th>Deposits</th>"),
        "{}",
        overview.body
    );
    let list = dana
        .get("/invoices?tenant=claire&status=issued&sort=total&desc=true")
        .await?;
    assert_eq!(list.status, StatusCode::OK);
    let first = list
        .body
        .find("CLAIRE-2026-0001")
        .context("August listed")?;
    let second = list
        .body
        .find("CLAIRE-2026-0002")
        .context("September listed")?;
    // Sorted by total, largest first: August (30.00) before September (16.00).
    assert!(first < second, "{}", list.body);
    assert!(list.body.contains("AUD 30.00"), "{}", list.body);

    // The invoice, found by its number: lines, and a payment form for a billing operator.
    let invoice = dana.get("/invoices/CLAIRE-2026-0001").await?;
    assert_eq!(invoice.status, StatusCode::OK);
    assert!(invoice.body.contains("C1"), "{}", invoice.body);
    assert!(invoice.body.contains(&format!("/invoices/{august}/pay")));
    let csrf = invoice.csrf()?;

    // A payment form without its token is refused; with it, a confirmation comes first.
    let pay_path = format!("/invoices/{august}/pay");
    let payment = [
        ("amount", "30.00"),
        ("received_on", "2026-09-05"),
        ("reference", "CLAIRE-2026-0001"),
    ];
    let no_token = dana.post(&pay_path, &payment).await?;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let with_token = [&payment[..], &[("csrf", csrf.as_str())]].concat();
    let confirm = dana.post(&pay_path, &with_token).await?;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Record payment"), "{}", confirm.body);
    assert_eq!(
        invoicing_status(system, august).await?,
        "issued",
        "nothing is recorded before the confirmation"
    );
    let confirmed = [&with_token[..], &[("confirmed", "true")]].concat();
    let paid = dana.post(&pay_path, &confirmed).await?;
    assert_eq!(paid.status, StatusCode::SEE_OTHER, "{}", paid.body);
    let outcome = dana.get(paid.location()).await?;
    assert!(
        outcome.body.contains("The payment was recorded"),
        "{}",
        outcome.body
    );
    assert!(
        outcome.body.contains("<strong>paid</strong>"),
        "{}",
        outcome.body
    );
    assert!(
        outcome.body.contains("dana as billing (console)"),
        "{}",
        outcome.body
    );

    // The receipt email reaches the SMTP sink.
    eventually(Duration::from_secs(30), || async {
        Ok(system
            .mail
            .mails()
            .iter()
            .any(|m| {
                mail_parser::MessageParser::default()
                    .parse(&m.data)
                    .and_then(|p| p.subject().map(str::to_string))
                    .is_some_and(|s| s == "Payment received – invoice CLAIRE-2026-0001 is paid")
            })
            .then_some(()))
    })
    .await?;

    // Void September with a reason: the history names Dana.
    let void_path = format!("/invoices/{september}/void");
    let reason = [
        ("reason", "billed to the wrong entity"),
        ("csrf", csrf.as_str()),
    ];
    let confirm = dana.post(&void_path, &reason).await?;
    assert!(
        confirm.body.contains("Void the invoice"),
        "{}",
        confirm.body
    );
    let voided = dana
        .post(
            &void_path,
            &[&reason[..], &[("confirmed", "true")]].concat(),
        )
        .await?;
    assert_eq!(voided.status, StatusCode::SEE_OTHER, "{}", voided.body);
    let shown = dana.get(voided.location()).await?;
    assert!(
        shown.body.contains("billed to the wrong entity"),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains("dana as billing (console)"),
        "{}",
        shown.body
    );
    assert_eq!(invoicing_status(system, september).await?, "void");

    // The PDF, inline and as a download.
    let inline = dana.get(&format!("/invoices/{august}/pdf")).await?;
    assert_eq!(inline.status, StatusCode::OK);
    let disposition = |p: &Page| {
        p.headers
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        disposition(&inline),
        "inline; filename=\"CLAIRE-2026-0001.pdf\""
    );
    assert!(inline.body.starts_with("%PDF"));
    let download = dana
        .get(&format!("/invoices/{august}/pdf?download=true"))
        .await?;
    assert!(disposition(&download).starts_with("attachment"));

    // Dead letters: the page answers (none here).
    let letters = dana.get("/dead-letters").await?;
    assert_eq!(letters.status, StatusCode::OK);
    assert!(letters.body.contains("No dead letters"), "{}", letters.body);

    // Bookings: a month's list, one booking by its SimplyBook id, the chain check; tenants; the
    // audit log.
    let bookings = dana.get("/bookings?tenant=claire&period=2026-08").await?;
    assert_eq!(
        bookings.status,
        StatusCode::OK,
        "{} {:?}",
        bookings.body,
        bookings.headers
    );
    assert!(
        bookings.body.contains("C1") && bookings.body.contains("AUD 150.00"),
        "{}",
        bookings.body
    );
    assert!(
        !bookings.body.contains(">C2<"),
        "September's booking is not August's: {}",
        bookings.body
    );
    let by_ref = dana.get("/bookings?tenant=claire&ref=C1").await?;
    assert_eq!(by_ref.location(), "/bookings/claire/C1");
    let booking = dana.get("/bookings/claire/C1").await?;
    assert_eq!(booking.status, StatusCode::OK);
    assert!(
        booking.body.contains("2026-08-12 10:00 AEST"),
        "{}",
        booking.body
    );
    assert!(booking.body.contains("AUD 30.00"), "{}", booking.body);
    let chain = dana.get("/chain/claire").await?;
    assert!(chain.body.contains("Intact: 2 records"), "{}", chain.body);
    let tenants = dana.get("/tenants").await?;
    assert!(
        tenants.body.contains("Claire Hamilton Therapies"),
        "{}",
        tenants.body
    );
    let tenant = dana.get("/tenants/kenji").await?;
    assert!(tenant.body.contains("Asia/Tokyo"), "{}", tenant.body);
    let audit = dana.get("/audit?tenant=claire").await?;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("stored"), "{}", audit.body);
    let missing = dana.get("/bookings/claire/no-such-booking").await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A viewer sees no write control, and a forged POST with the viewer's own token is 403.
    let mut vic = Browser::new(addr)?;
    let vic_in = vic.sign_in("vic", VIC_PASSWORD).await?;
    assert_eq!(vic_in.status, StatusCode::SEE_OTHER);
    let seen = vic.get(&format!("/invoices/{august}")).await?;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!seen.body.contains("/pay\""), "{}", seen.body);
    assert!(!seen.body.contains("/void\""), "{}", seen.body);
    let vic_csrf = seen.csrf()?; // the sign-out form's
    let forged = vic
        .post(
            &pay_path,
            &[
                ("amount", "1.00"),
                ("received_on", "2026-09-06"),
                ("reference", "x"),
                ("csrf", &vic_csrf),
                ("confirmed", "true"),
            ],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let payments = client(system)
        .await?
        .get_invoice(billing_proto::invoicing::GetInvoiceRequest {
            invoice_id: august.to_string(),
        })
        .await?
        .into_inner()
        .payments;
    assert_eq!(payments.len(), 1, "the viewer's POST recorded nothing");

    // Dana's session's token does not open Vic's: each session has its own.
    let cross = vic
        .post(&void_path, &[("reason", "x"), ("csrf", &csrf)])
        .await?;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);

    // A second replica shares the sessions; its accounts file demoted Dana to viewer and
    // dropped Vic: Dana's session now has the viewer's role, Vic's opens nothing.
    let (second, stop_second, second_task) = start_console_with(
        system,
        &format!(
            "dana viewer {}\n",
            console::accounts::hash_password(DANA_PASSWORD)
        ),
    )
    .await?;
    let mut dana_there = Browser::new(second)?;
    dana_there.cookies = dana.cookies.clone();
    let demoted = dana_there.get(&format!("/invoices/{august}")).await?;
    assert_eq!(demoted.status, StatusCode::OK);
    assert!(demoted.body.contains("(viewer)"), "{}", demoted.body);
    // August is paid: a billing operator would still see the payment form (overpayments are
    // recorded too), a viewer does not.
    assert!(!demoted.body.contains("/pay\""), "{}", demoted.body);
    let mut vic_there = Browser::new(second)?;
    vic_there.cookies = vic.cookies.clone();
    let gone = vic_there.get("/").await?;
    assert_eq!(gone.location(), "/login");
    stop_second.cancel();
    let _ = second_task.await;

    // Signing out ends the session on the server: the old cookie opens nothing.
    let old = dana.cookies.clone();
    let out = dana.post("/logout", &[("csrf", &csrf)]).await?;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    dana.cookies = old;
    let after = dana.get("/invoices").await?;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login");

    // The throttle: five failures lock the name, even with the right password after them.
    let mut guesser = Browser::new(addr)?;
    for _ in 0..5 {
        let refused = guesser.sign_in("vic", "not it").await?;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }
    let locked = guesser.sign_in("vic", VIC_PASSWORD).await?;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    Ok(())
}

async fn invoicing_status(system: &System, id: &str) -> anyhow::Result<String> {
    Ok(client(system)
        .await?
        .get_invoice(billing_proto::invoicing::GetInvoiceRequest {
            invoice_id: id.to_string(),
        })
        .await?
        .into_inner()
        .status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_edits_a_tenants_billing_profile_after_seeing_what_changes() -> anyhow::Result<()>
{
    let system = System::builder().ledger().invoicing().start().await?;
    let (addr, shutdown, task) = start_console_with(
        &system,
        &format!(
            "ada admin {}\ndana billing {}\n",
            console::accounts::hash_password(ADA_PASSWORD),
            console::accounts::hash_password(DANA_PASSWORD)
        ),
    )
    .await?;
    let result = edit_profile(&system, addr).await;
    shutdown.cancel();
    let _ = task.await;
    system.finish(result).await
}

const ADA_PASSWORD: &str = "admin password for ada";

async fn edit_profile(system: &System, addr: SocketAddr) -> anyhow::Result<()> {
    // A billing operator sees the profile and no edit form; a forged POST is refused.
    let mut dana = Browser::new(addr)?;
    dana.sign_in("dana", DANA_PASSWORD).await?;
    let seen = dana.get("/tenants/claire").await?;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!seen.body.contains("Edit the billing profile"));
    let csrf = seen.csrf()?;
    let forged = dana
        .post(
            "/tenants/claire/profile",
            &[
                ("csrf", &csrf),
                ("confirmed", "true"),
                ("legal_name", "Forged"),
                ("billing_email", "x@example.test"),
                ("payment_terms_days", "7"),
                ("invoicing_mode", "manual"),
            ],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let mut ada = Browser::new(addr)?;
    ada.sign_in("ada", ADA_PASSWORD).await?;
    let page = ada.get("/tenants/claire").await?;
    assert!(
        page.body.contains("Edit the billing profile"),
        "{}",
        page.body
    );
    let csrf = page.csrf()?;
    let form = |confirmed: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("confirmed", confirmed.to_string()),
            (
                "legal_name",
                "Claire Hamilton Therapies Pty Ltd".to_string(),
            ),
            ("billing_email", "claire.billing@example.test".to_string()),
            ("address", "2 Harbour Road\r\nManly NSW 2095".to_string()),
            ("tax_id", String::new()),
            ("time_zone", "Australia/Sydney".to_string()),
            ("payment_terms_days", "14".to_string()),
            ("tax_rate", "0".to_string()),
            ("invoicing_mode", "manual".to_string()),
            ("stripe_customer_id", String::new()),
            ("invoice_prefix", "CLAIRE".to_string()),
        ]
    };
    let first = form("false");
    let refs: Vec<(&str, &str)> = first.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // First the changes, nothing saved yet.
    let review = ada.post("/tenants/claire/profile", &refs).await?;
    assert_eq!(review.status, StatusCode::OK, "{}", review.body);
    assert!(review.body.contains("Save the profile"), "{}", review.body);
    assert!(review.body.contains("Payment terms (days)"));
    // In the table of changes (the form's hidden inputs echo every value too).
    assert!(
        review.body.contains("<td>Legal name</td>"),
        "{}",
        review.body
    );
    assert!(
        review
            .body
            .contains("<td>Claire Hamilton Therapies Pty Ltd</td>"),
        "{}",
        review.body
    );
    let mut invoicing = client(system).await?;
    let before = invoicing
        .get_tenant_profile(billing_proto::invoicing::GetTenantProfileRequest {
            tenant_id: "claire".into(),
        })
        .await?
        .into_inner();
    assert_eq!(before.payment_terms_days, 7, "not saved before confirming");

    let confirmed = form("true");
    let refs: Vec<(&str, &str)> = confirmed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = ada.post("/tenants/claire/profile", &refs).await?;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/tenants/claire?done=saved");
    let after = invoicing
        .get_tenant_profile(billing_proto::invoicing::GetTenantProfileRequest {
            tenant_id: "claire".into(),
        })
        .await?
        .into_inner();
    assert_eq!(after.payment_terms_days, 14);
    assert_eq!(after.legal_name, "Claire Hamilton Therapies Pty Ltd");
    assert_eq!(after.address, "2 Harbour Road\nManly NSW 2095");
    assert_eq!(
        after.currency, "AUD",
        "the currency is not the console's to change"
    );

    // A value invoicing refuses comes back as the reason, and nothing changes.
    let mut bad = form("true");
    for field in &mut bad {
        if field.0 == "time_zone" {
            field.1 = "Mars/Olympus_Mons".into();
        }
    }
    let refs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = ada.post("/tenants/claire/profile", &refs).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body.contains("Mars/Olympus_Mons"),
        "{}",
        refused.body
    );
    Ok(())
}
