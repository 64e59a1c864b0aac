//! Income against expenses by month as server-rendered SVG (no chart
//! library, no script), with the same figures in a table for screen readers
//! and for anyone who prefers numbers.

use maud::{html, Markup};
use wb_core::money::Currency;

/// One month's bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthBars {
    /// `2026-11`
    pub label: String,
    pub income: i128,
    pub expense: i128,
}

const WIDTH: i128 = 720;
const HEIGHT: i128 = 220;
const BASELINE: i128 = 190;
const TOP: i128 = 20;

/// The bar height for `value` when the tallest bar is `max` (never negative).
pub fn bar_height(value: i128, max: i128) -> i128 {
    if max <= 0 || value <= 0 {
        return 0;
    }
    (value.min(max) * (BASELINE - TOP)) / max
}

pub fn income_expense(id: &str, currency: Currency, months: &[MonthBars]) -> Markup {
    let max = months
        .iter()
        .flat_map(|m| [m.income, m.expense])
        .max()
        .unwrap_or(0);
    let slot = WIDTH / (months.len().max(1) as i128);
    let bar = (slot / 3).max(2);
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby={ (title_id) " " (desc_id) } {
                title #(title_id) { "Income and expenses by month, " (currency.code()) }
                desc #(desc_id) { "Green bars are income, red bars are expenses; the table below has the figures." }
                line x1="0" y1=(BASELINE) x2=(WIDTH) y2=(BASELINE) {}
                @for (i, m) in months.iter().enumerate() {
                    @let x = (i as i128) * slot + slot / 6;
                    @let hi = bar_height(m.income, max);
                    @let he = bar_height(m.expense, max);
                    rect.income x=(x) y=(BASELINE - hi) width=(bar) height=(hi) {}
                    rect.expense x=(x + bar) y=(BASELINE - he) width=(bar) height=(he) {}
                    text x=(x) y=(HEIGHT - 12) { (m.label.get(5..).unwrap_or(&m.label)) }
                }
            }
            figcaption {
                span.legend-income { "■ income" } " " span.legend-expense { "■ expenses" }
            }
        }
        details {
            summary { "Figures" }
            div.table-wrap {
                table {
                    caption.visually-hidden { "Income and expenses by month, " (currency.code()) }
                    thead { tr { th scope="col" { "Month" } th.num scope="col" { "Income" } th.num scope="col" { "Expenses" } } }
                    tbody {
                        @for m in months {
                            tr {
                                th scope="row" { (m.label) }
                                td.num { (super::fmt::money(currency, m.income)) }
                                td.num { (super::fmt::money(currency, m.expense)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bars_stay_inside_the_chart(value in any::<i64>(), max in any::<i64>()) {
            let h = bar_height(i128::from(value), i128::from(max));
            prop_assert!((0..=BASELINE - TOP).contains(&h));
        }

        #[test]
        fn a_larger_value_never_gets_a_shorter_bar(a in 0i64..1_000_000, b in 0i64..1_000_000, max in 1i64..1_000_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(bar_height(lo.into(), max.into()) <= bar_height(hi.into(), max.into()));
        }
    }

    #[test]
    fn the_chart_names_itself_for_screen_readers() {
        let eur = Currency::parse("EUR").unwrap();
        let html = income_expense(
            "c",
            eur,
            &[MonthBars {
                label: "2026-11".into(),
                income: 5000,
                expense: 2500,
            }],
        )
        .into_string();
        assert!(html.contains("role=\"img\""));
        assert!(html.contains("<title id=\"c-title\">"));
        assert!(html.contains("50.00"), "{html}");
        assert!(!html.contains("style="), "no inline style under the CSP");
    }
}
