//! Each tenant's hash chain as the verifier reads it: booking and revision records in chain order
//! with the chain head, read in one snapshot; the heads alone; one record's stored hash.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::handle::Store;
use crate::integrity::{Amounts, ChainRecord, Fields};

/// A price revision as the verifier reads it: its chained fields and the amounts before it.
struct ChainRevisionRow {
    chain_seq: i64,
    id: Uuid,
    booking_ref: String,
    currency: String,
    revision_no: i32,
    total_delta: Decimal,
    deposit_delta: Decimal,
    cash_delta: Decimal,
    fee_delta: Decimal,
    total_after: Decimal,
    deposit_after: Decimal,
    cash_after: Decimal,
    fee_after: Decimal,
    prev_hash: String,
    record_hash: String,
    total_before: Option<Decimal>,
    deposit_before: Option<Decimal>,
    cash_before: Option<Decimal>,
    fee_before: Option<Decimal>,
}

impl ChainRevisionRow {
    fn into_record(self) -> ChainRecord {
        let before = match (
            self.total_before,
            self.deposit_before,
            self.cash_before,
            self.fee_before,
        ) {
            (Some(total), Some(deposit), Some(cash), Some(fee)) => Some(Amounts {
                total,
                deposit,
                cash,
                fee,
            }),
            _ => None,
        };
        ChainRecord {
            chain_seq: self.chain_seq,
            id: self.id,
            booking_ref: self.booking_ref,
            currency: self.currency,
            fields: Fields::Revision {
                revision_no: self.revision_no,
                total_delta: self.total_delta,
                deposit_delta: self.deposit_delta,
                cash_delta: self.cash_delta,
                fee_delta: self.fee_delta,
                after: Amounts {
                    total: self.total_after,
                    deposit: self.deposit_after,
                    cash: self.cash_after,
                    fee: self.fee_after,
                },
                before,
            },
            prev_hash: self.prev_hash,
            record_hash: self.record_hash,
        }
    }
}

impl Store {
    /// The stored hash of `tenant`'s record at chain position `seq` (a booking or a revision).
    pub async fn record_hash_at(
        &self,
        tenant_id: &str,
        seq: i64,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar!(
            r#"select record_hash as "record_hash!" from ledger.bookings
               where tenant_id = $1 and chain_seq = $2
               union all
               select record_hash from ledger.booking_revisions
               where tenant_id = $1 and chain_seq = $2"#,
            tenant_id,
            seq
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// Every tenant's chain head: (tenant, last position, last hash).
    pub async fn chain_heads(&self) -> Result<Vec<(String, i64, String)>, sqlx::Error> {
        let heads = sqlx::query!(
            "select tenant_id, last_seq, last_hash from ledger.chain_heads order by tenant_id"
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(heads
            .into_iter()
            .map(|h| (h.tenant_id, h.last_seq, h.last_hash))
            .collect())
    }

    /// The first booking of `tenant_id` (in chain order) whose sealed client details name a key
    /// that is not one of the tenant's: `(chain_seq, booking id, booking ref, key id)`. The
    /// ledger never writes one (a batch names only keys it read or made, and keys are never
    /// deleted); the tables hold no foreign key for it, for the drain's sake (migration 0011).
    pub async fn foreign_client_key(
        &self,
        tenant_id: &str,
    ) -> Result<Option<(i64, Uuid, String, Uuid)>, sqlx::Error> {
        let row = sqlx::query!(
            r#"select b.chain_seq, b.id, b.booking_ref, b.client_key_id as "key_id!"
               from ledger.bookings b
               where b.tenant_id = $1 and b.client_key_id is not null
                 and not exists (select 1 from ledger.client_keys k
                                 where k.id = b.client_key_id and k.tenant_id = b.tenant_id)
               order by b.chain_seq limit 1"#,
            tenant_id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.chain_seq, r.id, r.booking_ref, r.key_id)))
    }

    /// Every record of a tenant's hash chain in chain order, and the chain head.
    pub async fn chain(
        &self,
        tenant_id: &str,
    ) -> Result<(Vec<ChainRecord>, Option<(i64, String)>), sqlx::Error> {
        self.chain_from(tenant_id, 1).await
    }

    /// The records of `tenant_id`'s chain from position `from` on, and its head.
    pub async fn chain_from(
        &self,
        tenant_id: &str,
        from: i64,
    ) -> Result<(Vec<ChainRecord>, Option<(i64, String)>), sqlx::Error> {
        // One snapshot for records and head, so a concurrent append cannot look like tampering.
        let mut tx = self
            .pool
            .begin_with("begin isolation level repeatable read, read only")
            .await?;
        let bookings = sqlx::query!(
            "select chain_seq, id, booking_ref, currency, total_amount, deposit_amount,
                    cash_amount, platform_fee, deposit_rate, platform_fee_rate, prev_hash,
                    record_hash, client_digest
             from ledger.bookings where tenant_id = $1 and chain_seq >= $2",
            tenant_id,
            from
        )
        .fetch_all(&mut *tx)
        .await?;
        let revisions = sqlx::query_as!(
            ChainRevisionRow,
            "select r.chain_seq, r.id, b.booking_ref, r.currency, r.revision_no, r.total_delta,
                    r.deposit_delta, r.cash_delta, r.fee_delta, r.total_after, r.deposit_after,
                    r.cash_after, r.fee_after, r.prev_hash, r.record_hash,
                    case when r.revision_no = 1 then b.total_amount else p.total_after end
                        as total_before,
                    case when r.revision_no = 1 then b.deposit_amount else p.deposit_after end
                        as deposit_before,
                    case when r.revision_no = 1 then b.cash_amount else p.cash_after end
                        as cash_before,
                    case when r.revision_no = 1 then b.platform_fee else p.fee_after end
                        as fee_before
             from ledger.booking_revisions r
             join ledger.bookings b on b.id = r.booking_id
             left join ledger.booking_revisions p
                 on p.booking_id = r.booking_id and p.revision_no = r.revision_no - 1
             where r.tenant_id = $1 and r.chain_seq >= $2",
            tenant_id,
            from
        )
        .fetch_all(&mut *tx)
        .await?;
        let head = sqlx::query!(
            "select last_seq, last_hash from ledger.chain_heads where tenant_id = $1",
            tenant_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|h| (h.last_seq, h.last_hash));
        tx.commit().await?;
        let mut records: Vec<ChainRecord> = bookings
            .into_iter()
            .map(|b| ChainRecord {
                chain_seq: b.chain_seq,
                id: b.id,
                booking_ref: b.booking_ref,
                currency: b.currency,
                fields: Fields::Booking {
                    total: b.total_amount,
                    deposit: b.deposit_amount,
                    cash: b.cash_amount,
                    platform_fee: b.platform_fee,
                    deposit_rate: b.deposit_rate,
                    fee_rate: b.platform_fee_rate,
                    client_digest: b.client_digest,
                },
                prev_hash: b.prev_hash,
                record_hash: b.record_hash,
            })
            .chain(revisions.into_iter().map(ChainRevisionRow::into_record))
            .collect();
        records.sort_by_key(|r| r.chain_seq);
        Ok((records, head))
    }
}
