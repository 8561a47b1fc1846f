//! Fetching one booking as SimplyBook has it now: confirmed by a callback's hash (public API) or
//! through the Company Administration API, with its value from the company's service list when
//! the details carry no price.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use billing_domain::callback::Callback;
use billing_domain::simplybook::{self, BookingDetails, DetailsError, EventInfo, Resolved};
use serde_json::value::RawValue;

use super::client::{Api, EVENTS_FRESH, EVENTS_MISS_REFRESH, Session};
use super::error::FetchError;

impl Session<'_> {
    /// The booking a callback names, as SimplyBook has it now, confirmed by the callback's hash
    /// (`getBookingDetails(id, sign)` on the public API).
    pub async fn confirm(&self, callback: &Callback) -> Result<Resolved, FetchError> {
        let Some(secret_key) = self.tenant.simplybook_secret_key.as_ref() else {
            return Err(FetchError::Refused(format!(
                "tenant {} has no SimplyBook API credentials",
                self.tenant.id
            )));
        };
        let sign = simplybook::booking_sign(
            &callback.booking_id,
            &callback.booking_hash,
            secret_key.expose(),
        );
        let raw = self
            .rpc(
                Api::User,
                "getBookingDetails",
                &serde_json::json!([callback.booking_id, sign]),
            )
            .await?;
        self.resolve(Api::User, &raw, Some(&callback.booking_hash))
            .await
    }

    /// A booking as SimplyBook has it now, through the Company Administration API
    /// (`getBookingDetails(id)`, which needs no hash): what reconciliation repairs with.
    pub async fn admin_details(&self, booking_id: &str) -> Result<Resolved, FetchError> {
        let raw = self
            .rpc(
                Api::Admin,
                "getBookingDetails",
                &serde_json::json!([booking_id]),
            )
            .await?;
        self.resolve(Api::Admin, &raw, None).await
    }

    async fn resolve(
        &self,
        api: Api,
        raw: &RawValue,
        hash: Option<&str>,
    ) -> Result<Resolved, FetchError> {
        let details = BookingDetails::parse(raw).map_err(DetailsError::from)?;
        // The service's price is needed only when the details carry none.
        let event = match (&details.price, &details.event_id) {
            (None, Some(id)) => self.event(api, id).await?,
            _ => None,
        };
        Ok(simplybook::resolve(
            &details,
            hash,
            event.as_ref(),
            &self.tenant.simplybook_status_labels,
        )?)
    }

    /// The company's service `event_id`, from the cached `getEventList`, asked again when the
    /// service is not in it (a service added since).
    pub async fn event(&self, api: Api, event_id: &str) -> Result<Option<EventInfo>, FetchError> {
        let company = self.company()?;
        let cached = self.client.cache().events.get(company).cloned();
        if let Some((at, events)) = cached {
            let age = at.elapsed();
            match events.get(event_id) {
                Some(found) if age < EVENTS_FRESH => return Ok(Some(found.clone())),
                None if age < EVENTS_MISS_REFRESH => return Ok(None),
                _ => {}
            }
        }
        let events = self.events(api).await?;
        Ok(events.get(event_id).cloned())
    }

    /// The company's services, asked of SimplyBook now (and cached).
    pub async fn events(&self, api: Api) -> Result<Arc<BTreeMap<String, EventInfo>>, FetchError> {
        let raw = self
            .rpc(api, "getEventList", &serde_json::json!([]))
            .await?;
        let events = Arc::new(
            simplybook::parse_event_list(&raw)
                .map_err(|e| FetchError::Details(DetailsError::Payload(e)))?,
        );
        self.client.cache().events.insert(
            self.company()?.to_string(),
            (Instant::now(), events.clone()),
        );
        Ok(events)
    }
}
