//! Tenant billing profiles: who is invoiced, where, in which zone and currency, on what terms,
//! and whether by bank transfer or through Stripe. Owned by invoicing and managed over gRPC; a
//! tenants file can seed profiles that do not exist yet.

use billing_domain::tenant::check_invoice_prefix;
use billing_domain::{Currency, TenantId, Tenants};
use billing_proto::convert::timestamp;
use billing_proto::invoicing as pb;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::store::InvoicingMode;

#[derive(Debug, Clone)]
pub struct Profile {
    pub tenant_id: String,
    pub legal_name: String,
    pub billing_email: String,
    pub address: String,
    pub tax_id: String,
    pub time_zone: Tz,
    pub currency: Currency,
    pub payment_terms_days: u32,
    /// Fraction of the fees, e.g. 0.10.
    pub tax_rate: Decimal,
    pub mode: InvoicingMode,
    pub stripe_customer_id: Option<String>,
    pub invoice_prefix: String,
    pub updated_at: DateTime<Utc>,
}

impl Profile {
    /// Validates a profile as sent over gRPC; the message says which field is wrong.
    pub fn from_proto(p: pb::TenantProfile) -> Result<Self, String> {
        let tenant_id: TenantId = p.tenant_id.parse().map_err(|e| format!("{e}"))?;
        if p.legal_name.trim().is_empty() {
            return Err("legal_name is required".into());
        }
        let email = p.billing_email.trim();
        let valid_email = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        });
        if !valid_email {
            return Err(format!("billing_email {email:?} is not an email address"));
        }
        let time_zone = match p.time_zone.as_str() {
            "" => chrono_tz::Australia::Sydney,
            zone => zone
                .parse()
                .map_err(|_| format!("unknown IANA time zone {zone:?}"))?,
        };
        let currency: Currency = p
            .currency
            .parse()
            .map_err(|_| format!("unknown ISO 4217 currency {:?}", p.currency))?;
        if p.payment_terms_days > 365 {
            return Err("payment_terms_days must be at most 365".into());
        }
        let tax_rate = match p.tax_rate.trim() {
            "" => Decimal::ZERO,
            rate => Decimal::from_str_exact(rate)
                .ok()
                .filter(|r| *r >= Decimal::ZERO && *r < Decimal::ONE)
                .ok_or_else(|| format!("tax_rate {rate:?} must be a decimal in [0, 1)"))?,
        };
        // At most 12 characters, so every number Stripe is given fits its 26 (see
        // docs/contracts/stripe.md); checked on every write, existing profiles included.
        let (invoice_prefix, defaulted) = match p.invoice_prefix.trim() {
            "" => (tenant_id.as_str().to_ascii_uppercase(), true),
            prefix => (prefix.to_string(), false),
        };
        check_invoice_prefix(&invoice_prefix).map_err(|e| {
            if defaulted {
                format!("{e}; that is the upper-cased tenant id: set an invoice_prefix")
            } else {
                e.to_string()
            }
        })?;
        Ok(Profile {
            tenant_id: tenant_id.to_string(),
            legal_name: p.legal_name.trim().to_string(),
            billing_email: email.to_string(),
            address: p.address.trim().to_string(),
            tax_id: p.tax_id.trim().to_string(),
            time_zone,
            currency,
            payment_terms_days: p.payment_terms_days,
            tax_rate,
            // Unset in a gRPC profile: manual.
            mode: match p.invoicing_mode.as_str() {
                "" => InvoicingMode::Manual,
                mode => mode.parse()?,
            },
            stripe_customer_id: Some(p.stripe_customer_id.trim().to_string())
                .filter(|id| !id.is_empty()),
            invoice_prefix,
            updated_at: Utc::now(),
        })
    }

    pub fn to_proto(&self) -> pb::TenantProfile {
        pb::TenantProfile {
            tenant_id: self.tenant_id.clone(),
            legal_name: self.legal_name.clone(),
            billing_email: self.billing_email.clone(),
            address: self.address.clone(),
            tax_id: self.tax_id.clone(),
            time_zone: self.time_zone.to_string(),
            currency: self.currency.code().to_string(),
            payment_terms_days: self.payment_terms_days,
            tax_rate: self.tax_rate.normalize().to_string(),
            invoicing_mode: self.mode.as_str().to_string(),
            stripe_customer_id: self.stripe_customer_id.clone().unwrap_or_default(),
            invoice_prefix: self.invoice_prefix.clone(),
            updated_at: Some(timestamp(self.updated_at)),
        }
    }
}

struct ProfileRow {
    tenant_id: String,
    legal_name: String,
    billing_email: String,
    address: String,
    tax_id: String,
    time_zone: String,
    currency: String,
    payment_terms_days: i32,
    tax_rate: Decimal,
    invoicing_mode: InvoicingMode,
    stripe_customer_id: Option<String>,
    invoice_prefix: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ProfileRow> for Profile {
    type Error = sqlx::Error;

    fn try_from(r: ProfileRow) -> Result<Self, Self::Error> {
        let bad = |what: String| sqlx::Error::Decode(what.into());
        Ok(Profile {
            time_zone: r
                .time_zone
                .parse()
                .map_err(|_| bad(format!("stored time zone {:?}", r.time_zone)))?,
            currency: r
                .currency
                .parse()
                .map_err(|_| bad(format!("stored currency {:?}", r.currency)))?,
            payment_terms_days: u32::try_from(r.payment_terms_days)
                .map_err(|_| bad("negative payment terms".into()))?,
            mode: r.invoicing_mode,
            tenant_id: r.tenant_id,
            legal_name: r.legal_name,
            billing_email: r.billing_email,
            address: r.address,
            tax_id: r.tax_id,
            tax_rate: r.tax_rate,
            stripe_customer_id: r.stripe_customer_id,
            invoice_prefix: r.invoice_prefix,
            updated_at: r.updated_at,
        })
    }
}

/// `sqlx::query_as!` into `ProfileRow`, checked at build time: the SQL is `$before`, the row's
/// columns, then `$after` (a macro, as the query macros take only literals).
macro_rules! query_profile {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ProfileRow,
            $before
                + " tenant_id, legal_name, billing_email, address, tax_id, time_zone, currency,
                    payment_terms_days, tax_rate,
                    invoicing_mode as \"invoicing_mode: crate::store::InvoicingMode\",
                    stripe_customer_id, invoice_prefix, updated_at "
                + $after
            $(, $arg)*
        )
    };
}

#[derive(Clone)]
pub struct Profiles {
    pool: PgPool,
}

impl Profiles {
    pub fn new(pool: PgPool) -> Self {
        Profiles { pool }
    }

    pub async fn get(&self, tenant_id: &str) -> Result<Option<Profile>, sqlx::Error> {
        let row = query_profile!(
            "select",
            "from invoicing.tenant_profiles where tenant_id = $1",
            tenant_id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(Profile::try_from).transpose()
    }

    pub async fn list(&self) -> Result<Vec<Profile>, sqlx::Error> {
        let rows = query_profile!(
            "select",
            "from invoicing.tenant_profiles order by tenant_id"
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Profile::try_from).collect()
    }

    /// Creates or replaces a profile. Invoices already made keep the details they were made with.
    pub async fn put(&self, p: &Profile) -> Result<Profile, sqlx::Error> {
        let row = query_profile!(
            "insert into invoicing.tenant_profiles (tenant_id, legal_name, billing_email, address,
                tax_id, time_zone, currency, payment_terms_days, tax_rate, invoicing_mode,
                stripe_customer_id, invoice_prefix, updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
             on conflict (tenant_id) do update set
                legal_name = excluded.legal_name, billing_email = excluded.billing_email,
                address = excluded.address, tax_id = excluded.tax_id,
                time_zone = excluded.time_zone, currency = excluded.currency,
                payment_terms_days = excluded.payment_terms_days, tax_rate = excluded.tax_rate,
                invoicing_mode = excluded.invoicing_mode,
                stripe_customer_id = coalesce(excluded.stripe_customer_id,
                    tenant_profiles.stripe_customer_id),
                invoice_prefix = excluded.invoice_prefix, updated_at = now()
             returning",
            "",
            p.tenant_id,
            p.legal_name,
            p.billing_email,
            p.address,
            p.tax_id,
            p.time_zone.name(),
            p.currency.code(),
            i32::try_from(p.payment_terms_days).unwrap_or(365),
            p.tax_rate,
            p.mode as InvoicingMode,
            p.stripe_customer_id,
            p.invoice_prefix
        )
        .fetch_one(&self.pool)
        .await?;
        Profile::try_from(row)
    }

    /// Remembers the Stripe customer created for a tenant.
    pub async fn set_stripe_customer(
        &self,
        tenant_id: &str,
        customer_id: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update invoicing.tenant_profiles set stripe_customer_id = $2, updated_at = now()
             where tenant_id = $1",
            tenant_id,
            customer_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Creates a profile for each tenant of the file that has none; existing profiles (perhaps
    /// edited over gRPC since) are left alone.
    pub async fn seed(&self, tenants: &Tenants) -> Result<u64, sqlx::Error> {
        let column = |f: fn(&billing_domain::TenantConfig) -> String| -> Vec<String> {
            tenants.iter().map(f).collect()
        };
        let ids = column(|t| t.id.to_string());
        let names = column(|t| t.name.clone());
        let emails = column(|t| t.billing_email.clone());
        let zones = column(|t| t.time_zone.name().to_string());
        let currencies = column(|t| t.currency.code().to_string());
        let prefixes = column(|t| t.invoice_prefix());
        let terms: Vec<i32> = tenants
            .iter()
            .map(|t| i32::try_from(t.payment_terms_days).unwrap_or(365))
            .collect();
        // One statement for the whole file: start-up stays one round trip however many tenants.
        let inserted = sqlx::query!(
            "insert into invoicing.tenant_profiles (tenant_id, legal_name, billing_email,
                time_zone, currency, payment_terms_days, invoice_prefix)
             select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::int[], $7::text[])
             on conflict (tenant_id) do nothing",
            ids.as_slice(),
            names.as_slice(),
            emails.as_slice(),
            zones.as_slice(),
            currencies.as_slice(),
            terms.as_slice(),
            prefixes.as_slice()
        )
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::TenantProfile {
        pb::TenantProfile {
            tenant_id: "claire".into(),
            legal_name: "Claire Hamilton Therapies Pty Ltd".into(),
            billing_email: "claire@example.test".into(),
            currency: "AUD".into(),
            payment_terms_days: 7,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_fill_zone_tax_mode_and_prefix() {
        let p = Profile::from_proto(valid()).expect("valid");
        assert_eq!(p.time_zone, chrono_tz::Australia::Sydney);
        assert_eq!(p.tax_rate, Decimal::ZERO);
        assert_eq!(p.mode, InvoicingMode::Manual);
        assert_eq!(p.invoice_prefix, "CLAIRE");
        assert_eq!(p.stripe_customer_id, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut pb::TenantProfile);
        let cases: [(Spoil, &str); 7] = [
            (|p| p.tenant_id = "Claire!".into(), "invalid tenant id"),
            (|p| p.billing_email = "not-an-email".into(), "billing_email"),
            (|p| p.time_zone = "Mars/Olympus".into(), "time zone"),
            (|p| p.currency = "XXY".into(), "currency"),
            (|p| p.tax_rate = "1.5".into(), "tax_rate"),
            (|p| p.invoicing_mode = "paypal".into(), "invoicing_mode"),
            (|p| p.invoice_prefix = "bad prefix".into(), "invoice_prefix"),
        ];
        for (spoil, expected) in cases {
            let mut p = valid();
            spoil(&mut p);
            let err = Profile::from_proto(p).expect_err(expected);
            assert!(err.contains(expected), "{err:?} should mention {expected}");
        }
    }

    #[test]
    fn invoice_prefixes_stop_at_twelve_characters() {
        let with = |tenant: &str, prefix: &str| {
            let mut p = valid();
            p.tenant_id = tenant.into();
            p.invoice_prefix = prefix.into();
            Profile::from_proto(p)
        };
        let twelve = with("claire", "ABCDEFGHIJKL").expect("12 characters");
        assert_eq!(twelve.invoice_prefix, "ABCDEFGHIJKL");
        let err = with("claire", "ABCDEFGHIJKLM").expect_err("13 characters");
        assert!(
            err.contains("invoice_prefix") && err.contains("1-12"),
            "{err}"
        );
        // The default, the upper-cased id, obeys the same limit.
        assert_eq!(
            with("physiother12", "").map(|p| p.invoice_prefix),
            Ok("PHYSIOTHER12".to_string())
        );
        let err = with("physiotherapy", "").expect_err("13-character id");
        assert!(err.contains("set an invoice_prefix"), "{err}");
        assert!(with("physiotherapy", "PHYSIO").is_ok());
    }

    #[test]
    fn round_trips_through_proto() {
        let mut input = valid();
        input.tax_rate = "0.10".into();
        input.invoicing_mode = "stripe".into();
        input.time_zone = "Asia/Tokyo".into();
        let p = Profile::from_proto(input).expect("valid");
        let back = p.to_proto();
        assert_eq!(back.tax_rate, "0.1");
        assert_eq!(back.invoicing_mode, "stripe");
        assert_eq!(back.time_zone, "Asia/Tokyo");
    }
}
