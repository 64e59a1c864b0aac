//! `workbooks demo`: a sample company with a year of realistic books.

use std::path::Path;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Date, Duration, Weekday};
use wb_core::{Currency, EntryDraft, NewAccount, PostingDraft};
use wb_crypto::{new_token, Secret};
use wb_server::Platform;
use wb_store::{Actor, WriteContext};

pub struct DemoLogin {
    pub company_id: String,
    pub company_name: String,
    pub email: String,
    pub passphrase: Secret,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedLogin {
    company_id: String,
    company_name: String,
    email: String,
    passphrase: String,
}

const COMPANY: &str = "Acme Trading Ltd";
const EMAIL: &str = "owner@acme.example";

pub const CHART: &[(&str, &str, &str, Option<&str>)] = &[
    ("1000", "Cash at bank", "asset", None),
    ("1050", "Cash at bank (EUR)", "asset", Some("EUR")),
    ("1100", "Accounts receivable", "asset", None),
    ("1200", "Inventory", "asset", None),
    ("1500", "Equipment", "asset", None),
    ("2000", "Accounts payable", "liability", None),
    ("2100", "Sales tax payable", "liability", None),
    ("2500", "Bank loan", "liability", None),
    ("3000", "Owner's equity", "equity", None),
    ("4000", "Sales", "income", None),
    ("4100", "Consulting revenue", "income", None),
    ("5000", "Cost of goods sold", "expense", None),
    ("6000", "Rent", "expense", None),
    ("6100", "Salaries", "expense", None),
    ("6200", "Utilities", "expense", None),
    ("6400", "Bank fees", "expense", None),
    ("6500", "Interest expense", "expense", None),
];

/// Returns the demo login, creating the company and its books on first run.
pub async fn ensure(platform: &Platform, data: &Path) -> Result<DemoLogin> {
    let file = data.join("demo-login.json");
    if file.exists() {
        let saved: SavedLogin =
            serde_json::from_slice(&std::fs::read(&file)?).context("reading demo-login.json")?;
        return Ok(DemoLogin {
            company_id: saved.company_id,
            company_name: saved.company_name,
            email: saved.email,
            passphrase: Secret::from(saved.passphrase),
        });
    }
    let passphrase = new_token("demo").token;
    let (company, _session) = platform
        .signup(COMPANY, EMAIL, &passphrase, Actor::system("demo"))
        .await
        .context("creating the demo company")?;
    let store = platform.tenant(&company.id).await?;
    let ctx = WriteContext {
        actor: Actor::system("demo"),
        at: platform.now(),
    };
    for (code, name, kind, currency) in CHART {
        let account = NewAccount::validate(code, name, kind, None, *currency)?;
        store.create_account(account, ctx.clone()).await?;
    }
    let today = platform.now().date();
    let entries = year_of_books(today, 2026);
    for chunk in entries.chunks(500) {
        store
            .post_entries(chunk.to_vec(), None, ctx.clone())
            .await?;
    }
    let saved = SavedLogin {
        company_id: company.id.clone(),
        company_name: company.name.clone(),
        email: EMAIL.into(),
        passphrase: passphrase.expose().to_string(),
    };
    write_private(&file, &serde_json::to_vec_pretty(&saved)?)?;
    Ok(DemoLogin {
        company_id: company.id,
        company_name: company.name,
        email: EMAIL.into(),
        passphrase,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)?;
    Ok(())
}

struct Builder {
    usd: Currency,
    entries: Vec<EntryDraft>,
}

impl Builder {
    fn add(&mut self, date: Date, description: &str, legs: &[(&str, i64)]) {
        self.add_in(date, description, self.usd, legs);
    }
    fn add_in(&mut self, date: Date, description: &str, currency: Currency, legs: &[(&str, i64)]) {
        self.entries.push(EntryDraft {
            date,
            description: description.into(),
            reference: None,
            postings: legs
                .iter()
                .map(|(account, minor)| PostingDraft {
                    account: (*account).into(),
                    amount: currency.format(i128::from(*minor)),
                    currency: currency.code().into(),
                })
                .collect(),
        });
    }
}

/// A deterministic year of trading ending `today`: capital, a loan, equipment,
/// daily sales (cash and on credit, with tax and cost of goods), weekly stock
/// purchases, payroll, rent, utilities, collections and supplier payments.
pub fn year_of_books(today: Date, seed: u64) -> Vec<EntryDraft> {
    let (Ok(usd), Ok(eur)) = (Currency::parse("USD"), Currency::parse("EUR")) else {
        return Vec::new();
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Builder {
        usd,
        entries: Vec::new(),
    };
    let start = today - Duration::days(364);
    b.add(
        start,
        "Owner capital contribution",
        &[("1000", 5_000_000), ("3000", -5_000_000)],
    );
    b.add(
        start,
        "Bank loan drawn",
        &[("1000", 2_000_000), ("2500", -2_000_000)],
    );
    b.add(
        start,
        "Delivery van and shop fittings",
        &[("1500", 1_200_000), ("1000", -1_200_000)],
    );
    let mut receivables: Vec<(Date, i64)> = Vec::new();
    let mut payables: Vec<(Date, i64)> = Vec::new();
    let mut day = start;
    while day <= today {
        let weekday = day.weekday();
        if day.day() == 1 {
            b.add(day, "Shop rent", &[("6000", 250_000), ("1000", -250_000)]);
            b.add(
                day,
                "Loan repayment",
                &[("2500", 50_000), ("6500", 8_000), ("1000", -58_000)],
            );
            b.add(
                day,
                "Monthly bank fees",
                &[("6400", 2_500), ("1000", -2_500)],
            );
        }
        if day.day() == 15 || day.day() == 28 {
            b.add(day, "Payroll", &[("6100", 420_000), ("1000", -420_000)]);
        }
        if day.day() == 20 {
            let bill = rng.gen_range(15_000..40_000);
            b.add(
                day,
                "Electricity and water",
                &[("6200", bill), ("2000", -bill)],
            );
            payables.push((day + Duration::days(14), bill));
        }
        if weekday == Weekday::Monday {
            let stock = rng.gen_range(450_000..700_000);
            b.add(day, "Stock purchase", &[("1200", stock), ("2000", -stock)]);
            payables.push((day + Duration::days(30), stock));
        }
        if !matches!(weekday, Weekday::Saturday | Weekday::Sunday) {
            for _ in 0..rng.gen_range(1..=4) {
                let net = rng.gen_range(5_000..200_000);
                let tax = net * 8 / 100;
                let cost = net * 40 / 100;
                if rng.gen_bool(0.5) {
                    b.add(
                        day,
                        "Counter sale",
                        &[("1000", net + tax), ("4000", -net), ("2100", -tax)],
                    );
                } else {
                    b.add(
                        day,
                        "Sale on account",
                        &[("1100", net + tax), ("4000", -net), ("2100", -tax)],
                    );
                    receivables.push((day + Duration::days(rng.gen_range(10..40)), net + tax));
                }
                b.add(
                    day,
                    "Cost of goods sold",
                    &[("5000", cost), ("1200", -cost)],
                );
            }
            if rng.gen_bool(0.05) {
                let fee = rng.gen_range(50_000..300_000);
                b.add(
                    day,
                    "Consulting engagement",
                    &[("1000", fee), ("4100", -fee)],
                );
            }
            if rng.gen_bool(0.04) {
                let eur_sale = rng.gen_range(10_000..100_000);
                b.add_in(
                    day,
                    "Export sale to Lyon",
                    eur,
                    &[("1050", eur_sale), ("4000", -eur_sale)],
                );
            }
        }
        receivables.retain(|(due, amount)| {
            if *due == day {
                b.add(
                    day,
                    "Customer payment received",
                    &[("1000", *amount), ("1100", -amount)],
                );
                false
            } else {
                true
            }
        });
        payables.retain(|(due, amount)| {
            if *due == day {
                b.add(
                    day,
                    "Supplier payment",
                    &[("2000", *amount), ("1000", -amount)],
                );
                false
            } else {
                true
            }
        });
        day += Duration::days(1);
    }
    b.entries
}
