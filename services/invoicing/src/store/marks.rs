//! Booking marks: a row per booking the ledger announced as changed (`booking_marks`), so the
//! next close of its tenant asks the ledger for the booking's current state and bills the
//! difference from what live invoices billed for it. A close clears the marks it settled; a
//! void marks its invoice's bookings again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use super::invoices::InvoiceRow;

/// A booking the ledger announced as changed; `seq` identifies this mark (a newer change of the
/// same booking replaces it with a higher one).
#[derive(Debug, Clone)]
pub struct Mark {
    pub booking_id: Uuid,
    pub session_at: DateTime<Utc>,
    pub seq: i64,
}

/// A booking event reduced to what a mark needs.
#[derive(Debug, Clone)]
pub struct MarkUpdate {
    pub tenant_id: String,
    pub booking_id: Uuid,
    pub session_at: DateTime<Utc>,
}

impl Store {
    /// The tenant's marks for sessions before `end`.
    pub async fn marks_before(
        &self,
        tenant_id: &str,
        end: DateTime<Utc>,
    ) -> Result<Vec<Mark>, sqlx::Error> {
        sqlx::query_as!(
            Mark,
            r#"select booking_id, session_at, mark_seq as "seq" from invoicing.booking_marks
               where tenant_id = $1 and session_at < $2"#,
            tenant_id,
            end
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Records that these bookings changed; a booking already marked gets a new mark.
    pub async fn mark(&self, updates: &[MarkUpdate]) -> Result<(), sqlx::Error> {
        // One row per booking per statement: `on conflict` cannot touch a row twice.
        let mut latest: HashMap<(String, Uuid), DateTime<Utc>> = HashMap::new();
        for u in updates {
            latest.insert((u.tenant_id.clone(), u.booking_id), u.session_at);
        }
        let (keys, sessions): (Vec<_>, Vec<_>) = latest.into_iter().unzip();
        let (tenants, ids): (Vec<String>, Vec<Uuid>) = keys.into_iter().unzip();
        sqlx::query!(
            "insert into invoicing.booking_marks (tenant_id, booking_id, session_at)
             select * from unnest($1::text[], $2::uuid[], $3::timestamptz[])
             on conflict (tenant_id, booking_id) do update
                set session_at = excluded.session_at,
                    mark_seq = nextval('invoicing.booking_mark_seq'), marked_at = now()",
            tenants.as_slice(),
            ids.as_slice(),
            sessions.as_slice()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the given marks unless the booking was marked again since they were read.
    pub async fn clear_marks(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
        marks: &[&Mark],
    ) -> Result<(), sqlx::Error> {
        if marks.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = marks.iter().map(|m| m.booking_id).collect();
        let seqs: Vec<i64> = marks.iter().map(|m| m.seq).collect();
        sqlx::query!(
            "delete from invoicing.booking_marks m
             using unnest($2::uuid[], $3::bigint[]) as seen (booking_id, seq)
             where m.tenant_id = $1 and m.booking_id = seen.booking_id and m.mark_seq = seen.seq",
            tenant_id,
            ids.as_slice(),
            seqs.as_slice()
        )
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Marks the bookings of every line of a voided invoice again: what it billed no longer
    /// counts, so the next close (or the month's new invoice) bills them anew.
    pub async fn remark_lines(
        &self,
        tx: &mut PgConnection,
        invoice: &InvoiceRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "insert into invoicing.booking_marks (tenant_id, booking_id, session_at)
             select $2, booking_id, session_at from invoicing.invoice_lines where invoice_id = $1
             on conflict (tenant_id, booking_id) do update
                set mark_seq = nextval('invoicing.booking_mark_seq'), marked_at = now()",
            invoice.id,
            invoice.tenant_id
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}
