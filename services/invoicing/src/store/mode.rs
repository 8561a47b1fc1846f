//! How a tenant is invoiced: by bank transfer recorded by hand, or through Stripe.
//! [`InvoicingMode::as_str`] is the only spelling (`tenant_profiles.invoicing_mode`, the mode an
//! invoice was made in, `invoices.invoicing_mode`, and the gRPC messages);
//! [`FromStr`](std::str::FromStr) is its inverse. In SQL the type binds and decodes as `text`
//! (`billing_runtime::text_enum!`), so the columns and their check constraints are unchanged.

// Bound and read as the `text` it is stored as: `query!(…, mode as InvoicingMode)`, and
// `invoicing_mode as "invoicing_mode: InvoicingMode"` in a query's columns.
billing_runtime::text_enum! {
    /// How a tenant is invoiced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum InvoicingMode as "invoicing_mode" must be {
        /// Bank transfer to the operator, recorded by hand.
        Manual = "manual",
        /// A Stripe invoice, paid through Stripe.
        Stripe = "stripe",
    }
}

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
