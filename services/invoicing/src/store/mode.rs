//! How a tenant is invoiced: by bank transfer recorded by hand, or through Stripe.
//! [`InvoicingMode::as_str`] is the only spelling (`tenant_profiles.invoicing_mode`, the mode an
//! invoice was made in, `invoices.invoicing_mode`, and the gRPC messages); [`FromStr`] is its
//! inverse. In SQL the type binds and decodes as `text` (`billing_runtime::text_enum!`), so the
//! columns and their check constraints are unchanged.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvoicingMode {
    /// Bank transfer to the operator, recorded by hand.
    Manual,
    /// A Stripe invoice, paid through Stripe.
    Stripe,
}

impl InvoicingMode {
    pub const ALL: [InvoicingMode; 2] = [InvoicingMode::Manual, InvoicingMode::Stripe];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoicingMode::Manual => "manual",
            InvoicingMode::Stripe => "stripe",
        }
    }
}

impl FromStr for InvoicingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InvoicingMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("invoicing_mode must be manual or stripe, not {s:?}"))
    }
}

impl fmt::Display for InvoicingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Bound and read as the `text` it is stored as: `query!(…, mode as InvoicingMode)`, and
// `invoicing_mode as "invoicing_mode: InvoicingMode"` in a query's columns.
billing_runtime::text_enum!(InvoicingMode);

#[cfg(test)]
mod tests {
    use super::InvoicingMode;

    #[test]
    fn every_mode_parses_back_from_its_name_and_nothing_else_parses() {
        for mode in InvoicingMode::ALL {
            assert_eq!(mode.as_str().parse(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(
            "paypal".parse::<InvoicingMode>(),
            Err("invoicing_mode must be manual or stripe, not \"paypal\"".to_string())
        );
        assert!("Stripe".parse::<InvoicingMode>().is_err());
        // An empty mode in a gRPC profile means manual; that default is the profile's, not the
        // column's.
        assert!("".parse::<InvoicingMode>().is_err());
    }
}
