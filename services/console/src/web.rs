//! The console's HTTP side: routes, the security headers every answer carries, who is signed
//! in (the session cookie), and the checks every POST passes: a live session, its CSRF token,
//! and a role that may make the write (checked here, on the server, whatever the page showed).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use billing_runtime::auth::{Access, Role};
use maud::Markup;
use subtle::ConstantTimeEq;

use crate::accounts::Accounts;
use crate::backend::Backend;
use crate::pages::{
    audit, bookings, dead_letters, invoices, layout, login, overview, reconciliation, tenants,
};
use crate::sessions::{Session, Sessions};
use crate::throttle::SignInLimits;

/// The session cookie. `__Host-`: the browser keeps it only if it is Secure, for this host,
/// with path `/`.
pub const SESSION_COOKIE: &str = "__Host-console_session";
/// The sign-in form's CSRF token (double submit: this cookie and the form's field must match).
pub const LOGIN_COOKIE: &str = "__Host-console_login";

pub struct AppState {
    pub accounts: Arc<Accounts>,
    pub sessions: Sessions,
    pub backend: Backend,
    /// Sign-ins per client address and in all, before any password check.
    pub sign_in_limits: SignInLimits,
}

pub type Shared = Arc<AppState>;

/// No script runs (there is none), nothing is framed, forms post only here.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/invoices", get(invoices::list))
        .route("/invoices/{id}", get(invoices::detail))
        .route("/invoices/{id}/pdf", get(invoices::pdf))
        .route("/invoices/{id}/pay", post(invoices::pay))
        .route("/invoices/{id}/void", post(invoices::void))
        .route("/invoices/{id}/resend", post(invoices::resend))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/{sequence}", get(dead_letters::detail))
        .route(
            "/dead-letters/{sequence}/replay",
            post(dead_letters::replay),
        )
        .route("/bookings", get(bookings::list))
        .route("/bookings/{tenant}/{booking_ref}", get(bookings::detail))
        .route("/chain/{tenant}", get(bookings::chain))
        .route("/tenants", get(tenants::list))
        .route("/tenants/{tenant}", get(tenants::detail))
        .route("/tenants/{tenant}/profile", post(tenants::save))
        .route("/audit", get(audit::list))
        .route(
            "/reconciliation",
            get(reconciliation::page_form).post(reconciliation::run),
        )
        .route("/static/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn(billing_runtime::trace::http_span))
        .with_state(state)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let is_pdf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/pdf"));
    // A PDF is not HTML: the browser's viewer shows it, and a CSP would stop that viewer.
    if !is_pdf {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for `name`: HttpOnly, Secure, SameSite=Strict, path `/`; `max_age` 0 ends it.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A page or answer that went wrong, as the operator sees it.
pub enum Refusal {
    /// No live session: to the sign-in page.
    SignIn,
    /// 403 with the reason.
    Forbidden(&'static str),
    /// 400 with what to change.
    BadRequest(String),
    /// 404.
    NotFound(String),
    /// The services could not answer; logged with the status, shown without its text.
    Unavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            Refusal::SignIn => return Redirect::to("/login").into_response(),
            Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.to_string()),
            Refusal::BadRequest(why) => (StatusCode::BAD_REQUEST, "Cannot do that", why),
            Refusal::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "A service did not answer. Nothing was changed by this request unless its \
                 page says so; try again in a moment."
                    .to_string(),
            ),
        };
        (status, layout::bare(title, &text)).into_response()
    }
}

/// How a service's answer reads on a page: a caller's mistake says what to change; anything
/// else is logged and shown as unavailable.
pub fn refusal(status: tonic::Status) -> Refusal {
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::FailedPrecondition
        | tonic::Code::AlreadyExists
        | tonic::Code::OutOfRange => Refusal::BadRequest(status.message().to_string()),
        tonic::Code::NotFound => Refusal::NotFound(status.message().to_string()),
        tonic::Code::PermissionDenied => {
            Refusal::Forbidden("the console's token may not do this; ask an administrator")
        }
        code => {
            tracing::warn!(code = ?code, "a service call failed");
            Refusal::Unavailable
        }
    }
}

/// The signed-in operator of a request (any page but sign-in needs one).
pub struct Operator {
    pub session: Session,
    /// The cookie's token, to end the session.
    pub token: String,
}

impl Operator {
    /// Whether the operator's role may make writes needing `access`.
    pub fn may(&self, access: Access) -> bool {
        self.session.role.may(access)
    }

    pub fn role(&self) -> Role {
        self.session.role
    }

    /// The checks of every write: the form's CSRF token is the session's, and the role may.
    pub fn check_write(&self, csrf: &str, access: Access) -> Result<(), Refusal> {
        let expected = self.session.csrf.as_bytes();
        if csrf.is_empty() || !bool::from(csrf.as_bytes().ct_eq(expected)) {
            metrics::counter!("console_refusals_total", "reason" => "csrf").increment(1);
            return Err(Refusal::Forbidden(
                "this form has expired or did not come from the console: reload the page and \
                 try again",
            ));
        }
        if !self.may(access) {
            metrics::counter!("console_refusals_total", "reason" => "role").increment(1);
            return Err(Refusal::Forbidden("your role may not make this change"));
        }
        Ok(())
    }
}

impl FromRequestParts<Shared> for Operator {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Refusal> {
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or(Refusal::SignIn)?
            .to_string();
        match state.sessions.find(&token).await {
            // The account as the file says now (the console reads it at start-up): a session
            // of an account since removed opens nothing, and one whose role changed has the
            // new role.
            Ok(Some(mut session)) => match state.accounts.role_of(&session.operator) {
                Some(role) => {
                    session.role = role;
                    Ok(Operator { session, token })
                }
                None => Err(Refusal::SignIn),
            },
            Ok(None) => Err(Refusal::SignIn),
            Err(err) => {
                tracing::error!(error = %err, "reading a session failed");
                Err(Refusal::Unavailable)
            }
        }
    }
}

/// A page with the console's frame, for `who`.
pub fn page(who: &Operator, title: &str, body: Markup) -> Response {
    layout::page(who, title, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_and_set_strictly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-console_session=tok; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie(SESSION_COOKIE, "tok", 60);
        let set = set.to_str().unwrap_or_default();
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(set.contains(part), "{set}");
        }
    }
}
