// TEMPORARY measurement (to be deleted): the entry list at 1M entries through SqliteTenant.
use std::time::Instant;
use wb_crypto::DataKey;
use wb_store::{AmountFilter, EntryPage, TenantDirectory};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::path::PathBuf::from("/tmp/entriesperf/companies");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = DataKey::generate();
    let id = "perf";
    let target = dir.join(format!("{id}.db"));
    let t = Instant::now();
    {
        let plain = rusqlite::Connection::open("/tmp/entriesperf/base.db").unwrap();
        plain
            .execute_batch(&format!(
                "ATTACH DATABASE '{}' AS enc KEY \"{}\"; SELECT sqlcipher_export('enc'); DETACH DATABASE enc;",
                target.display(),
                &*key.sqlcipher_pragma_value()
            ))
            .unwrap();
    }
    eprintln!("export to SQLCipher: {:?}", t.elapsed());
    let tenants = wb_store::sqlite::SqliteTenants::new(dir.clone()).unwrap();
    let t = Instant::now();
    let store = tenants.open(id, &key).await.unwrap();
    eprintln!(
        "open + migration 0003 (index on 2.67M postings): {:?}",
        t.elapsed()
    );
    let usd = wb_core::Currency::parse("USD").unwrap();
    let base = EntryPage {
        limit: 50,
        newest_first: true,
        ..Default::default()
    };
    let d = |s: &str| {
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
    };
    let cases: Vec<(&str, EntryPage)> = vec![
        (
            "asc first page (existing callers)",
            EntryPage {
                limit: 50,
                ..Default::default()
            },
        ),
        (
            "asc deep (after=500000)",
            EntryPage {
                limit: 50,
                after: Some(500_000),
                ..Default::default()
            },
        ),
        ("desc first page", base.clone()),
        (
            "desc deep (before=500000)",
            EntryPage {
                before: Some(500_000),
                ..base.clone()
            },
        ),
        (
            "desc deep (before=1000)",
            EntryPage {
                before: Some(1000),
                ..base.clone()
            },
        ),
        (
            "account busy 1100 (60%)",
            EntryPage {
                account: Some("1100".into()),
                ..base.clone()
            },
        ),
        (
            "account busy 1100, before=300000",
            EntryPage {
                account: Some("1100".into()),
                before: Some(300_000),
                ..base.clone()
            },
        ),
        (
            "account moderate 1010 (~1%)",
            EntryPage {
                account: Some("1010".into()),
                ..base.clone()
            },
        ),
        (
            "account rare 9999 (30 postings)",
            EntryPage {
                account: Some("9999".into()),
                ..base.clone()
            },
        ),
        (
            "account unknown",
            EntryPage {
                account: Some("nope".into()),
                ..base.clone()
            },
        ),
        (
            "account 1100 + Jan 2020",
            EntryPage {
                account: Some("1100".into()),
                from: Some(d("2020-01-01")),
                to: Some(d("2020-01-31")),
                ..base.clone()
            },
        ),
        (
            "dates Jan 2020",
            EntryPage {
                from: Some(d("2020-01-01")),
                to: Some(d("2020-01-31")),
                ..base.clone()
            },
        ),
        (
            "dates year 2025",
            EntryPage {
                from: Some(d("2025-01-01")),
                to: Some(d("2025-12-31")),
                ..base.clone()
            },
        ),
        (
            "text common 'invoice'",
            EntryPage {
                text: Some("invoice".into()),
                ..base.clone()
            },
        ),
        (
            "text rare 'ref-12345' (1 match, full scan)",
            EntryPage {
                text: Some("ref-12345".into()),
                ..base.clone()
            },
        ),
        (
            "amount common USD 1..1000.00",
            EntryPage {
                amount: Some(AmountFilter {
                    currency: usd,
                    min: Some(1),
                    max: Some(100_000),
                }),
                ..base.clone()
            },
        ),
        (
            "amount rare USD =4242.42 (full scan)",
            EntryPage {
                amount: Some(AmountFilter {
                    currency: usd,
                    min: Some(424_242),
                    max: Some(424_242),
                }),
                ..base.clone()
            },
        ),
        (
            "account 1100 + text 'invoice' + USD >= 5000.00",
            EntryPage {
                account: Some("1100".into()),
                text: Some("invoice".into()),
                amount: Some(AmountFilter {
                    currency: usd,
                    min: Some(500_000),
                    max: None,
                }),
                ..base.clone()
            },
        ),
    ];
    for (name, page) in cases {
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..7 {
            let t = Instant::now();
            n = store.entries(page.clone()).await.unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!(
            "{name:50} rows={n:3} median={:8.2} ms  min={:8.2} ms",
            times[3], times[0]
        );
    }
}
