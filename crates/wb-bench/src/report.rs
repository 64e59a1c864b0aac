//! The results file: rows with their verdicts, rendered as a Markdown table
//! under a "Run: ..." line, each section written between its own markers in
//! BENCHMARKS.md so one section's run leaves the others' figures alone.

use std::path::Path;

use anyhow::{Context, Result};

pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) measured: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    pub(crate) verdict: String,
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A "Run: ..." line and the rows as a Markdown table.
pub(crate) fn render_rows(run_line: &str, rows: &[Row]) -> String {
    let mut out = format!("{run_line}\n\n");
    out.push_str("| measurement | measured | baseline (same run) | ratio | target | verdict |\n|---|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name, r.measured, r.baseline, r.ratio, r.target, r.verdict
        ));
    }
    out
}

/// Replaces the generated section between `<!-- {marker}:begin -->` and
/// `<!-- {marker}:end -->`, keeping the prose around it and any other
/// section (the embedded and the PostgreSQL runs each own one). A file
/// without these markers gets the section appended, under `heading` if given.
pub(crate) fn write_results(
    path: &Path,
    marker: &str,
    heading: Option<&str>,
    table: &str,
) -> Result<()> {
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{table}{end}");
    let text = match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &existing[..b],
            section,
            &existing[e + end.len()..]
        ),
        _ => match heading {
            Some(h) => format!("{}\n\n{h}\n\n{section}\n", existing.trim_end()),
            None => format!("{existing}\n{section}\n"),
        },
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> Row {
        Row {
            name: name.into(),
            measured: "1 op/s".into(),
            baseline: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            verdict: verdict(true).into(),
        }
    }

    #[test]
    fn a_table_is_the_run_line_then_one_markdown_row_per_measurement() {
        let table = render_rows("Run: x.", &[row("a"), row("b")]);
        assert_eq!(
            table,
            "Run: x.\n\n| measurement | measured | baseline (same run) | ratio | target | verdict |\n\
             |---|---|---|---|---|---|\n| a | 1 op/s | - | - | - | met |\n| b | 1 op/s | - | - | - | met |\n"
        );
    }

    #[test]
    fn a_section_replaces_only_its_own_markers_and_keeps_the_prose() {
        let dir = std::env::temp_dir().join(format!("wb-bench-report-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("BENCHMARKS.md");
        std::fs::write(
            &path,
            "# Benchmarks\n\nprose\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\n\
             ## PostgreSQL\n<!-- bench-postgres:begin -->\npg\n<!-- bench-postgres:end -->\n",
        )
        .unwrap();
        write_results(&path, "bench", None, "new\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# Benchmarks\n\nprose\n<!-- bench:begin -->\nnew\n<!-- bench:end -->\n\n\
             ## PostgreSQL\n<!-- bench-postgres:begin -->\npg\n<!-- bench-postgres:end -->\n"
        );
        // A section the file does not have yet goes at the end, under its heading.
        write_results(&path, "bench-exports", Some("## Exports"), "e\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with("<!-- bench-postgres:end -->\n\n## Exports\n\n<!-- bench-exports:begin -->\ne\n<!-- bench-exports:end -->\n"),
            "{text}"
        );
        assert!(text.contains("<!-- bench:begin -->\nnew\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
