//! Deposits received: the receipts imported from a tenant's deposits export, the bookings they
//! are matched to, and what the month statement reads of a month (its bookings with their
//! deposits, the lines naming none, the latest reconciliation with SimplyBook).

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::bookings::query_bookings;
use super::handle::Store;

/// A booking as deposits are matched to it and reported.
#[derive(Debug, Clone)]
pub struct DepositBooking {
    pub booking_ref: String,
    pub status: String,
    pub session_at: DateTime<Utc>,
    pub total_amount: Decimal,
    pub deposit_amount: Decimal,
    pub platform_fee: Decimal,
    pub client_key_id: Option<Uuid>,
}

/// A stored receipt: one line of a deposits export.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub line: i32,
    pub received_on: NaiveDate,
    pub amount: Decimal,
    pub booking_ref: Option<String>,
    pub imported_at: DateTime<Utc>,
}

/// A line to store.
#[derive(Debug, Clone)]
pub struct NewReceipt<'a> {
    pub tenant_id: &'a str,
    pub line_key: &'a str,
    pub period: &'a str,
    pub received_on: NaiveDate,
    pub amount: Decimal,
    pub currency: &'a str,
    pub line: i32,
    pub booking_ref: Option<&'a str>,
}

/// The latest reconciliation of a month with SimplyBook, with its gaps.
#[derive(Debug, Clone)]
pub struct LatestReconciliation {
    pub ran_at: DateTime<Utc>,
    pub simplybook_bookings: i32,
    pub ledger_bookings: i32,
    pub matched: i32,
    pub error: Option<String>,
    /// (booking_ref, kind, SimplyBook's value, the ledger's).
    pub gaps: Vec<(String, String, String, String)>,
}

/// [`query_bookings!`] into [`DepositBooking`].
macro_rules! query_deposit_bookings {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        query_bookings!(
            DepositBooking,
            r#"b.booking_ref, b.status, b.session_at,
               coalesce(r.total_after, b.total_amount) as "total_amount!",
               coalesce(r.deposit_after, b.deposit_amount) as "deposit_amount!",
               coalesce(r.fee_after, b.platform_fee) as "platform_fee!",
               b.client_key_id"#,
            $rest
            $(, $arg)*
        )
    };
}

impl Store {
    /// The tenant's bookings whose SimplyBook id is one of `refs`.
    pub async fn deposit_bookings_by_ref(
        &self,
        tenant_id: &str,
        refs: &[String],
    ) -> Result<Vec<DepositBooking>, sqlx::Error> {
        query_deposit_bookings!(
            "where b.tenant_id = $1 and b.booking_ref = any($2)
             order by b.session_at, b.booking_ref",
            tenant_id,
            refs
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The tenant's bookings with sessions in `[from, to)`.
    pub async fn deposit_bookings_between(
        &self,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DepositBooking>, sqlx::Error> {
        query_deposit_bookings!(
            "where b.tenant_id = $1 and b.session_at >= $2 and b.session_at < $3
             order by b.session_at, b.booking_ref",
            tenant_id,
            from,
            to
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Bookings not cancelled, with sessions in `[from, to)`, whose deposit is `amount`: what a
    /// line naming no booking could be the deposit of.
    pub async fn deposit_candidates(
        &self,
        tenant_id: &str,
        amount: Decimal,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DepositBooking>, sqlx::Error> {
        query_deposit_bookings!(
            "where b.tenant_id = $1 and b.session_at >= $3 and b.session_at < $4
               and b.status <> 'cancelled'
               and coalesce(r.deposit_after, b.deposit_amount) = $2
             order by b.session_at, b.booking_ref
             limit 20",
            tenant_id,
            amount,
            from,
            to
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The receipt stored for a line, if any.
    pub async fn receipt_by_key(
        &self,
        tenant_id: &str,
        line_key: &str,
    ) -> Result<Option<Receipt>, sqlx::Error> {
        sqlx::query_as!(
            Receipt,
            "select line, received_on, amount, booking_ref, imported_at
             from ledger.deposit_receipts where tenant_id = $1 and line_key = $2",
            tenant_id,
            line_key
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// Stores a line; a line stored before is left as it was, except that one that named no
    /// booking takes the booking it names now. True when something was written.
    pub async fn store_receipt(&self, r: &NewReceipt<'_>) -> Result<bool, sqlx::Error> {
        let written = sqlx::query!(
            "insert into ledger.deposit_receipts (tenant_id, line_key, period, received_on, amount,
                 currency, line, booking_ref, matched_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, case when $8::text is null then null else now() end)
             on conflict (tenant_id, line_key) do update
                 set booking_ref = excluded.booking_ref, period = excluded.period,
                     matched_at = excluded.matched_at
                 where deposit_receipts.booking_ref is null and excluded.booking_ref is not null",
            r.tenant_id,
            r.line_key,
            r.period,
            r.received_on,
            r.amount,
            r.currency,
            r.line,
            r.booking_ref
        )
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() > 0)
    }

    /// The receipts matched to the given bookings, oldest first.
    pub async fn receipts_of(
        &self,
        tenant_id: &str,
        refs: &[String],
    ) -> Result<Vec<Receipt>, sqlx::Error> {
        sqlx::query_as!(
            Receipt,
            "select line, received_on, amount, booking_ref, imported_at
             from ledger.deposit_receipts where tenant_id = $1 and booking_ref = any($2)
             order by received_on, id",
            tenant_id,
            refs
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The month's receipts that name no booking.
    pub async fn unmatched_receipts(
        &self,
        tenant_id: &str,
        period: &str,
    ) -> Result<Vec<Receipt>, sqlx::Error> {
        sqlx::query_as!(
            Receipt,
            "select line, received_on, amount, booking_ref, imported_at
             from ledger.deposit_receipts
             where tenant_id = $1 and period = $2 and booking_ref is null
             order by received_on, id",
            tenant_id,
            period
        )
        .fetch_all(&self.pool)
        .await
    }

    /// The latest reconciliation of the tenant's month with SimplyBook, with its gaps.
    pub async fn latest_reconciliation(
        &self,
        tenant_id: &str,
        period: &str,
    ) -> Result<Option<LatestReconciliation>, sqlx::Error> {
        let Some(run) = sqlx::query!(
            "select id, ran_at, simplybook_bookings, ledger_bookings, matched, error
             from ledger.reconciliations where tenant_id = $1 and period = $2
             order by ran_at desc, id desc limit 1",
            tenant_id,
            period
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let gaps = sqlx::query!(
            "select booking_ref, kind, simplybook, ledger from ledger.reconciliation_gaps
             where reconciliation_id = $1 order by booking_ref, kind",
            run.id
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|g| (g.booking_ref, g.kind, g.simplybook, g.ledger))
        .collect();
        Ok(Some(LatestReconciliation {
            ran_at: run.ran_at,
            simplybook_bookings: run.simplybook_bookings,
            ledger_bookings: run.ledger_bookings,
            matched: run.matched,
            error: run.error,
            gaps,
        }))
    }
}
