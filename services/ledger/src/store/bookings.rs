//! Bookings as they stand (the original record with its latest revision's amounts), their
//! status history and price revisions: the reads behind the gRPC API and the monthly close.

use billing_domain::Currency;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::handle::Store;

/// A booking as stored.
#[derive(Debug, Clone)]
pub struct BookingRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub booking_ref: String,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: String,
    pub currency: String,
    pub total_amount: Decimal,
    pub deposit_amount: Decimal,
    pub cash_amount: Decimal,
    pub platform_fee: Decimal,
    pub deposit_rate: Decimal,
    pub platform_fee_rate: Decimal,
    pub record_hash: String,
    pub recorded_at: DateTime<Utc>,
    /// 0 for the original amounts, n after the n-th price revision.
    pub revision_no: i32,
}

impl BookingRow {
    pub fn currency(&self) -> Option<Currency> {
        self.currency.trim().parse().ok()
    }
}

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub service_name: Option<String>,
    pub event_id: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RevisionRow {
    pub revision_no: i32,
    pub total_delta: Decimal,
    pub fee_delta: Decimal,
    pub total_after: Decimal,
    pub fee_after: Decimal,
    pub record_hash: String,
    pub source_event_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// `sqlx::query_as!` into `$row` from the bookings with their latest price revision, if any,
/// checked at build time: the SQL is `select`, `$columns` (of `b`, the booking, and `r`, its
/// latest revision), the join, then `$rest`. A macro rather than a view or a spliced string: the
/// query macros take only literals. The revision is a lateral lookup per selected booking (by
/// the `(booking_id, revision_no)` index), so the cost follows the rows selected, not the table.
macro_rules! query_bookings {
    ($row:path, $columns:literal, $rest:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $row,
            "select "
                + $columns
                + " from ledger.bookings b left join lateral (
                    select revision_no, total_after, deposit_after, cash_after, fee_after
                    from ledger.booking_revisions where booking_id = b.id
                    order by revision_no desc limit 1) r on true "
                + $rest
            $(, $arg)*
        )
    };
}
pub(super) use query_bookings;

/// [`query_bookings!`] into [`BookingRow`]: each booking with its current amounts (the latest
/// price revision's, or the original's).
macro_rules! query_booking_rows {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        query_bookings!(
            BookingRow,
            r#"b.id, b.tenant_id, b.booking_ref, b.status, b.session_at, b.service_name,
               b.currency,
               coalesce(r.total_after, b.total_amount) as "total_amount!",
               coalesce(r.deposit_after, b.deposit_amount) as "deposit_amount!",
               coalesce(r.cash_after, b.cash_amount) as "cash_amount!",
               coalesce(r.fee_after, b.platform_fee) as "platform_fee!",
               b.deposit_rate, b.platform_fee_rate, b.record_hash, b.recorded_at,
               coalesce(r.revision_no, 0) as "revision_no!""#,
            $rest
            $(, $arg)*
        )
    };
}

impl Store {
    /// A tenant's bookings with sessions in `[from, to)` (either bound optional).
    pub async fn list(
        &self,
        tenant_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        status: Option<&str>,
        after: Option<(DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        let (after_at, after_ref) = after.unzip();
        query_booking_rows!(
            "where b.tenant_id = $1
               and ($2::timestamptz is null or b.session_at >= $2)
               and ($3::timestamptz is null or b.session_at < $3)
               and ($4::text is null or b.status = $4)
               and ($5::timestamptz is null or (b.session_at, b.booking_ref) > ($5, $6))
             order by b.session_at, b.booking_ref
             limit $7",
            tenant_id,
            from,
            to,
            status,
            after_at,
            after_ref,
            limit
        )
        .fetch_all(&self.pool)
        .await
    }

    /// One booking, if recorded.
    pub async fn booking(
        &self,
        tenant_id: &str,
        booking_ref: &str,
    ) -> Result<Option<BookingRow>, sqlx::Error> {
        query_booking_rows!(
            "where b.tenant_id = $1 and b.booking_ref = $2",
            tenant_id,
            booking_ref
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// A booking's status history, oldest first.
    pub async fn history(&self, booking_id: Uuid) -> Result<Vec<HistoryRow>, sqlx::Error> {
        sqlx::query_as!(
            HistoryRow,
            "select status, session_at, service_name, event_id, changed_at
             from ledger.booking_status_history where booking_id = $1 order by id",
            booking_id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// A booking's price revisions, oldest first.
    pub async fn revisions(&self, booking_id: Uuid) -> Result<Vec<RevisionRow>, sqlx::Error> {
        sqlx::query_as!(
            RevisionRow,
            "select revision_no, total_delta, fee_delta, total_after, fee_after, record_hash,
                    source_event_id, recorded_at
             from ledger.booking_revisions where booking_id = $1 order by revision_no",
            booking_id
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The given bookings of a tenant, as they stand now.
    pub async fn by_ids(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        query_booking_rows!(
            "where b.tenant_id = $1 and b.id = any($2)
             order by b.session_at, b.booking_ref",
            tenant_id,
            ids
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Billable bookings (confirmed or completed) with sessions in `[start, end)`.
    pub async fn billable(
        &self,
        tenant_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<BookingRow>, sqlx::Error> {
        query_booking_rows!(
            "where b.tenant_id = $1 and b.session_at >= $2 and b.session_at < $3
               and b.status in ('confirmed', 'completed')
             order by b.session_at, b.booking_ref",
            tenant_id,
            start,
            end
        )
        .fetch_all(&self.pool)
        .await
    }
}

#[cfg(test)]
mod tests {
    use billing_domain::BookingStatus;

    /// [`Store::billable`](super::Store::billable) selects `b.status in ('confirmed',
    /// 'completed')`, spelled out in its SQL: exactly the statuses the domain bills.
    #[test]
    fn the_billable_query_names_the_statuses_the_domain_bills() {
        let statuses = [
            ("pending", false),
            ("confirmed", true),
            ("cancelled", false),
            ("completed", true),
            ("no_show", false),
        ];
        for (status, billable) in statuses {
            let parsed = BookingStatus::parse(status).map(|s| s.is_billable());
            assert_eq!(parsed, Some(billable), "{status}");
        }
    }
}
