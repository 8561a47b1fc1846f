//! [`text_enum!`](crate::text_enum!): an enum whose values are stored as `text` (a column whose
//! check constraint lists the spellings) and written in messages, declared once with its
//! spellings. The helpers below write its parse error; they are the macro's, not an API.

/// Declares an enum of unit variants, each with its spelling, and everything that spells it:
///
/// ```
/// billing_runtime::text_enum! {
///     /// How a payment was made.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///     pub enum PaymentMethod as "payment method" {
///         /// A bank transfer, recorded by hand or matched from a bank statement.
///         BankTransfer = "bank_transfer",
///         Stripe = "stripe",
///     }
/// }
///
/// assert_eq!(PaymentMethod::BankTransfer.as_str(), "bank_transfer");
/// assert_eq!("stripe".parse(), Ok(PaymentMethod::Stripe));
/// assert_eq!(
///     "cash".parse::<PaymentMethod>(),
///     Err(r#"unknown payment method "cash""#.to_string())
/// );
/// ```
///
/// gives the enum with its attributes and docs, and
/// - `ALL`, every value in the order declared, and `as_str`, the value's spelling (the only one:
///   columns, messages, metric labels);
/// - `FromStr`, its inverse: exactly a spelling, else a `String` error
///   `unknown payment method "cash"` (`unknown <what> <value>`). Written `as "<what>" must be`,
///   the error lists the spellings instead: `invoicing_mode must be manual or stripe, not "x"`;
/// - `Display`, the spelling;
/// - its SQL type for PostgreSQL: it binds as `as_str()` and decodes through `FromStr` (whose
///   error becomes the decode error), so a query reads it directly (in `query!`, with the column
///   override `status as "status: InvoiceStatus"`) and binds it
///   (`query!(…, status as InvoiceStatus)`). The SQL type is `text` itself, so no type is looked
///   up by name on a new connection, and arrays (`status = any($1)`) bind as `text[]`.
///
/// The enum must derive `Clone` and `Copy` (`as_str` takes it by value). Behaviour of its own
/// goes in an `impl` block of its own beside the macro.
#[macro_export]
macro_rules! text_enum {
    (@define $error:ident [$($attr:tt)*] $vis:vis $name:ident $what:literal {
        $($(#[$doc:meta])* $variant:ident = $spelling:literal),+ $(,)?
    }) => {
        $($attr)*
        $vis enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: [Self; [$($spelling),+].len()] = [$(Self::$variant),+];

            /// The value's spelling: what is stored and written; `FromStr` is its inverse.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $spelling,)+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::string::String;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($spelling => ::std::result::Result::Ok(Self::$variant),)+
                    _ => ::std::result::Result::Err($crate::text_enum::$error(
                        $what,
                        &[$($spelling),+],
                        s,
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::sqlx::Type<::sqlx::Postgres> for $name {
            fn type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl ::sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::postgres::PgHasArrayType>::array_type_info()
            }

            fn array_compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::postgres::PgHasArrayType>::array_compatible(ty)
            }
        }

        impl ::sqlx::Encode<'_, ::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut ::sqlx::postgres::PgArgumentBuffer,
            ) -> ::std::result::Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<::sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Postgres> for $name {
            fn decode(
                value: ::sqlx::postgres::PgValueRef<'r>,
            ) -> ::std::result::Result<Self, ::sqlx::error::BoxDynError> {
                ::std::result::Result::Ok(
                    <&str as ::sqlx::Decode<::sqlx::Postgres>>::decode(value)?.parse()?,
                )
            }
        }
    };
    ($(#[$attr:meta])* $vis:vis enum $name:ident as $what:literal must be { $($body:tt)* }) => {
        $crate::text_enum! { @define must_be [$(#[$attr])*] $vis $name $what { $($body)* } }
    };
    ($(#[$attr:meta])* $vis:vis enum $name:ident as $what:literal { $($body:tt)* }) => {
        $crate::text_enum! { @define unknown [$(#[$attr])*] $vis $name $what { $($body)* } }
    };
}

/// `unknown <what> "<value>"`.
#[doc(hidden)]
pub fn unknown(what: &str, _spellings: &[&str], value: &str) -> String {
    format!("unknown {what} {value:?}")
}

/// `<what> must be a, b or c, not "<value>"`.
#[doc(hidden)]
pub fn must_be(what: &str, spellings: &[&str], value: &str) -> String {
    let choices = match spellings.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!("{what} must be {choices}, not {value:?}")
}

#[cfg(test)]
mod tests {
    use sqlx::encode::IsNull;
    use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType};
    use sqlx::{Encode, Postgres, Type};

    crate::text_enum! {
        /// What a light shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Signal as "signal" {
            /// Go.
            Green = "green",
            StopSoon = "stop_soon",
            Red = "red",
        }
    }

    crate::text_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Side as "side" must be {
            Left = "left",
            Right = "right",
        }
    }

    #[test]
    fn every_value_parses_back_from_its_spelling_and_displays_as_it() {
        assert_eq!(Signal::ALL, [Signal::Green, Signal::StopSoon, Signal::Red]);
        assert_eq!(Signal::StopSoon.as_str(), "stop_soon");
        for signal in Signal::ALL {
            assert_eq!(signal.as_str().parse(), Ok(signal));
            assert_eq!(signal.to_string(), signal.as_str());
        }
        for side in Side::ALL {
            assert_eq!(side.as_str().parse(), Ok(side));
            assert_eq!(format!("{side}"), side.as_str());
        }
    }

    #[test]
    fn anything_else_is_refused_naming_what_it_is_not() {
        assert_eq!(
            "amber".parse::<Signal>(),
            Err("unknown signal \"amber\"".to_string())
        );
        assert_eq!(
            "Green".parse::<Signal>(),
            Err("unknown signal \"Green\"".to_string())
        );
        assert!("".parse::<Signal>().is_err());
        assert!("red ".parse::<Signal>().is_err());
        assert_eq!(
            "up".parse::<Side>(),
            Err("side must be left or right, not \"up\"".to_string())
        );
        assert_eq!(
            super::must_be("x", &["a", "b", "c"], "q"),
            "x must be a, b or c, not \"q\""
        );
        assert_eq!(super::must_be("x", &["a"], "q"), "x must be a, not \"q\"");
    }

    #[test]
    fn it_binds_as_its_spelling_in_text() {
        assert_eq!(
            <Signal as Type<Postgres>>::type_info(),
            <&str as Type<Postgres>>::type_info()
        );
        let text = <String as Type<Postgres>>::type_info();
        assert!(<Side as Type<Postgres>>::compatible(&text));
        assert_eq!(
            Side::array_type_info(),
            <&str as PgHasArrayType>::array_type_info()
        );
        let mut buf = PgArgumentBuffer::default();
        let null = Signal::StopSoon.encode_by_ref(&mut buf).expect("encodes");
        assert!(matches!(null, IsNull::No));
        assert_eq!(&buf[..], b"stop_soon");
    }
}
