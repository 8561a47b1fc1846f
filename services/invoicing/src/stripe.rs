//! Stripe mode: an invoice is pushed to Stripe as a `send_invoice` invoice (customer, invoice,
//! items, finalize, send) and becomes `issued` when Stripe has sent it. Every call carries an
//! idempotency key derived from our invoice, and each step's result is saved before the next,
//! so a retry after an outage resumes where it stopped and never makes a second Stripe invoice.
//!
//! Within Stripe's limits (docs/contracts/stripe.md has the sources):
//! - the `number` is ours and at most 26 characters; a longer one is refused before any call;
//! - `due_date` is a timestamp, the last second of our due date in the tenant's zone (the
//!   overdue sweep's own boundary), never `days_until_due`, which would count from the day of
//!   the push; Stripe refuses a due date in the past, so a push that runs after our due date
//!   gives Stripe the end of the first day at least an hour ahead, keeps our due date on our
//!   invoice and PDF, and says so in the invoice's history;
//! - a request whose answer is lost (connection dropped, timeout, 409, 429, 5xx) is tried again
//!   with the same key, which Stripe answers with the saved response;
//! - Stripe forgets keys after 24 hours, so before creating anything the push looks for what an
//!   earlier, unanswered attempt may have made: the customer by email and `tenant_id` metadata,
//!   the invoice among the customer's by `invoice_id` metadata, the items by their `item`
//!   metadata. Found objects are used, never duplicated;
//! - a 401 is reported without Stripe's message, which quotes part of the key.

mod errors;
mod find;
mod limits;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use billing_domain::Currency;
use billing_domain::secret::Secret;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use stripe::{RequestStrategy, StripeError, StripeRequest};
use stripe_billing::invoice::{
    CreateInvoice, CreateInvoicePendingInvoiceItemsBehavior, DeleteInvoice, FinalizeInvoiceInvoice,
    RetrieveInvoice, SendInvoiceInvoice, VoidInvoiceInvoice,
};
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_billing::{Invoice, InvoiceCollectionMethod, InvoiceStatus as StripeInvoiceStatus};

use crate::profile::{Profile, Profiles};
use crate::store::{
    InvoiceRow, InvoiceStatus, InvoicingMode, LINE_ADJUSTMENT, LINE_BOOKING, Store,
};

pub use errors::PushError;
use errors::{maybe_executed, worth_retrying};
use find::our_metadata;
use limits::{check_number, end_of_day, stripe_due};

/// Attempts per request when the answer is lost or Stripe says to come back.
const ATTEMPTS: u32 = 3;
/// Wait before the second attempt; twice as long before the third.
const BACKOFF: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct StripeBilling {
    client: stripe::Client,
    store: Store,
    profiles: Profiles,
}

impl StripeBilling {
    /// `api_base` is `https://api.stripe.com` in production and a local fake in tests.
    pub fn new(
        api_base: &str,
        api_key: &Secret<String>,
        timeout: Duration,
        store: Store,
        profiles: Profiles,
    ) -> Result<Self, StripeError> {
        let client = stripe::ClientBuilder::new(api_key.expose().as_str())
            .url(api_base)
            .timeout(timeout)
            .build()?;
        Ok(StripeBilling {
            client,
            store,
            profiles,
        })
    }

    /// Brings a draft invoice to `issued` through Stripe, resuming after the last saved step.
    /// Returns the invoice as it is afterwards.
    #[tracing::instrument(skip_all, fields(invoice = %invoice.number))]
    pub async fn push(
        &self,
        profile: &Profile,
        invoice: &InvoiceRow,
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, PushError> {
        check_number(&invoice.number, &invoice.tenant_id)?;
        let currency = invoice
            .currency()
            .ok_or(PushError::Incomplete("a known currency"))?;
        let zone: Tz = invoice.time_zone.parse().unwrap_or(profile.time_zone);
        let due = stripe_due(invoice.due_date, zone, now);
        let customer = self.customer(profile).await?;
        let key = |step: &str| idempotent(&format!("invoice-{}-{step}", invoice.id));

        let stripe_id = match &invoice.stripe_invoice_id {
            Some(id) => id.clone(),
            None => {
                let id = match self.find_invoice(&customer, invoice.id).await? {
                    Some(id) => id,
                    None => {
                        if due.moved {
                            tracing::warn!(due = %invoice.due_date, stripe_due = %due.at,
                                "due date passed before the push: stripe gets a later one");
                        }
                        let create = CreateInvoice::new()
                            .customer(customer.as_str())
                            .collection_method(InvoiceCollectionMethod::SendInvoice)
                            .due_date(due.at.timestamp())
                            .currency(stripe_currency(currency))
                            .auto_advance(false)
                            .pending_invoice_items_behavior(
                                CreateInvoicePendingInvoiceItemsBehavior::Exclude,
                            )
                            .number(invoice.number.as_str())
                            .description(format!("Platform fees for {}", invoice.period))
                            .metadata(our_metadata(invoice, None));
                        let created = self
                            .retrying(|| {
                                create
                                    .customize()
                                    .request_strategy(key("create"))
                                    .send(&self.client)
                            })
                            .await;
                        match created {
                            Ok(created) => created
                                .id
                                .ok_or(PushError::Incomplete("an invoice id"))?
                                .to_string(),
                            // Stripe may have made it: find it rather than make another.
                            Err(err) if maybe_executed(&err) => {
                                match self.find_invoice(&customer, invoice.id).await? {
                                    Some(id) => id,
                                    None => return Err(err.into()),
                                }
                            }
                            Err(err) => return Err(err.into()),
                        }
                    }
                };
                self.store
                    .save_stripe(invoice.id, Some(&id), None, None, None)
                    .await?;
                id
            }
        };

        // Progress is saved after each item; the items' metadata also finds one whose answer
        // was lost after Stripe forgot its key (24 hours).
        let done = usize::try_from(invoice.stripe_items_created).unwrap_or(0);
        let items = self.items(invoice, currency).await?;
        let on_stripe = if done < items.len() {
            self.items_on(&stripe_id, invoice.id).await?
        } else {
            HashSet::new()
        };
        for (n, (description, amount)) in items.iter().enumerate().skip(done) {
            if !on_stripe.contains(&n) {
                let create = CreateInvoiceItem::new()
                    .customer(customer.as_str())
                    .invoice(stripe_id.as_str())
                    .amount(minor_units(*amount, currency)?)
                    .currency(stripe_currency(currency))
                    .description(description.as_str())
                    .metadata(our_metadata(invoice, Some(n)));
                self.retrying(|| {
                    create
                        .customize()
                        .request_strategy(key(&format!("item-{n}")))
                        .send(&self.client)
                })
                .await?;
            }
            let created = i32::try_from(n + 1).unwrap_or(i32::MAX);
            self.store
                .save_stripe(invoice.id, None, Some(created), None, None)
                .await?;
        }

        let finalize = FinalizeInvoiceInvoice::new(stripe_id.as_str()).auto_advance(false);
        let finalized = match self
            .retrying(|| {
                finalize
                    .customize()
                    .request_strategy(key("finalize"))
                    .send(&self.client)
            })
            .await
        {
            Ok(finalized) => finalized,
            // Finalized by an earlier attempt whose idempotency key Stripe no longer keeps.
            Err(StripeError::Stripe(_, 400)) => self.retrieve(&stripe_id).await?,
            Err(err) => return Err(err.into()),
        };
        if finalized.status == Some(StripeInvoiceStatus::Draft) {
            return Err(PushError::Incomplete("a finalized invoice"));
        }
        self.store
            .save_stripe(
                invoice.id,
                None,
                None,
                finalized.number.as_deref(),
                finalized.hosted_invoice_url.as_deref(),
            )
            .await?;
        if finalized.status == Some(StripeInvoiceStatus::Open) {
            let send = SendInvoiceInvoice::new(stripe_id.as_str());
            self.retrying(|| {
                send.customize()
                    .request_strategy(key("send"))
                    .send(&self.client)
            })
            .await?;
        }

        let mut reason = format!("sent by Stripe as {stripe_id}");
        let stripes = finalized.due_date.unwrap_or(due.at.timestamp());
        if stripes != end_of_day(invoice.due_date, zone).timestamp() {
            let local = DateTime::from_timestamp(stripes, 0)
                .map(|t| t.with_timezone(&zone).date_naive().to_string())
                .unwrap_or_else(|| stripes.to_string());
            reason.push_str(&format!(
                "; Stripe's due date is {local}: ours, {}, had passed when it was pushed",
                invoice.due_date
            ));
        }
        let mut tx = self.store.begin().await?;
        let current = self
            .store
            .lock_invoice(&mut tx, invoice.id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let issued = if current.status == InvoiceStatus::Draft {
            self.store
                .transition(&mut tx, &current, InvoiceStatus::Issued, &reason, now)
                .await?
        } else {
            current
        };
        tx.commit().await?;
        Ok(issued)
    }

    /// Voids the Stripe side of an invoice: a finalized Stripe invoice is voided, a Stripe
    /// draft deleted. Nothing to do when Stripe never got it.
    pub async fn void(&self, invoice: &InvoiceRow) -> Result<(), PushError> {
        let stripe_id = match &invoice.stripe_invoice_id {
            Some(id) => Some(id.clone()),
            // A push whose answer was lost may have left a Stripe invoice we never saved.
            None if invoice.invoicing_mode == InvoicingMode::Stripe => {
                match self
                    .profiles
                    .get(&invoice.tenant_id)
                    .await?
                    .and_then(|p| p.stripe_customer_id)
                {
                    Some(customer) => self.find_invoice(&customer, invoice.id).await?,
                    None => None,
                }
            }
            None => None,
        };
        let Some(stripe_id) = stripe_id else {
            return Ok(());
        };
        let current = self.retrieve(&stripe_id).await?;
        let key = |step: &str| idempotent(&format!("invoice-{}-{step}", invoice.id));
        match current.status {
            Some(StripeInvoiceStatus::Draft) => {
                let delete = DeleteInvoice::new(stripe_id.as_str());
                self.retrying(|| delete.customize().send(&self.client))
                    .await?;
            }
            Some(StripeInvoiceStatus::Void) => {}
            _ => {
                let void = VoidInvoiceInvoice::new(stripe_id.as_str());
                self.retrying(|| {
                    void.customize()
                        .request_strategy(key("void"))
                        .send(&self.client)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Sends a request (built afresh by `attempt`) up to [`ATTEMPTS`] times while its answer is
    /// lost or Stripe says to come back; the idempotency key makes a repeat safe.
    async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, StripeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(err) if tries < ATTEMPTS && worth_retrying(&err) => {
                    tracing::warn!(attempt = tries, error = %PushError::from(err),
                        "stripe request failed, trying again with the same key");
                    tokio::time::sleep(BACKOFF * tries).await;
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    async fn retrieve(&self, stripe_id: &str) -> Result<Invoice, StripeError> {
        let retrieve = RetrieveInvoice::new(stripe_id);
        self.retrying(|| retrieve.customize().send(&self.client))
            .await
    }

    /// The Stripe invoice's items: the booking fees in one item, the adjustments in another,
    /// tax in a third, so Stripe's total equals ours to the cent (the lines are on our PDF;
    /// Stripe caps items per invoice).
    async fn items(
        &self,
        invoice: &InvoiceRow,
        currency: Currency,
    ) -> Result<Vec<(String, Decimal)>, PushError> {
        let lines = self.store.lines(invoice.id).await?;
        let sum = |kind: &str| -> (usize, Decimal) {
            lines
                .iter()
                .filter(|l| l.kind == kind)
                .fold((0, Decimal::ZERO), |(n, s), l| (n + 1, s + l.platform_fee))
        };
        let mut items = Vec::new();
        let (bookings, fees) = sum(LINE_BOOKING);
        if bookings > 0 {
            items.push((
                format!("Platform fees, {bookings} bookings, {}", invoice.period),
                fees,
            ));
        }
        let (adjustments, adjusted) = sum(LINE_ADJUSTMENT);
        if adjustments > 0 {
            items.push((
                format!("Adjustments to earlier invoices ({adjustments})"),
                adjusted,
            ));
        }
        if !invoice.tax.is_zero() {
            items.push((
                format!(
                    "Tax {}%",
                    (invoice.tax_rate * Decimal::ONE_HUNDRED).normalize()
                ),
                invoice.tax,
            ));
        }
        debug_assert_eq!(
            items.iter().map(|(_, a)| *a).sum::<Decimal>(),
            currency.round(invoice.total)
        );
        Ok(items)
    }
}

fn idempotent(key: &str) -> RequestStrategy {
    // Our keys are short ASCII, well under Stripe's 255 characters.
    match stripe::IdempotencyKey::new(key) {
        Ok(key) => RequestStrategy::Idempotent(key),
        Err(_) => RequestStrategy::Once,
    }
}

fn stripe_currency(currency: Currency) -> stripe_types::Currency {
    // Parsing a currency code cannot fail; unknown codes become `Unknown`.
    currency
        .code()
        .to_ascii_lowercase()
        .parse()
        .unwrap_or(stripe_types::Currency::AUD)
}

/// An amount in the currency's minor unit (cents; yen for JPY), as Stripe wants it.
pub fn minor_units(amount: Decimal, currency: Currency) -> Result<i64, PushError> {
    let scaled = amount * Decimal::from(10_i64.pow(currency.exponent()));
    if scaled.fract() != Decimal::ZERO {
        return Err(PushError::Amount(amount));
    }
    scaled.to_i64().ok_or(PushError::Amount(amount))
}

/// An amount from Stripe's minor unit.
pub fn from_minor_units(amount: i64, currency: Currency) -> Decimal {
    Decimal::new(amount, currency.exponent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_the_currency_exponent() {
        let aud: Currency = "AUD".parse().expect("AUD");
        let jpy: Currency = "JPY".parse().expect("JPY");
        assert_eq!(minor_units(Decimal::new(7510, 2), aud).ok(), Some(7510));
        assert_eq!(minor_units(Decimal::new(4001, 0), jpy).ok(), Some(4001));
        assert!(minor_units(Decimal::new(40015, 1), jpy).is_err());
        assert_eq!(from_minor_units(7510, aud), Decimal::new(7510, 2));
        assert_eq!(from_minor_units(4001, jpy), Decimal::new(4001, 0));
    }
}
