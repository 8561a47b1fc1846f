//! Signing in and out. The sign-in form carries a token that must match a cookie set with it
//! (double submit), so another site cannot sign a browser in; each account name may fail
//! [`MAX_FAILURES`](crate::sessions::MAX_FAILURES) times in the throttle window, then it is
//! refused without its password being checked until the window has passed.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use billing_runtime::auth::Access;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::sessions::random_token;
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
    match state.sessions.throttled(&form.name).await {
        Ok(false) => {}
        Ok(true) => {
            metrics::counter!("console_logins_total", "outcome" => "throttled").increment(1);
            return fresh_form(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed sign-ins for this name: try again in 15 minutes."),
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "reading sign-in failures failed");
            return Refusal::Unavailable.into_response();
        }
    }
    let Some(who) = state.accounts.verify(&form.name, &form.password).await else {
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
