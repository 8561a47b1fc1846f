//! Signing in and out. The sign-in form carries a token that must match a cookie set with it
//! (double submit), so another site cannot sign a browser in. Before any password is checked
//! a sign-in passes its client address's and the global rate limits (`throttle`), then its
//! name's lock: each account name may fail [`MAX_FAILURES`](crate::sessions::MAX_FAILURES)
//! times in the throttle window, then it is refused without its password being checked until
//! the window has passed; and it gets one of the few password check slots or is refused
//! (`accounts`). Every refusal of these is a 429 with `Retry-After`.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use billing_runtime::auth::Access;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::accounts::Busy;
use crate::sessions::{THROTTLE_WINDOW, random_token};
use crate::throttle::RETRY_AFTER_SECS;
use crate::web::{LOGIN_COOKIE, Operator, Refusal, SESSION_COOKIE, Shared, cookie, set_cookie};

fn form_page(csrf: &str, message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · Billing console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main {
                    h1 { "Billing console" }
                    @if let Some(message) = message {
                        p.warning role="alert" { (message) }
                    }
                    form.write method="post" action="/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="name" { "Name" }
                        input #name type="text" name="name" autocomplete="username" required;
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                        p { button.primary type="submit" { "Sign in" } }
                    }
                }
            }
        }
    }
}

/// The form with a fresh token in the form and in its cookie.
fn fresh_form(status: StatusCode, message: Option<&str>) -> Response {
    let csrf = random_token();
    let mut response = (status, form_page(&csrf, message)).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, 3600));
    response
}

pub async fn form() -> Response {
    fresh_form(StatusCode::OK, None)
}

/// 429: the form again with `message`, to be tried after `retry_after_secs`.
fn throttled(message: &str, retry_after_secs: u64) -> Response {
    metrics::counter!("console_logins_total", "outcome" => "throttled").increment(1);
    let mut response = fresh_form(StatusCode::TOO_MANY_REQUESTS, Some(message));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after_secs.into());
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn submit(
    State(state): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !bool::from(form.csrf.as_bytes().ct_eq(expected.as_bytes())) {
        metrics::counter!("console_refusals_total", "reason" => "csrf").increment(1);
        return Refusal::Forbidden(
            "this sign-in form has expired or did not come from the console: reload it",
        )
        .into_response();
    }
    if !state.sign_in_limits.admit(client) {
        return throttled(
            "Too many sign-ins at the moment: try again in a moment.",
            RETRY_AFTER_SECS,
        );
    }
    match state.sessions.throttled(&form.name).await {
        Ok(false) => {}
        Ok(true) => {
            return throttled(
                "Too many failed sign-ins for this name: try again in 15 minutes.",
                THROTTLE_WINDOW.as_secs(),
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "reading sign-in failures failed");
            return Refusal::Unavailable.into_response();
        }
    }
    let checked = match state.accounts.verify(&form.name, &form.password).await {
        Ok(checked) => checked,
        Err(Busy) => {
            return throttled(
                "Too many sign-ins at the moment: try again in a moment.",
                RETRY_AFTER_SECS,
            );
        }
    };
    let Some(who) = checked else {
        metrics::counter!("console_logins_total", "outcome" => "refused").increment(1);
        if let Err(err) = state.sessions.failed(&form.name).await {
            tracing::error!(error = %err, "recording a failed sign-in failed");
        }
        return fresh_form(StatusCode::UNAUTHORIZED, Some("Wrong name or password."));
    };
    match state.sessions.start(&who).await {
        Ok((token, session)) => {
            metrics::counter!("console_logins_total", "outcome" => "signed_in").increment(1);
            tracing::info!(operator = %who.operator, role = %who.role, "signed in");
            let max_age = (session.expires_at - chrono::Utc::now())
                .num_seconds()
                .max(0)
                .unsigned_abs();
            let mut response = Redirect::to("/").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, max_age),
            );
            headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "starting a session failed");
            Refusal::Unavailable.into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<Shared>,
    who: Operator,
    Form(form): Form<SignOut>,
) -> Result<Response, Refusal> {
    who.check_write(&form.csrf, Access::Read)?;
    if let Err(err) = state.sessions.end(&who.token).await {
        tracing::error!(error = %err, "ending a session failed");
        return Err(Refusal::Unavailable);
    }
    tracing::info!(operator = %who.session.operator, "signed out");
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use billing_domain::Secret;
    use billing_testkit::TestDatabase;
    use tower::ServiceExt as _;

    use crate::accounts::{Accounts, hash_password};
    use crate::backend::Backend;
    use crate::sessions::Sessions;
    use crate::throttle::{Limit, SignInLimits};
    use crate::web::{AppState, LOGIN_COOKIE, router};

    const PASSWORD: &str = "correct horse battery staple";

    fn state(accounts: &Arc<Accounts>, sessions: &Sessions, limits: SignInLimits) -> super::Shared {
        let token = Secret::new("a-test-token-never-used-0123456789".to_string());
        // Never called: sign-in talks to no service.
        let backend = Backend::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            &token,
            Duration::from_secs(1),
        )
        .expect("valid addresses");
        Arc::new(AppState {
            accounts: accounts.clone(),
            sessions: sessions.clone(),
            backend,
            sign_in_limits: limits,
        })
    }

    /// A sign-in from `client` as the server would see it: its form and token cookie.
    async fn sign_in(
        state: &super::Shared,
        client: &str,
        name: &str,
        password: &str,
    ) -> (StatusCode, Option<String>) {
        let client: SocketAddr = client.parse().expect("an address");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .append_pair("password", password)
            .append_pair("csrf", "t0ken")
            .finish();
        let mut request = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{LOGIN_COOKIE}=t0ken"))
            .body(Body::from(body))
            .expect("a request");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(client));
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("routers do not fail");
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (response.status(), retry_after)
    }

    fn limit(per_sec: u32, burst: u32) -> Limit {
        Limit { per_sec, burst }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_sign_ins_is_refused_before_any_password_check() {
        let db = TestDatabase::create().await.expect("a test database");
        crate::migrate(&db.url).await.expect("migrated");
        let pool = billing_runtime::db::connect(&db.url, crate::SCHEMA, 4)
            .await
            .expect("connected");
        let sessions = Sessions::new(pool.clone(), Duration::from_secs(3600));
        let accounts = Arc::new(
            Accounts::parse(&format!("dana billing {}", hash_password(PASSWORD))).expect("valid"),
        );

        // One address: past its burst every sign-in is 429 with Retry-After, and no password
        // is checked for it (unknown names cost a check like known ones when admitted).
        let one = state(
            &accounts,
            &sessions,
            SignInLimits::new(limit(1, 3), limit(1, 1000)),
        );
        let (mut refused, mut throttled) = (0, 0);
        // A name each: five failures of one name would lock it (a 429 of its own).
        for i in 0..30 {
            match sign_in(&one, "192.0.2.66:40000", &format!("mallory{i}"), "guess").await {
                (StatusCode::UNAUTHORIZED, _) => refused += 1,
                (StatusCode::TOO_MANY_REQUESTS, Some(after)) => {
                    assert_eq!(after, "1");
                    throttled += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused >= 3 && throttled > 0, "{refused} {throttled}");
        assert_eq!(
            accounts.checks(),
            refused,
            "a throttled sign-in checked a password"
        );
        // Another address signs in meanwhile.
        let (status, _) = sign_in(&one, "192.0.2.7:40000", "dana", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);

        // Many addresses: the global bucket refuses them before any check.
        let before = accounts.checks();
        let all = state(
            &accounts,
            &sessions,
            SignInLimits::new(limit(1, 1000), limit(1, 3)),
        );
        let (mut refused, mut throttled) = (0, 0);
        for host in 1..=30 {
            let client = format!("198.51.100.{host}:40000");
            match sign_in(&all, &client, &format!("eve{host}"), "guess").await {
                (StatusCode::UNAUTHORIZED, _) => refused += 1,
                (StatusCode::TOO_MANY_REQUESTS, Some(_)) => throttled += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(refused >= 3 && throttled > 0, "{refused} {throttled}");
        assert_eq!(accounts.checks() - before, refused);

        // Every check slot taken: refused at once, nothing checked; then a valid sign-in works.
        let open = state(&accounts, &sessions, SignInLimits::default());
        let before = accounts.checks();
        let held = accounts.occupy_every_slot().expect("free slots");
        let (status, retry_after) = sign_in(&open, "203.0.113.5:40000", "dana", PASSWORD).await;
        assert_eq!(
            (status, retry_after.as_deref()),
            (StatusCode::TOO_MANY_REQUESTS, Some("1"))
        );
        assert_eq!(accounts.checks(), before);
        drop(held);
        let (status, _) = sign_in(&open, "203.0.113.5:40000", "dana", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(accounts.checks(), before + 1);

        pool.close().await;
        db.drop_database().await.expect("dropped");
    }
}
