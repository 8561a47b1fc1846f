//! The console in a real browser (issue 22's acceptance): Debian's headless Chromium, driven
//! over the W3C WebDriver protocol (chromedriver) by the small client below. Sign in, find the
//! invoice, record a bank payment and see it paid and its receipt at the SMTP sink; void another
//! with a reason and see the operator's name in its history; a viewer sees no pay button and a
//! forged POST gets 403; resend the paid invoice's email and see the copy arrive (a viewer has
//! no resend form); run a reconciliation with SimplyBook for a month and see its result; a form
//! without its CSRF token is refused; sign-out ends the session;
//! axe-core (from npm, `tests/browser/`) finds no serious or critical violation on any page.
//! Screenshots of the overview, an invoice and the dead letters go to `docs/` with
//! `UPDATE_SCREENSHOTS=1`, otherwise to `target/<profile>/console-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian) and `npm ci` in `tests/browser`:
//! `scripts/test.sh` provides all three.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::console::{DANA_PASSWORD, VIC_PASSWORD, start_console};
use crate::harness::{System, eventually};
use crate::invoicing::{Publisher, client, issued, ledger_has};

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Where screenshots go: `docs/` (the ones docs/console.md shows) only when asked with
/// `UPDATE_SCREENSHOTS=1`, so an ordinary run leaves the working tree as it was; otherwise
/// `console-screenshots/` in the build's target directory (`target/debug/`).
fn screenshots_dir() -> anyhow::Result<PathBuf> {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        return Ok(repo().join("docs"));
    }
    // Tests run from target/<profile>/deps.
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("console-screenshots"))
        .context("locating the target directory")
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> anyhow::Result<Self> {
        for (path, package) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            anyhow::ensure!(
                std::path::Path::new(path).exists(),
                "{path} is missing: apt-get install {package} (scripts/test.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        eventually(Duration::from_secs(20), || {
            let status = status.clone();
            async move {
                let ready = reqwest::get(&status).await.ok();
                Ok(ready.filter(|r| r.status().is_success()).map(|_| ()))
            }
        })
        .await?;
        Ok(Driver { child, url })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// POSTs `body` as JSON (the WebDriver wire format) and reads the JSON answer.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let answer = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body)?)
        .send()
        .await?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&answer)?)
}

/// One browser session: the few WebDriver commands the test needs.
struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
}

impl Browser {
    async fn open(driver: &Driver, console: SocketAddr) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let created = post_json(
            &http,
            &format!("{}/session", driver.url),
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"]
                }
            }}}),
        )
        .await?;
        let id = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {created}"))?;
        let browser = Browser {
            http,
            session: format!("{}/session/{id}", driver.url),
            base: format!("http://{console}"),
        };
        browser
            .call(
                "POST",
                "/timeouts",
                json!({"script": 60_000, "implicit": 0}),
            )
            .await?;
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        let answer = match method {
            "GET" => serde_json::from_slice(&self.http.get(url).send().await?.bytes().await?)?,
            "DELETE" => {
                serde_json::from_slice(&self.http.delete(url).send().await?.bytes().await?)?
            }
            _ => post_json(&self.http, &url, &body).await?,
        };
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!("webdriver {path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    async fn go(&self, path: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            "/url",
            json!({"url": format!("{}{path}", self.base)}),
        )
        .await?;
        Ok(())
    }

    async fn path(&self) -> anyhow::Result<String> {
        let url = self.call("GET", "/url", Value::Null).await?;
        let url = url.as_str().unwrap_or_default();
        Ok(url.strip_prefix(&self.base).unwrap_or(url).to_string())
    }

    async fn source(&self) -> anyhow::Result<String> {
        Ok(self
            .call("GET", "/source", Value::Null)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn find(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await
            .with_context(|| format!("finding {css}"))?;
        Ok(found[ELEMENT].as_str().unwrap_or_default().to_string())
    }

    async fn count(&self, css: &str) -> anyhow::Result<usize> {
        let found = self
            .call(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(found.as_array().map_or(0, Vec::len))
    }

    async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.call("POST", &format!("/element/{element}/clear"), json!({}))
            .await?;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await?;
        Ok(())
    }

    /// Clicks what submits a form or follows a link, and waits for the next page to load.
    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        self.script("window.__before_click = true; return true;", json!([]))
            .await?;
        self.call("POST", &format!("/element/{element}/click"), json!({}))
            .await?;
        self.next_page().await
    }

    /// Waits until the page marked before an action is replaced and the new one has loaded.
    async fn next_page(&self) -> anyhow::Result<()> {
        eventually(Duration::from_secs(15), || async {
            let state = self
                .script(
                    "return window.__before_click === undefined && document.readyState === 'complete';",
                    json!([]),
                )
                .await
                .unwrap_or(Value::Bool(false));
            Ok(state.as_bool().unwrap_or(false).then_some(()))
        })
        .await
    }

    async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.call("GET", "/screenshot", Value::Null).await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default())?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshots_dir()?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), png)?;
        Ok(())
    }

    /// axe-core's violations of impact serious or critical on the current page.
    async fn serious_violations(&self) -> anyhow::Result<Vec<Value>> {
        let axe =
            std::fs::read_to_string(repo().join("tests/browser/node_modules/axe-core/axe.min.js"))
                .context(
                    "axe-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)",
                )?;
        // WebDriver runs scripts outside the page's CSP, which allows none of its own.
        self.script(&format!("{axe}\n;return typeof axe;"), json!([]))
            .await?;
        let result = self
            .call(
                "POST",
                "/execute/async",
                json!({"script": "const done = arguments[arguments.length - 1];
                    axe.run(document).then(
                        r => done(r.violations.map(v => ({id: v.id, impact: v.impact,
                            help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))),
                        e => done({error: String(e)}));",
                       "args": []}),
            )
            .await?;
        let Some(violations) = result.as_array() else {
            bail!("axe-core failed: {result}");
        };
        Ok(violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .cloned()
            .collect())
    }

    /// Posts a form built in the page (as a forger would, from a page of the console's own
    /// origin): returns the page that answers.
    async fn forge_post(&self, action: &str, fields: &[(&str, &str)]) -> anyhow::Result<String> {
        self.script(
            "const f = document.createElement('form');
             f.method = 'post'; f.action = arguments[0];
             for (const [k, v] of arguments[1]) {
                 const i = document.createElement('input');
                 i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
             }
             window.__before_click = true;
             document.body.appendChild(f); f.submit(); return true;",
            json!([action, fields]),
        )
        .await?;
        self.next_page().await?;
        self.source().await
    }

    async fn sign_in(&self, name: &str, password: &str) -> anyhow::Result<()> {
        self.go("/login").await?;
        self.fill("#name", name).await?;
        self.fill("#password", password).await?;
        self.click("button[type=submit]").await?;
        anyhow::ensure!(
            self.path().await? == "/",
            "not signed in: {}",
            self.source().await?
        );
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.call("DELETE", "", Value::Null).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_headless_chromium() -> anyhow::Result<()> {
    let system = System::builder()
        .ledger()
        .invoicing()
        .notifier()
        .start()
        .await?;
    let result = in_browser(&system).await;
    system.finish(result).await
}

async fn in_browser(system: &System) -> anyhow::Result<()> {
    // Last month and the one before, in Claire's zone: the overview shows this month and last.
    let sydney = chrono_tz::Australia::Sydney;
    let last = billing_domain::BillingPeriod::previous_to(chrono::Utc::now(), sydney);
    let before = last.previous();
    let at = |p: billing_domain::BillingPeriod, day: u32| -> anyhow::Result<String> {
        use chrono::TimeZone as _;
        Ok(sydney
            .with_ymd_and_hms(p.year(), p.month(), day, 10, 0, 0)
            .single()
            .context("a plain morning")?
            .to_rfc3339())
    };
    let pb = Publisher::new(system).await?;
    pb.book("claire", "B1", "150.00", "confirmed", &at(last, 12)?)
        .await?;
    pb.book("claire", "B2", "80.00", "confirmed", &at(before, 12)?)
        .await?;
    ledger_has(system, 2).await?;
    // A booking no one can bill (a negative price): a dead letter for its page.
    pb.book("claire", "B3", "-5.00", "confirmed", &at(before, 14)?)
        .await?;
    let ledger = system.ledger_client()?;
    eventually(Duration::from_secs(30), || {
        let mut ledger = ledger.clone();
        async move {
            let letters = ledger
                .list_dead_letters(billing_proto::ledger::ListDeadLettersRequest::default())
                .await?
                .into_inner()
                .dead_letters;
            Ok((!letters.is_empty()).then_some(()))
        }
    })
    .await?;
    // An operator alert, as a service raises one: the overview lists it once the notifier has
    // emailed it.
    raise_alert(system).await?;
    let mut invoicing = client(system).await?;
    let to_pay = issued(&mut invoicing, "claire", &last.to_string()).await?;
    let to_void = issued(&mut invoicing, "claire", &before.to_string()).await?;
    let (addr, shutdown, task) = start_console(system).await?;
    let driver = Driver::start().await?;
    let result = scenario(
        system,
        &driver,
        addr,
        (&to_pay.id, &to_pay.number, &to_pay.period),
        &to_void.id,
    )
    .await;
    shutdown.cancel();
    let _ = task.await;
    result
}

const ALERT_SUMMARY: &str = "SimplyBook callbacks of claire stopped arriving";

/// Publishes an operator alert on the ALERTS stream and waits for the notifier's email of it.
async fn raise_alert(system: &System) -> anyhow::Result<()> {
    use prost::Message as _;
    let alert = billing_proto::events::AlertV1 {
        alert_id: "browser-test-alert-1".into(),
        kind: "callbacks_stopped".into(),
        severity: "warning".into(),
        summary: ALERT_SUMMARY.into(),
        details: "No callback for a day.".into(),
        tenant_id: "claire".into(),
        source: "ingest".into(),
        raised_at: Some(billing_proto::convert::timestamp(chrono::Utc::now())),
    };
    let js = system.jetstream().await?;
    js.publish(
        system.subjects().alert(&alert.kind),
        alert.encode_to_vec().into(),
    )
    .await?
    .await?;
    eventually(Duration::from_secs(30), || async {
        Ok(system
            .mail
            .mails()
            .iter()
            .any(|m| {
                mail_parser::MessageParser::default()
                    .parse(&m.data)
                    .and_then(|p| p.subject().map(str::to_string))
                    .is_some_and(|s| s.ends_with(ALERT_SUMMARY))
            })
            .then_some(()))
    })
    .await
}

/// The sequence of the first dead letter the list links to.
async fn first_letter(browser: &Browser) -> anyhow::Result<String> {
    browser.go("/dead-letters").await?;
    let href = browser
        .script(
            "return document.querySelector('td a[href^=\\'/dead-letters/\\']').getAttribute('href');",
            json!([]),
        )
        .await?;
    Ok(href
        .as_str()
        .and_then(|h| h.strip_prefix("/dead-letters/"))
        .context("a dead letter listed")?
        .to_string())
}

async fn scenario(
    system: &System,
    driver: &Driver,
    addr: SocketAddr,
    (to_pay, number, period): (&str, &str, &str),
    to_void: &str,
) -> anyhow::Result<()> {
    let dana = Browser::open(driver, addr).await?;
    dana.go("/").await?;
    assert_eq!(
        dana.path().await?,
        "/login",
        "signed out, the console asks who you are"
    );
    assert!(
        dana.serious_violations().await?.is_empty(),
        "{:?}",
        dana.serious_violations().await?
    );
    dana.sign_in("dana", DANA_PASSWORD).await?;
    let overview = dana.source().await?;
    assert!(overview.contains(number), "{overview}");
    // The operator alert, as the notifier emailed it.
    assert!(
        overview.contains(&format!("[WARNING] {ALERT_SUMMARY}")),
        "{overview}"
    );
    // Last month's booking: its deposit is not in any imported statement.
    assert!(overview.contains("1 missing"), "{overview}");
    let violations = dana.serious_violations().await?;
    assert!(violations.is_empty(), "overview: {violations:?}");
    dana.screenshot("console-overview.png").await?;

    // Find the invoice by filtering the list, and open it.
    dana.go("/invoices").await?;
    dana.fill("#tenant", "claire").await?;
    dana.fill("#period", period).await?;
    dana.click("form.filters button").await?;
    let list = dana.source().await?;
    assert!(
        list.contains(number) && list.matches("/invoices/").count() == 1,
        "{list}"
    );
    assert!(dana.serious_violations().await?.is_empty());
    dana.click(&format!("a[href='/invoices/{to_pay}']")).await?;
    assert_eq!(dana.path().await?, format!("/invoices/{to_pay}"));

    // Record the bank payment: the form, the confirmation, the outcome.
    dana.fill("#received_on", "09/05/2026").await?;
    let date: String = dana
        .script(
            "return document.querySelector('#received_on').value;",
            json!([]),
        )
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    if date != "2026-09-05" {
        // A date input's typing order follows the browser's locale; set it as ISO.
        dana.script(
            "document.querySelector('#received_on').value = '2026-09-05'; return true;",
            json!([]),
        )
        .await?;
    }
    dana.click("form.write button.primary").await?;
    let confirm = dana.source().await?;
    assert!(confirm.contains("Record a bank payment of"), "{confirm}");
    assert!(dana.serious_violations().await?.is_empty());
    dana.click("form.write button.primary").await?;
    let paid = dana.source().await?;
    assert!(paid.contains("The payment was recorded"), "{paid}");
    assert!(paid.contains("<strong>paid</strong>"), "{paid}");
    assert!(dana.serious_violations().await?.is_empty());
    dana.screenshot("console-invoice.png").await?;
    eventually(Duration::from_secs(30), || async {
        Ok(system
            .mail
            .mails()
            .iter()
            .any(|m| {
                mail_parser::MessageParser::default()
                    .parse(&m.data)
                    .and_then(|p| p.subject().map(str::to_string))
                    .is_some_and(|s| s == format!("Payment received – invoice {number} is paid"))
            })
            .then_some(()))
    })
    .await?;

    // Resend the paid invoice's email: the form, the confirmation, the outcome, the history
    // naming Dana, and one more email (the copy) at the SMTP sink.
    let copies = || {
        system
            .mail
            .mails()
            .iter()
            .filter(|m| {
                mail_parser::MessageParser::default()
                    .parse(&m.data)
                    .and_then(|p| p.subject().map(str::to_string))
                    .is_some_and(|s| {
                        s.starts_with(&format!("Invoice {number} ")) && s.ends_with("(copy)")
                    })
            })
            .count()
    };
    assert_eq!(copies(), 0);
    dana.fill("#resend-reason", "the tenant cannot find it")
        .await?;
    dana.click("form[action$='/resend'] button").await?;
    let confirm = dana.source().await?;
    assert!(confirm.contains("once more?"), "{confirm}");
    assert!(dana.serious_violations().await?.is_empty());
    dana.click("form.write button.primary").await?;
    let resent = dana.source().await?;
    assert!(resent.contains("asked for once more"), "{resent}");
    assert!(
        resent.contains("invoice email resent: the tenant cannot find it"),
        "{resent}"
    );
    assert!(dana.serious_violations().await?.is_empty());
    eventually(Duration::from_secs(30), || async {
        Ok((copies() == 1).then_some(()))
    })
    .await?;
    // The invoice page lists the copy among its emails once sent.
    dana.go(&format!("/invoices/{to_pay}")).await?;
    let emails = dana.source().await?;
    assert!(emails.contains("invoice resent"), "{emails}");

    // Void September with a reason: the history names Dana.
    dana.go(&format!("/invoices/{to_void}")).await?;
    dana.fill("#reason", "billed to the wrong entity").await?;
    dana.click("form.write button.danger").await?;
    assert!(dana.source().await?.contains("this cannot be undone"));
    dana.click("form.write button.danger").await?;
    let voided = dana.source().await?;
    assert!(voided.contains("The invoice was voided"), "{voided}");
    assert!(voided.contains("billed to the wrong entity"), "{voided}");
    assert!(voided.contains("dana as billing (console)"), "{voided}");

    // A form without its CSRF token is refused.
    let refused = dana
        .forge_post(
            &format!("/invoices/{to_void}/void"),
            &[("reason", "x"), ("confirmed", "true")],
        )
        .await?;
    assert!(
        refused.contains("did not come from the console"),
        "{refused}"
    );

    // The dead letters.
    dana.go("/dead-letters").await?;
    let letters = dana.source().await?;
    assert!(letters.contains("claire"), "{letters}");
    assert!(dana.serious_violations().await?.is_empty());
    dana.screenshot("console-dead-letters.png").await?;

    // Reconciliation, run now for Claire's last month: confirmed, then the ledger's result.
    dana.go("/reconciliation").await?;
    assert!(dana.serious_violations().await?.is_empty());
    dana.script(
        "document.querySelector('#tenant').value = 'claire'; return true;",
        json!([]),
    )
    .await?;
    dana.fill("#period", period).await?;
    dana.click("form.write button.primary").await?;
    let confirm = dana.source().await?;
    assert!(confirm.contains("with SimplyBook now"), "{confirm}");
    dana.click("form.write button.primary").await?;
    let reconciled = dana.source().await?;
    assert!(
        reconciled.contains(&format!("claire {period}: ")),
        "{reconciled}"
    );
    assert!(reconciled.contains("Ledger bookings"), "{reconciled}");
    assert!(dana.serious_violations().await?.is_empty());

    // The other pages pass axe-core too.
    for path in [
        "/bookings?tenant=claire".to_string(),
        "/bookings/claire/B1".to_string(),
        "/chain/claire".to_string(),
        "/tenants".to_string(),
        "/tenants/claire".to_string(),
        "/audit".to_string(),
        format!("/dead-letters/{}", first_letter(&dana).await?),
    ] {
        dana.go(&path).await?;
        let violations = dana.serious_violations().await?;
        assert!(violations.is_empty(), "{path}: {violations:?}");
    }

    // A viewer: no pay button, and a forged POST carrying the viewer's own token is 403.
    let vic = Browser::open(driver, addr).await?;
    vic.sign_in("vic", VIC_PASSWORD).await?;
    vic.go(&format!("/invoices/{to_pay}")).await?;
    assert_eq!(vic.count("form[action$='/pay']").await?, 0);
    assert_eq!(vic.count("form[action$='/void']").await?, 0);
    assert_eq!(vic.count("form[action$='/resend']").await?, 0);
    vic.go("/reconciliation").await?;
    assert_eq!(vic.count("form[action='/reconciliation']").await?, 0);
    let csrf: String = vic
        .script(
            "return document.querySelector('input[name=csrf]').value;",
            json!([]),
        )
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let forged = vic
        .forge_post(
            &format!("/invoices/{to_pay}/pay"),
            &[
                ("amount", "1.00"),
                ("received_on", "2026-09-06"),
                ("reference", "x"),
                ("csrf", &csrf),
                ("confirmed", "true"),
            ],
        )
        .await?;
    assert!(
        forged.contains("your role may not make this change"),
        "{forged}"
    );
    vic.close().await?;

    // Signing out ends the session.
    dana.go("/").await?;
    dana.click("header form button").await?;
    assert_eq!(dana.path().await?, "/login");
    dana.go("/invoices").await?;
    assert_eq!(dana.path().await?, "/login");
    dana.close().await?;
    Ok(())
}
