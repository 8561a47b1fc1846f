//! Stripe mode: an invoice is pushed to Stripe as a `send_invoice` invoice (customer, invoice,
//! items, finalize, send) and becomes `issued` when Stripe has sent it. Every call carries an
//! idempotency key derived from our invoice, and each step's result is saved before the next,
//! so a retry after an outage resumes where it stopped and never makes a second Stripe invoice.

use std::collections::HashMap;
use std::time::Duration;

use billing_domain::Currency;
use billing_domain::secret::Secret;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use stripe::{RequestStrategy, StripeError, StripeRequest};
use stripe_billing::invoice::{
    CreateInvoice, CreateInvoicePendingInvoiceItemsBehavior, DeleteInvoice, FinalizeInvoiceInvoice,
    RetrieveInvoice, SendInvoiceInvoice, VoidInvoiceInvoice,
};
use stripe_billing::invoice_item::CreateInvoiceItem;
use stripe_billing::{Invoice, InvoiceCollectionMethod, InvoiceStatus};
use stripe_core::customer::CreateCustomer;

use crate::profile::{Profile, Profiles};
use crate::store::{InvoiceRow, LINE_ADJUSTMENT, LINE_BOOKING, Status, Store};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("stripe: {0}")]
    Stripe(#[from] StripeError),
    #[error("stripe answered without {0}")]
    Incomplete(&'static str),
    #[error("amount {0} cannot be expressed in the currency's minor unit")]
    Amount(Decimal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

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
        let currency = invoice
            .currency()
            .ok_or(PushError::Incomplete("a known currency"))?;
        let customer = self.customer(profile).await?;
        let key = |step: &str| idempotent(&format!("invoice-{}-{step}", invoice.id));

        let stripe_id = match &invoice.stripe_invoice_id {
            Some(id) => id.clone(),
            None => {
                let metadata = HashMap::from([
                    ("invoice_id".to_string(), invoice.id.to_string()),
                    ("tenant_id".to_string(), invoice.tenant_id.clone()),
                ]);
                let created = CreateInvoice::new()
                    .customer(customer.as_str())
                    .collection_method(InvoiceCollectionMethod::SendInvoice)
                    .days_until_due(
                        u32::try_from((invoice.due_date - invoice.issue_date).num_days().max(0))
                            .unwrap_or(0),
                    )
                    .currency(stripe_currency(currency))
                    .auto_advance(false)
                    .pending_invoice_items_behavior(
                        CreateInvoicePendingInvoiceItemsBehavior::Exclude,
                    )
                    .number(invoice.number.as_str())
                    .description(format!("Platform fees for {}", invoice.period))
                    .metadata(metadata)
                    .customize()
                    .request_strategy(key("create"))
                    .send(&self.client)
                    .await?;
                let id = created
                    .id
                    .ok_or(PushError::Incomplete("an invoice id"))?
                    .to_string();
                self.store
                    .save_stripe(invoice.id, Some(&id), None, None, None)
                    .await?;
                id
            }
        };

        // Progress is saved after each item: a retry (perhaps after Stripe forgot the idempotency
        // keys, 24 hours) creates only the items still missing.
        let done = usize::try_from(invoice.stripe_items_created).unwrap_or(0);
        let items = self.items(invoice, currency).await?;
        for (n, (description, amount)) in items.iter().enumerate().skip(done) {
            CreateInvoiceItem::new()
                .customer(customer.as_str())
                .invoice(stripe_id.as_str())
                .amount(minor_units(*amount, currency)?)
                .currency(stripe_currency(currency))
                .description(description.as_str())
                .customize()
                .request_strategy(key(&format!("item-{n}")))
                .send(&self.client)
                .await?;
            let created = i32::try_from(n + 1).unwrap_or(i32::MAX);
            self.store
                .save_stripe(invoice.id, None, Some(created), None, None)
                .await?;
        }

        let finalized = match FinalizeInvoiceInvoice::new(stripe_id.as_str())
            .auto_advance(false)
            .customize()
            .request_strategy(key("finalize"))
            .send(&self.client)
            .await
        {
            Ok(finalized) => finalized,
            // Finalized by an earlier attempt whose idempotency key Stripe no longer keeps.
            Err(StripeError::Stripe(_, 400)) => self.retrieve(&stripe_id).await?,
            Err(err) => return Err(err.into()),
        };
        if finalized.status == Some(InvoiceStatus::Draft) {
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
        if finalized.status == Some(InvoiceStatus::Open) {
            SendInvoiceInvoice::new(stripe_id.as_str())
                .customize()
                .request_strategy(key("send"))
                .send(&self.client)
                .await?;
        }

        let mut tx = self.store.begin().await?;
        let current = self
            .store
            .lock_invoice(&mut tx, invoice.id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let issued = if current.status() == Status::Draft {
            self.store
                .transition(
                    &mut tx,
                    &current,
                    Status::Issued,
                    &format!("sent by Stripe as {stripe_id}"),
                    now,
                )
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
        let Some(stripe_id) = &invoice.stripe_invoice_id else {
            return Ok(());
        };
        let current = self.retrieve(stripe_id).await?;
        let key = |step: &str| idempotent(&format!("invoice-{}-{step}", invoice.id));
        match current.status {
            Some(InvoiceStatus::Draft) => {
                DeleteInvoice::new(stripe_id.as_str())
                    .customize()
                    .request_strategy(key("delete"))
                    .send(&self.client)
                    .await?;
            }
            Some(InvoiceStatus::Void) => {}
            _ => {
                VoidInvoiceInvoice::new(stripe_id.as_str())
                    .customize()
                    .request_strategy(key("void"))
                    .send(&self.client)
                    .await?;
            }
        }
        Ok(())
    }

    async fn retrieve(&self, stripe_id: &str) -> Result<Invoice, StripeError> {
        RetrieveInvoice::new(stripe_id).send(&self.client).await
    }

    /// The tenant's Stripe customer, created (once, by idempotency key) when the profile has none.
    async fn customer(&self, profile: &Profile) -> Result<String, PushError> {
        if let Some(id) = &profile.stripe_customer_id {
            return Ok(id.clone());
        }
        let created = CreateCustomer::new()
            .name(profile.legal_name.as_str())
            .email(profile.billing_email.as_str())
            .metadata(HashMap::from([(
                "tenant_id".to_string(),
                profile.tenant_id.clone(),
            )]))
            .customize()
            .request_strategy(idempotent(&format!("customer-{}", profile.tenant_id)))
            .send(&self.client)
            .await?;
        let id = created.id.to_string();
        self.profiles
            .set_stripe_customer(&profile.tenant_id, &id)
            .await?;
        Ok(id)
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
