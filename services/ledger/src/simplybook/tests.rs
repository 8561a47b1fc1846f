//! The client against the fake SimplyBook: paging, tokens, domains, limits, refusals.

use billing_domain::Tenants;
use billing_testkit::{Details, FakeSimplyBook};
use serde_json::json;

use std::time::Duration;

use billing_domain::TenantConfig;
use billing_domain::callback::Callback;
use chrono::NaiveDate;

use super::{FetchError, Settings, SimplyBook};

const COMPANY: &str = "claire";
const API_KEY: &str = "fake-api-key";
const SECRET_KEY: &str = "fake-secret-key";
const LOGIN: &str = "admin";
const PASSWORD: &str = "fake-password";

async fn fake() -> FakeSimplyBook {
    let fake = FakeSimplyBook::start(COMPANY, API_KEY, SECRET_KEY)
        .await
        .expect("fake simplybook");
    fake.set_admin_user(LOGIN, PASSWORD);
    fake
}

/// Settings for a client of the fake at `login_url`, without a lookup limit.
fn settings(login_url: String, attempts: u32, page_size: u32) -> Settings {
    Settings {
        login_url,
        api_hosts: vec!["127.0.0.1".into()],
        timeout: Duration::from_secs(5),
        attempts,
        backoff: Duration::from_millis(1),
        page_size,
        lookups_per_sec: 0,
        lookup_burst: 1,
    }
}

fn client(fake: &FakeSimplyBook, attempts: u32, page_size: u32) -> SimplyBook {
    SimplyBook::new(settings(fake.url(), attempts, page_size)).expect("client")
}

/// Tenant `claire` with every credential, then `extra` on top.
fn tenant(extra: serde_json::Value) -> TenantConfig {
    let mut config = json!({"id": "claire", "name": "Claire",
        "billing_email": "c@example.test", "currency": "AUD", "simplybook_company": COMPANY,
        "simplybook_api_key": API_KEY, "simplybook_secret_key": SECRET_KEY,
        "simplybook_user_login": LOGIN, "simplybook_user_password": PASSWORD});
    for (key, value) in extra.as_object().expect("object") {
        config[key] = value.clone();
    }
    let tenants = Tenants::from_json(&json!({"tenants": [config]}).to_string()).expect("tenants");
    tenants.get("claire").expect("claire").clone()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn callback(id: &str, hash: &str) -> Callback {
    Callback::parse(
        json!({"booking_id": id, "booking_hash": hash, "company": COMPANY,
            "notification_type": "create"})
        .to_string()
        .as_bytes(),
    )
    .expect("callback")
}

#[tokio::test]
async fn a_month_is_paged_by_day_until_a_page_brings_nothing_new() {
    let fake = fake().await;
    for (n, start) in [
        "2026-10-01 09:00:00",
        "2026-10-01 10:00:00",
        "2026-10-02 09:00:00",
        "2026-10-03 09:00:00",
        "2026-10-31 23:59:59",
        "2026-11-01 00:00:00",
    ]
    .iter()
    .enumerate()
    {
        let details = Details::fixture("confirmed_plain").with("start_date_time", *start);
        fake.put_booking(&format!("{}", 100 + n), "h", details);
    }
    let simplybook = client(&fake, 3, 3);
    let tenant = tenant(json!({}));
    let session = simplybook.session(&tenant);
    let listed = session
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect("list");
    let ids: Vec<&str> = listed.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["100", "101", "102", "103", "104"]);
    // Pages of three: from 10-01 (100, 101, 102), from 10-02 (102, 103, 104), from 10-31
    // (104 again: nothing new, so the month is complete).
    assert_eq!(fake.calls("getBookings"), 3);
    assert_eq!(fake.calls("getServiceUrl"), 1, "the domain is asked once");

    // A day with more bookings than a page cannot be listed, and says so.
    let err = client(&fake, 3, 1)
        .session(&tenant)
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect_err("two bookings on 10-01, pages of one");
    assert!(
        err.to_string()
            .contains("more than 1 bookings start on 2026-10-01"),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_but_other_refusals_keep_it() {
    let fake = fake().await;
    fake.put_booking("101", "h101", Details::fixture("confirmed_plain"));
    let simplybook = client(&fake, 3, 500);
    let tenant = tenant(json!({}));
    let session = simplybook.session(&tenant);
    session
        .confirm(&callback("101", "h101"))
        .await
        .expect("details");
    assert_eq!(fake.calls("getToken"), 1);

    // A wrong hash is SimplyBook's "Signature error", not an expired token: no new login.
    let err = session
        .confirm(&callback("101", "forged"))
        .await
        .expect_err("forged");
    assert!(
        err.to_string().contains("error -32085: Signature error"),
        "{err}"
    );
    assert_eq!(fake.calls("getToken"), 1, "no login for a refused booking");

    // "Access denied" is how an expired token is refused: one new login, then the answer.
    fake.expire_tokens();
    session
        .confirm(&callback("101", "h101"))
        .await
        .expect("after expiry");
    assert_eq!(fake.calls("getToken"), 2);
    assert_eq!(
        fake.calls("getUserToken"),
        0,
        "the admin token is a separate one"
    );
}

#[tokio::test]
async fn a_company_that_moved_is_found_again_through_get_service_url() {
    let login = fake().await;
    let elsewhere = FakeSimplyBook::start(COMPANY, API_KEY, SECRET_KEY)
        .await
        .expect("second domain");
    elsewhere.put_booking("101", "h101", Details::fixture("confirmed_plain"));
    login.put_booking("101", "h101", Details::fixture("confirmed_plain"));
    let simplybook = client(&login, 3, 500);
    let tenant = tenant(json!({}));
    let session = simplybook.session(&tenant);
    session
        .confirm(&callback("101", "h101"))
        .await
        .expect("first domain");
    assert_eq!(login.calls("getBookingDetails"), 1);

    // SimplyBook moves the company: the old domain no longer knows it.
    login.set_moved(true);
    login.add_company_host(COMPANY, &elsewhere.host());
    let resolved = session
        .confirm(&callback("101", "h101"))
        .await
        .expect("moved");
    assert_eq!(resolved.payload.booking_id, "101");
    assert_eq!(login.calls("getServiceUrl"), 2, "asked again once");
    assert_eq!(elsewhere.calls("getBookingDetails"), 1);
}

#[test]
fn a_tenants_lookups_are_limited_and_the_refusal_is_a_retry() {
    let simplybook = SimplyBook::new(Settings {
        lookups_per_sec: 1,
        lookup_burst: 3,
        ..settings("http://127.0.0.1:9".into(), 1, 500)
    })
    .expect("client");
    let claire = tenant(json!({}));
    for _ in 0..3 {
        simplybook.admit_lookup(&claire).expect("within the burst");
    }
    let err = simplybook
        .admit_lookup(&claire)
        .expect_err("over the limit");
    assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn credentials_and_hosts_are_checked_before_anything_is_sent() {
    let fake = fake().await;
    let simplybook = client(&fake, 3, 500);
    let no_admin = tenant(json!({"simplybook_user_login": null,
        "simplybook_user_password": null}));
    let err = simplybook
        .session(&no_admin)
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect_err("no admin user");
    assert!(
        err.to_string()
            .contains("has no SimplyBook admin credentials"),
        "{err}"
    );
    assert_eq!(
        fake.total_calls(),
        0,
        "nothing asked for a tenant that cannot log in"
    );

    // A domain not among the allowed hosts never receives the tenant's keys.
    let elsewhere = tenant(json!({"simplybook_api_url": "https://user-api.example.test"}));
    let err = simplybook
        .session(&elsewhere)
        .confirm(&callback("1", "h1"))
        .await
        .expect_err("host not allowed");
    assert!(
        err.to_string().contains("LEDGER_SIMPLYBOOK_API_HOSTS"),
        "{err}"
    );
    assert_eq!(fake.total_calls(), 0);
}

#[tokio::test]
async fn refusals_are_not_retried_and_outages_are_retried_then_unavailable() {
    let fake = fake().await;
    let wrong = tenant(json!({"simplybook_user_password": "wrong-password"}));
    let simplybook = client(&fake, 3, 500);
    let err = simplybook
        .session(&wrong)
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, FetchError::Refused(_)), "{err}");
    assert!(err.to_string().contains("-33003"), "{err}");
    assert_eq!(fake.calls("getUserToken"), 1);

    fake.set_hipaa(true);
    let err = client(&fake, 3, 500)
        .session(&tenant(json!({})))
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect_err("hipaa");
    assert!(matches!(err, FetchError::NotPossible(_)), "{err}");

    fake.set_hipaa(false);
    fake.set_unavailable(true);
    let before = fake.calls("getServiceUrl");
    let err = client(&fake, 3, 500)
        .session(&tenant(json!({})))
        .list_bookings(day("2026-10-01"), day("2026-10-31"))
        .await
        .expect_err("unavailable");
    assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
    assert_eq!(
        fake.calls("getServiceUrl") - before,
        3,
        "tried the configured times"
    );
}
