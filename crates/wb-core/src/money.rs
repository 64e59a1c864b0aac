//! Money: integer minor units, decimal strings on the wire, ISO 4217 currencies.

use std::fmt;

/// An ISO 4217 currency with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    minor_units: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}: use an ISO 4217 code such as USD or EUR")]
    UnknownCurrency(String),
    #[error("amount {0:?} is not a decimal string like \"1234.50\"")]
    Malformed(String),
    #[error("amount {amount:?} has more decimals than {currency} allows ({allowed})")]
    TooManyDecimals {
        amount: String,
        currency: String,
        allowed: u8,
    },
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

impl Currency {
    /// Looks up an ISO 4217 code (upper case, three letters).
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(truncate(code, 16));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        let iso = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        // Currencies without minor units in the table (funds, metals, XXX) are refused:
        // the ledger cannot say how many decimals they carry.
        let minor_units = iso.exponent().ok_or_else(unknown)?;
        let bytes = code.as_bytes();
        Ok(Currency {
            code: [bytes[0], bytes[1], bytes[2]],
            minor_units: u8::try_from(minor_units).map_err(|_| unknown())?,
        })
    }

    pub fn code(&self) -> &str {
        // Built only from three ASCII upper-case letters.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// Parses a decimal string ("-1234.5", "0.01") into minor units of this currency.
    /// Exponents, signs other than a leading '-', spaces, and more decimals than
    /// the currency allows are errors; so is any value that does not fit in i64.
    pub fn parse_amount(&self, text: &str) -> Result<i64, MoneyError> {
        let malformed = || MoneyError::Malformed(truncate(text, 40));
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (digits, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let fraction = fraction.unwrap_or("");
        if digits.contains('.') && fraction.is_empty() {
            return Err(malformed());
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        if fraction.len() > usize::from(self.minor_units) {
            return Err(MoneyError::TooManyDecimals {
                amount: truncate(text, 40),
                currency: self.code().to_string(),
                allowed: self.minor_units,
            });
        }
        let overflow = || MoneyError::Overflow(truncate(text, 40));
        let mut value: i64 = 0;
        for b in whole.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or_else(overflow)?;
        }
        for i in 0..self.minor_units {
            let digit = fraction
                .as_bytes()
                .get(usize::from(i))
                .map_or(0, |b| b - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(digit)))
                .ok_or_else(overflow)?;
        }
        Ok(if negative { -value } else { value })
    }

    /// Formats minor units as a decimal string with exactly the currency's decimals.
    pub fn format(&self, minor: i128) -> String {
        format_minor(minor, self.minor_units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Formats an integer count of minor units with `decimals` digits after the point.
pub fn format_minor(minor: i128, decimals: u8) -> String {
    let negative = minor < 0;
    let magnitude = minor.unsigned_abs();
    let scale = 10u128.pow(u32::from(decimals));
    let whole = magnitude / scale;
    let fraction = magnitude % scale;
    let sign = if negative { "-" } else { "" };
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{fraction:0width$}",
            width = usize::from(decimals)
        )
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn parses_valid_amounts() {
        let cases = [
            ("0", 0),
            ("1", 100),
            ("1.5", 150),
            ("1234.50", 123450),
            ("-0.01", -1),
            ("-100", -10000),
        ];
        for (text, minor) in cases {
            assert_eq!(usd().parse_amount(text), Ok(minor), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_amounts() {
        for text in [
            "", "-", ".5", "1.", "1e3", "+1", " 1", "1 ", "1,00", "0x10", "--1", "1.2.3", "NaN",
            "١",
        ] {
            assert!(
                matches!(usd().parse_amount(text), Err(MoneyError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_too_many_decimals_per_currency() {
        assert!(matches!(
            usd().parse_amount("1.001"),
            Err(MoneyError::TooManyDecimals { allowed: 2, .. })
        ));
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.minor_units(), 0);
        assert!(jpy.parse_amount("1.0").is_err());
        assert_eq!(jpy.parse_amount("1500"), Ok(1500));
        let bhd = Currency::parse("BHD").unwrap();
        assert_eq!(bhd.parse_amount("1.234"), Ok(1234));
    }

    #[test]
    fn refuses_overflow() {
        assert!(matches!(
            usd().parse_amount("92233720368547758.08"),
            Err(MoneyError::Overflow(_))
        ));
        assert_eq!(usd().parse_amount("92233720368547758.07"), Ok(i64::MAX));
        assert!(usd().parse_amount("99999999999999999999999999").is_err());
    }

    #[test]
    fn refuses_unknown_currencies() {
        for code in ["usd", "US", "USDX", "ZZZ", "", "XXX"] {
            assert!(Currency::parse(code).is_err(), "{code}");
        }
    }

    #[test]
    fn formats_with_currency_decimals() {
        assert_eq!(usd().format(0), "0.00");
        assert_eq!(usd().format(-5), "-0.05");
        assert_eq!(usd().format(123450), "1234.50");
        assert_eq!(Currency::parse("JPY").unwrap().format(-42), "-42");
        assert_eq!(
            format_minor(i128::from(i64::MIN), 2),
            "-92233720368547758.08"
        );
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(minor in any::<i64>()) {
            let text = usd().format(i128::from(minor));
            prop_assert_eq!(usd().parse_amount(&text), Ok(minor));
        }
    }
}
