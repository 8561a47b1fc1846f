//! The frame of every page: the stylesheet, the navigation, who is signed in with their role,
//! and the sign-out button (a POST with the session's CSRF token). No script anywhere.

use maud::{DOCTYPE, Markup, html};

use crate::web::Operator;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Billing console" }
            link rel="stylesheet" href="/static/console.css";
        }
    }
}

pub fn page(who: &Operator, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    nav aria-label="Main" {
                        a href="/" { "Overview" }
                        a href="/invoices" { "Invoices" }
                        a href="/dead-letters" { "Dead letters" }
                        a href="/bookings" { "Bookings" }
                        a href="/tenants" { "Tenants" }
                        a href="/reconciliation" { "Reconciliation" }
                        a href="/audit" { "Audit log" }
                    }
                    div.who {
                        span { "Signed in as " strong { (who.session.operator) } " (" (who.role()) ")" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(who.session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without the frame (sign-in, errors before or without a session).
pub fn bare(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main {
                    h1 { (title) }
                    p role="alert" { (text) }
                    p { a href="/" { "Back to the console" } }
                }
            }
        }
    }
}
