-- Every stored amount is exactly what its record's hash covers (issue 17): the hash encodes an
-- amount at its currency's minor unit, so an amount finer than that (150.004 AUD) is refused
-- here, and the verifier also reports one (a role that can drop this constraint is still
-- caught). A currency the ledger does not know has no exponent, and its amounts are refused.
-- The list is `billing_domain::money::CURRENCIES`; a test compares the two.
-- Not STRICT, on purpose: PostgreSQL inlines a SQL function into the check only when it is not
-- STRICT (or its body is strict itself), and a check calling a function that is not inlined costs
-- ~100 µs a row (bench/run.sh ledger drained half as fast); inlined, it costs next to nothing.
create function currency_exponent(code char(3)) returns integer
    language sql immutable parallel safe
    return case code
        when 'AUD' then 2 when 'NZD' then 2 when 'USD' then 2 when 'EUR' then 2
        when 'GBP' then 2 when 'CAD' then 2 when 'SGD' then 2 when 'CHF' then 2
        when 'JPY' then 0 when 'KRW' then 0
        when 'BHD' then 3 when 'KWD' then 3
    end;

-- `scale(x) <= e` rather than `round(x, e) = x`: an amount is stored at the exponent, never with
-- more digits, even zeros.
create function at_currency_scale(amount numeric, code char(3)) returns boolean
    language sql immutable parallel safe
    return coalesce(scale(amount) <= currency_exponent(code), false);

alter table bookings add constraint bookings_amounts_at_currency_scale check (
    at_currency_scale(total_amount, currency)
    and at_currency_scale(deposit_amount, currency)
    and at_currency_scale(cash_amount, currency)
    and at_currency_scale(platform_fee, currency));

alter table booking_revisions add constraint booking_revisions_amounts_at_currency_scale check (
    at_currency_scale(total_delta, currency)
    and at_currency_scale(deposit_delta, currency)
    and at_currency_scale(cash_delta, currency)
    and at_currency_scale(fee_delta, currency)
    and at_currency_scale(total_after, currency)
    and at_currency_scale(deposit_after, currency)
    and at_currency_scale(cash_after, currency)
    and at_currency_scale(fee_after, currency));
