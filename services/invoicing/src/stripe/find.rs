//! Finding what an earlier, unanswered attempt made, so that a retry after Stripe has
//! forgotten its idempotency keys (24 hours) uses it instead of making another: the customer by
//! email and `tenant_id` metadata, the invoice among the customer's by `invoice_id` metadata, the
//! items by their position in `item` metadata.

use std::collections::{HashMap, HashSet};

use stripe::StripeRequest;
use stripe_billing::invoice::ListInvoice;
use stripe_billing::invoice_item::ListInvoiceItem;
use stripe_core::customer::{CreateCustomer, ListCustomer};
use uuid::Uuid;

use super::{PushError, StripeBilling, idempotent, maybe_executed};
use crate::profile::Profile;
use crate::store::InvoiceRow;

/// Page size for the look-ups (Stripe's maximum).
const PAGE: i64 = 100;
/// Look-ups stop after this many pages rather than walk an account forever.
const MAX_PAGES: usize = 50;

impl StripeBilling {
    /// The Stripe invoice made for our invoice `id`, among the customer's (newest first).
    pub(super) async fn find_invoice(
        &self,
        customer: &str,
        id: Uuid,
    ) -> Result<Option<String>, PushError> {
        let ours = id.to_string();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut list = ListInvoice::new().customer(customer).limit(PAGE);
            if let Some(after) = &after {
                list = list.starting_after(after.as_str());
            }
            let page = self.retrying(|| list.send(&self.client)).await?;
            let found = page.data.iter().find(|i| {
                i.metadata
                    .as_ref()
                    .and_then(|m| m.get("invoice_id"))
                    .is_some_and(|v| *v == ours)
            });
            if let Some(found) = found {
                let id = found.id.as_ref().map(|i| i.to_string());
                tracing::info!(stripe_invoice = ?id, "found the stripe invoice an earlier attempt made");
                return Ok(id);
            }
            after = page
                .data
                .last()
                .and_then(|i| i.id.as_ref())
                .map(|i| i.to_string());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Which of our items (by position) the Stripe invoice already has.
    pub(super) async fn items_on(
        &self,
        stripe_id: &str,
        id: Uuid,
    ) -> Result<HashSet<usize>, PushError> {
        let ours = id.to_string();
        let mut positions = HashSet::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut list = ListInvoiceItem::new().invoice(stripe_id).limit(PAGE);
            if let Some(after) = &after {
                list = list.starting_after(after.as_str());
            }
            let page = self.retrying(|| list.send(&self.client)).await?;
            positions.extend(page.data.iter().filter_map(|item| {
                let m = item.metadata.as_ref()?;
                (m.get("invoice_id") == Some(&ours))
                    .then(|| m.get("item")?.parse::<usize>().ok())
                    .flatten()
            }));
            after = page.data.last().map(|i| i.id.to_string());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(positions)
    }

    /// The tenant's Stripe customer: the profile's, else one an earlier attempt made (by email
    /// and `tenant_id` metadata), else a new one (once, by idempotency key).
    pub(super) async fn customer(&self, profile: &Profile) -> Result<String, PushError> {
        if let Some(id) = &profile.stripe_customer_id {
            return Ok(id.clone());
        }
        let id = match self.find_customer(profile).await? {
            Some(id) => id,
            None => {
                let create = CreateCustomer::new()
                    .name(profile.legal_name.as_str())
                    .email(profile.billing_email.as_str())
                    .metadata(HashMap::from([(
                        "tenant_id".to_string(),
                        profile.tenant_id.clone(),
                    )]));
                let key = idempotent(&format!("customer-{}", profile.tenant_id));
                match self
                    .retrying(|| {
                        create
                            .customize()
                            .request_strategy(key.clone())
                            .send(&self.client)
                    })
                    .await
                {
                    Ok(created) => created.id.to_string(),
                    Err(err) if maybe_executed(&err) => match self.find_customer(profile).await? {
                        Some(id) => id,
                        None => return Err(err.into()),
                    },
                    Err(err) => return Err(err.into()),
                }
            }
        };
        self.profiles
            .set_stripe_customer(&profile.tenant_id, &id)
            .await?;
        Ok(id)
    }

    async fn find_customer(&self, profile: &Profile) -> Result<Option<String>, PushError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut list = ListCustomer::new()
                .email(profile.billing_email.as_str())
                .limit(PAGE);
            if let Some(after) = &after {
                list = list.starting_after(after.as_str());
            }
            let page = self.retrying(|| list.send(&self.client)).await?;
            let found = page.data.iter().find(|c| {
                c.metadata
                    .as_ref()
                    .and_then(|m| m.get("tenant_id"))
                    .is_some_and(|t| *t == profile.tenant_id)
            });
            if let Some(found) = found {
                return Ok(Some(found.id.to_string()));
            }
            after = page.data.last().map(|c| c.id.to_string());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(None)
    }
}

/// What the look-ups find our objects by: the invoice id, the tenant and an item's position.
pub(super) fn our_metadata(invoice: &InvoiceRow, item: Option<usize>) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        ("invoice_id".to_string(), invoice.id.to_string()),
        ("tenant_id".to_string(), invoice.tenant_id.clone()),
    ]);
    if let Some(n) = item {
        metadata.insert("item".to_string(), n.to_string());
    }
    metadata
}
