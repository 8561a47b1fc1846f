//! A bank statement CSV as an operator's bank exports it, read with either decimal convention.
#![no_main]

use billing_domain::bank::{StatementFormat, read_statement};
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the separator conventions; the rest is the file.
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let format = StatementFormat {
        delimiter: if mode & 1 == 0 { b',' } else { b';' },
        decimal_comma: mode & 2 != 0,
        ..StatementFormat::default()
    };
    if let Ok(statement) = read_statement(file, &format) {
        for line in &statement.lines {
            // Only credits come out, each counted from 1 among identical transfers.
            assert!(line.amount > Decimal::ZERO);
            assert!(line.occurrence >= 1);
        }
    }
});
