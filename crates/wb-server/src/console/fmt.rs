//! How the console shows amounts and times.

use maud::{html, Markup};
use time::OffsetDateTime;
use wb_core::money::Currency;
use wb_core::reports::Amounts;

/// `-1234567.50` → `-1,234,567.50` (grouping for reading; CSV keeps the plain form).
pub fn grouped(plain: &str) -> String {
    let (sign, rest) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain),
    };
    let (whole, fraction) = match rest.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(plain.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// One amount with its currency.
pub fn money(currency: Currency, minor: i128) -> Markup {
    let text = grouped(&currency.format(minor));
    html! {
        span class=[(minor < 0).then_some("amount-neg")] { (text) " " (currency.code()) }
    }
}

/// Amounts in several currencies, one per line (nothing: an em dash).
pub fn amounts(amounts: &Amounts) -> Markup {
    html! {
        @if amounts.values().all(|a| *a == 0) {
            span.muted { "0" }
        } @else {
            @for (i, (currency, minor)) in amounts.iter().filter(|(_, a)| **a != 0).enumerate() {
                @if i > 0 { br; }
                (money(*currency, *minor))
            }
        }
    }
}

pub fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::grouped;
    use proptest::prelude::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped("0.00"), "0.00");
        assert_eq!(grouped("999.99"), "999.99");
        assert_eq!(grouped("1000"), "1,000");
        assert_eq!(grouped("-1234567.5"), "-1,234,567.5");
    }

    proptest! {
        #[test]
        fn grouping_only_adds_commas(n in any::<i64>(), cents in 0u32..100) {
            let plain = format!("{n}.{cents:02}");
            let g = grouped(&plain);
            prop_assert_eq!(g.replace(',', ""), plain);
        }
    }
}
