//! Where a company lives: the API host `getServiceUrl` names (checked, since the tenant's
//! credentials are sent there) and the time zone `getCompanyInfo` gives its times in.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::booking::PayloadError;

/// The company's time zone from `getCompanyInfo` (an IANA name, e.g. `Australia/Sydney`): the
/// zone of every time SimplyBook sends. `None` when the answer has none.
pub fn company_time_zone(result: &RawValue) -> Result<Option<String>, PayloadError> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        timezone: Option<String>,
    }
    let info: Info = serde_json::from_str(result.get())
        .map_err(|e| PayloadError::Malformed(format!("company info: {e}")))?;
    Ok(info.timezone.filter(|t| !t.trim().is_empty()))
}

/// The API base URL from `getServiceUrl`'s answer: SimplyBook's own app reads it as a bare host
/// (`user-api.simplybook.me`) and calls `https://<host>/…`. `scheme` is the login API's: a bare
/// host gets it, and an answer with a scheme must have the same one (an `https` login never
/// leads to plaintext `http`). Anything but a host name and port is refused, since the tenant's
/// credentials are sent there.
pub fn service_url(answer: &str, scheme: &str) -> Result<String, PayloadError> {
    let answer = answer.trim();
    let host = match answer.split_once("://") {
        Some((s, host)) if s.eq_ignore_ascii_case(scheme) => host,
        Some(_) => {
            return Err(PayloadError::Malformed(format!(
                "service url {answer:?} is not {scheme}"
            )));
        }
        None => answer,
    }
    .trim_end_matches('/');
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(PayloadError::Malformed(format!(
            "service url {answer:?} is not a host name"
        )));
    }
    Ok(format!("{scheme}://{host}"))
}

/// The host of a base URL made by [`service_url`], without its port.
pub fn host_of(url: &str) -> &str {
    let host = url.split_once("://").map_or(url, |(_, h)| h);
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplybook::testing::{fixture, raw};

    #[test]
    fn service_urls_are_hosts_given_a_scheme_and_nothing_else() {
        let answer: String = serde_json::from_str(fixture!("login/service_url")).expect("string");
        assert_eq!(
            service_url(&answer, "https").expect("host"),
            "https://user-api.simplybook.me"
        );
        assert_eq!(
            service_url("http://127.0.0.1:8080/", "http").expect("url"),
            "http://127.0.0.1:8080"
        );
        // An https login never leads to plaintext http, whatever SimplyBook answers.
        assert!(service_url("http://user-api.simplybook.me", "https").is_err());
        for bad in [
            "https://evil.test/path",
            "ftp://x",
            "user@host",
            "",
            "a b",
            r"evil.example\.simplybook.me",
            "https://",
            "https:",
            "host:",
            "host:80a",
        ] {
            assert!(service_url(bad, "https").is_err(), "{bad}");
        }
        assert_eq!(host_of("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(
            host_of("https://user-api.simplybook.asia"),
            "user-api.simplybook.asia"
        );
    }

    #[test]
    fn the_company_zone_comes_from_company_info() {
        assert_eq!(
            company_time_zone(&raw(fixture!("company/company_info")))
                .expect("info")
                .as_deref(),
            Some("Australia/Sydney")
        );
    }
}
