//! Listing a company's month (admin `getBookings`, paged by date) and what reconciliation
//! compares it with: the Status feature's labels and the company's time zone.

use std::collections::BTreeMap;

use billing_domain::simplybook::{self, DetailsError, ListedBooking};
use chrono::NaiveDate;

use super::client::{Api, Session};
use super::error::FetchError;

impl Session<'_> {
    /// The company's bookings that start from `from` to `to` (inclusive, the company's local
    /// dates), whatever their state, as the Company Administration API lists them now.
    ///
    /// `getBookings` has no page cursor, only `limit`, so the month is paged by date: rows are
    /// asked for in ascending start order (`order: date_start_asc`, as documented); a full page
    /// means there may be more, and the next request starts on the last day the page reached
    /// (that day's rows are asked again and merged by id). A full page that is not in
    /// ascending order, or a single day with a full page of bookings, cannot be paged safely
    /// and is refused with a message saying so, rather than reporting a partial month.
    pub async fn list_bookings(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ListedBooking>, FetchError> {
        let page = self.client.settings.page_size;
        let mut listed: BTreeMap<String, ListedBooking> = BTreeMap::new();
        let mut day = from;
        loop {
            let filter = serde_json::json!({
                "date_from": day.format("%Y-%m-%d").to_string(),
                "date_to": to.format("%Y-%m-%d").to_string(),
                "booking_type": "all",
                "order": "date_start_asc",
                "limit": page,
            });
            let raw = self
                .rpc(Api::Admin, "getBookings", &serde_json::json!([filter]))
                .await?;
            let rows = simplybook::parse_booking_list(&raw)?;
            let full = rows.len() >= page as usize;
            if full && !rows.windows(2).all(|w| w[0].start <= w[1].start) {
                return Err(FetchError::Refused(format!(
                    "getBookings returned a full page of {page} not in ascending start order, \
                     so the rest of the month cannot be asked for safely"
                )));
            }
            let last_day = rows
                .iter()
                .filter_map(|r| NaiveDate::parse_from_str(r.start.get(..10)?, "%Y-%m-%d").ok())
                .max();
            let before = listed.len();
            for row in rows {
                listed.insert(row.id.clone(), row);
            }
            // Done when a page brings nothing new. A short page is not taken as the end: the
            // API documents no `limit`, so a smaller cap of SimplyBook's own would look the same;
            // asking again from the last day reached costs one call and proves it.
            let Some(last_day) = last_day else { break };
            if listed.len() == before {
                break;
            }
            if last_day <= day && full {
                return Err(FetchError::Refused(format!(
                    "more than {page} bookings start on {day}: raise \
                     LEDGER_SIMPLYBOOK_PAGE_SIZE to list them"
                )));
            }
            day = last_day.max(day);
        }
        Ok(listed.into_values().collect())
    }

    /// The company's Status-feature labels by id (admin `getStatuses`); none when the company
    /// does not use the feature (SimplyBook answers "Plugin is not activated").
    pub async fn statuses(&self) -> Result<BTreeMap<String, simplybook::StatusLabel>, FetchError> {
        match self
            .rpc(Api::Admin, "getStatuses", &serde_json::json!([]))
            .await
        {
            Ok(raw) => Ok(simplybook::parse_statuses(&raw)?),
            Err(FetchError::FeatureOff(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// The company's time zone as SimplyBook reports it (`getCompanyInfo().timezone`).
    pub async fn company_time_zone(&self) -> Result<Option<String>, FetchError> {
        let raw = self
            .rpc(Api::Admin, "getCompanyInfo", &serde_json::json!([]))
            .await?;
        simplybook::company_time_zone(&raw)
            .map_err(|e| FetchError::Details(DetailsError::Payload(e)))
    }
}
