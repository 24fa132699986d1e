//! `thresher report OUTPUT_ROOT`: where every document, byte and token of a
//! run went, from the stage manifests alone (no document is read again).
//!
//! The manifests are read through the storage trait, so a run on S3 reports
//! the same way as one on local disk. Every table is a polars `DataFrame`,
//! built from the manifests' counts and stats and combined with polars
//! (group-bys for shares and the "other" row, joins of one stage's counts
//! with another's), and written as a terminal table, CSV, Parquet, JSON,
//! Markdown, or a self-contained HTML page with charts ([`render_html`]).
//!
//! Tokens are counted where documents are tokenized: the `pack` stage.
//! Earlier stages have documents and bytes only, and the report says so
//! rather than estimate.

use std::collections::BTreeMap;

use anyhow::Context;
use polars::prelude::*;
use thresher_manifests::{StageManifest, STAGE_MANIFEST_KEY};

use crate::pack_steps::PACK_MANIFEST_KEY;
use crate::storage::{open_url, Storage};

/// A run's report: named tables in reading order, and notes on what they
/// cannot say.
pub struct Report {
    pub root: String,
    pub tables: Vec<(&'static str, DataFrame)>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn table(&self, name: &str) -> Option<&DataFrame> {
        self.tables.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }
}

/// Stage manifests of the run under `root`, in pipeline order, with the
/// packed output's manifest when a `pack` stage completed.
fn read_manifests(storage: &dyn Storage) -> anyhow::Result<(Vec<StageManifest>, Option<serde_json::Value>)> {
    let suffix = format!("/{STAGE_MANIFEST_KEY}");
    let mut stages = Vec::new();
    for object in storage.list("")? {
        if let Some(dir) = object.key.strip_suffix(&suffix) {
            let bytes = storage.read_all(&object.key)?;
            let manifest = StageManifest::from_json(&storage.url_of(&object.key), &bytes)?;
            stages.push((dir.to_string(), manifest));
        }
    }
    anyhow::ensure!(
        !stages.is_empty(),
        "no completed stage under '{}' (no {STAGE_MANIFEST_KEY}); run the pipeline first",
        storage.url()
    );
    stages.sort_by_key(|(_, m)| m.position);
    let mut pack = None;
    for (dir, manifest) in &stages {
        if manifest.kind == "pack" {
            let key = format!("{dir}/{PACK_MANIFEST_KEY}");
            let bytes = storage.read_all(&key)?;
            pack = Some(serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", storage.url_of(&key)))?);
        }
    }
    Ok((stages.into_iter().map(|(_, m)| m).collect(), pack))
}

/// `(key, count)` pairs of a stats group, or of a JSON object of counts.
fn group(stats: &BTreeMap<String, BTreeMap<String, u64>>, name: &str) -> Vec<(String, u64)> {
    stats
        .get(name)
        .map(|g| g.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

fn json_group(value: &serde_json::Value, name: &str) -> Vec<(String, u64)> {
    value[name]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
        .unwrap_or_default()
}

/// A two-column frame of `(key, count)` pairs.
fn pairs(key: &str, count: &str, rows: &[(String, u64)]) -> PolarsResult<DataFrame> {
    df!(
        key => rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        count => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    )
}

/// `part / whole` in percent, as a polars expression (rounded where shown).
fn percent(part: &str, whole: &str) -> Expr {
    col(part).cast(DataType::Float64) * lit(100.0) / col(whole).cast(DataType::Float64)
}

/// Builds the report of the run under `root`.
pub fn build(root: &str) -> anyhow::Result<Report> {
    let storage = open_url(root)?;
    let (stages, pack) = read_manifests(storage.as_ref())?;
    let mut notes = Vec::new();
    let mut tables = Vec::new();

    // The funnel: one row per stage.
    let pack_tokens = pack.as_ref().and_then(|p| p["tokens"].as_u64());
    // Tokens are known where they are counted, the pack stage (which
    // rejects nothing: its tokens in are its tokens out).
    let stage_tokens: Vec<Option<u64>> = stages
        .iter()
        .map(|s| if s.kind == "pack" { pack_tokens } else { None })
        .collect();
    let funnel = df!(
        "stage" => stages.iter().map(|s| s.stage.as_str()).collect::<Vec<_>>(),
        "kind" => stages.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(),
        "documents_in" => stages.iter().map(|s| s.counts.documents_in).collect::<Vec<_>>(),
        "documents_out" => stages.iter().map(|s| s.counts.documents_out).collect::<Vec<_>>(),
        "rejected" => stages.iter().map(|s| s.counts.rejected_total()).collect::<Vec<_>>(),
        "quarantined" => stages.iter().map(|s| s.counts.quarantined).collect::<Vec<_>>(),
        "text_bytes_in" => stages.iter().map(|s| s.counts.text_bytes_in).collect::<Vec<_>>(),
        "text_bytes_out" => stages.iter().map(|s| s.counts.text_bytes_out).collect::<Vec<_>>(),
        "tokens_in" => stage_tokens.clone(),
        "tokens_out" => stage_tokens,
    )?
    .lazy()
    .with_column(percent("documents_out", "documents_in").alias("documents_kept_percent"))
    .collect()?;
    tables.push(("funnel", funnel));
    match stages.iter().position(|s| s.kind == "pack") {
        Some(_) => notes.push(
            "tokens are counted by the pack stage, the first that tokenizes: earlier stages show documents and text bytes, not estimated tokens".into(),
        ),
        None => notes.push("no pack stage in this run: no tokens were counted".into()),
    }

    // Rejections by reason, as a share of the stage's input.
    let mut rejected_rows: Vec<(String, String, u64, u64)> = Vec::new();
    for s in &stages {
        for (reason, n) in &s.counts.rejected {
            rejected_rows.push((s.stage.clone(), reason.clone(), *n, s.counts.documents_in));
        }
        if s.counts.quarantined > 0 {
            rejected_rows.push((
                s.stage.clone(),
                "(quarantined)".into(),
                s.counts.quarantined,
                s.counts.documents_in,
            ));
        }
    }
    let rejected = df!(
        "stage" => rejected_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        "reason" => rejected_rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "documents" => rejected_rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "stage_documents_in" => rejected_rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    )?
    .lazy()
    .with_column(percent("documents", "stage_documents_in").alias("percent_of_stage_input"))
    .select([
        col("stage"),
        col("reason"),
        col("documents"),
        col("percent_of_stage_input"),
    ])
    .collect()?;
    tables.push(("rejected", rejected));

    // Tokens of the final output by language, source, kind, code language
    // and quality bucket (the pack stage's counts), with shares per
    // dimension.
    if let Some(pack) = &pack {
        let mut long: Vec<(String, String, u64)> = Vec::new();
        for (dimension, key) in [
            ("language", "tokens_by_lang"),
            ("source", "tokens_by_source"),
            ("kind", "tokens_by_kind"),
            ("code_language", "tokens_by_code_language"),
            ("quality_bucket", "tokens_by_quality_bucket"),
        ] {
            for (value, n) in json_group(pack, key) {
                long.push((dimension.to_string(), value, n));
            }
        }
        let tokens = df!(
            "dimension" => long.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            "value" => long.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            "tokens" => long.iter().map(|r| r.2).collect::<Vec<_>>(),
        )?;
        let totals = tokens
            .clone()
            .lazy()
            .group_by([col("dimension")])
            .agg([col("tokens").sum().alias("dimension_tokens")]);
        let tokens = tokens
            .lazy()
            .join(
                totals,
                [col("dimension")],
                [col("dimension")],
                JoinArgs::new(JoinType::Left),
            )
            .with_column(percent("tokens", "dimension_tokens").alias("percent"))
            .select([col("dimension"), col("value"), col("tokens"), col("percent")])
            .sort_by_exprs(
                [col("dimension"), col("tokens")],
                SortMultipleOptions::default()
                    .with_order_descending_multi([false, true])
                    .with_maintain_order(true),
            )
            .collect()?;
        tables.push(("tokens", tokens));

        let metric = |name: &str| pack[name].as_f64();
        let packing_rows: Vec<(&str, Option<f64>)> = vec![
            ("seq_len", metric("seq_len")),
            ("rows", metric("rows")),
            ("documents", metric("documents")),
            ("segments", metric("segments")),
            ("tokens", metric("tokens")),
            ("padding_tokens", metric("padding_tokens")),
            ("fill_percent", metric("fill_percent")),
            ("padding_percent", metric("padding_percent")),
            ("documents_split", metric("documents_split")),
            (
                "documents_split_that_fit_a_row",
                metric("documents_split_that_fit_a_row"),
            ),
        ];
        let packing = df!(
            "metric" => packing_rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "value" => packing_rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )?;
        tables.push(("packing", packing));
    }

    // Per-language survival: every stage whose documents carried a language.
    let mut survival_rows: Vec<(String, String, u64, u64)> = Vec::new();
    for s in &stages {
        let outs: BTreeMap<String, u64> = group(&s.stats.0, "documents_out_by_lang").into_iter().collect();
        for (lang, n_in) in group(&s.stats.0, "documents_in_by_lang") {
            let n_out = outs.get(&lang).copied().unwrap_or(0);
            survival_rows.push((s.stage.clone(), lang, n_in, n_out));
        }
    }
    if let Some(first) = stages.iter().find(|s| s.stats.0.contains_key("documents_in_by_lang")) {
        let before: Vec<&str> = stages
            .iter()
            .take_while(|s| s.stage != first.stage)
            .map(|s| s.stage.as_str())
            .collect();
        if !before.is_empty() {
            notes.push(format!(
                "documents have no language before stage '{}': per-language survival starts there ({} ran before it)",
                first.stage,
                before.join(", ")
            ));
        }
    } else {
        notes.push("no stage tagged languages (no langid stage): no per-language survival".into());
    }
    let survival = df!(
        "stage" => survival_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        "lang" => survival_rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        "documents_in" => survival_rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "documents_out" => survival_rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    )?
    .lazy()
    .with_column(percent("documents_out", "documents_in").alias("kept_percent"))
    .collect()?;
    tables.push(("language_survival", survival));

    // `(key, tokens_out)` of one of pack's token counts (empty without pack).
    let output_tokens = |key: &str, group: &str| {
        pairs(
            key,
            "tokens_out",
            &pack.as_ref().map(|p| json_group(p, group)).unwrap_or_default(),
        )
    };

    // Quality-score histogram (the quality stage's documents per bin) with
    // the final output's tokens per bin.
    // With several quality stages, the one whose tag pack buckets tokens by
    // (`field` = pack's `quality_field`; both default to `quality`).
    let field_of = |config: &serde_json::Value, key: &str| {
        config[key]
            .as_str()
            .unwrap_or(thresher_stages::quality::DEFAULT_FIELD)
            .to_string()
    };
    let bucketed = stages
        .iter()
        .find(|s| s.kind == "pack")
        .map(|s| field_of(&s.config, "quality_field"))
        .unwrap_or_else(|| thresher_stages::quality::DEFAULT_FIELD.to_string());
    if let Some(quality) = stages
        .iter()
        .rev()
        .find(|s| s.kind == "quality" && field_of(&s.config, "field") == bucketed)
    {
        let documents = pairs(
            "bucket",
            "documents_scored",
            &group(&quality.stats.0, "quality_histogram"),
        )?;
        let tokens = output_tokens("bucket", "tokens_by_quality_bucket")?;
        let histogram = documents
            .lazy()
            .join(
                tokens.lazy(),
                [col("bucket")],
                [col("bucket")],
                JoinArgs::new(JoinType::Left),
            )
            .sort(["bucket"], SortMultipleOptions::default())
            .collect()?;
        tables.push(("quality_histogram", histogram));
    } else {
        notes.push("no quality stage: no quality-score histogram".into());
    }

    // Code languages: the code stage's documents and bytes, the output's tokens.
    if let Some(code) = stages.iter().rev().find(|s| s.kind == "code") {
        let documents = pairs(
            "language",
            "documents",
            &group(&code.stats.0, "documents_by_code_language"),
        )?;
        let bytes = pairs(
            "language",
            "text_bytes",
            &group(&code.stats.0, "text_bytes_by_code_language"),
        )?;
        let tokens = output_tokens("language", "tokens_by_code_language")?;
        let languages = documents
            .lazy()
            .join(
                bytes.lazy(),
                [col("language")],
                [col("language")],
                JoinArgs::new(JoinType::Left),
            )
            .join(
                tokens.lazy(),
                [col("language")],
                [col("language")],
                JoinArgs::new(JoinType::Left),
            )
            .sort(
                ["documents"],
                SortMultipleOptions::default()
                    .with_order_descending(true)
                    .with_maintain_order(true),
            )
            .collect()?;
        tables.push(("code_languages", languages));
    } else {
        notes.push("no code stage: no code languages".into());
    }
    Ok(Report {
        root: root.to_string(),
        tables,
        notes,
    })
}

/// The top `n` rows of `(label, value)` by value, the rest summed into
/// `other` (a polars sort, head and sum).
pub fn top_n(frame: &DataFrame, label: &str, value: &str, n: usize) -> anyhow::Result<Vec<(String, f64)>> {
    let sorted = frame
        .clone()
        .lazy()
        .select([col(label), col(value).cast(DataType::Float64).fill_null(lit(0.0))])
        .sort(
            [value],
            SortMultipleOptions::default()
                .with_order_descending(true)
                .with_maintain_order(true),
        )
        .collect()?;
    let mut out = rows_of(&sorted.head(Some(n)), label, value)?;
    if sorted.height() > n {
        let rest = sorted
            .slice(n as i64, sorted.height() - n)
            .lazy()
            .select([col(value).sum()])
            .collect()?;
        let other = rest.column(value)?.f64()?.get(0).unwrap_or(0.0);
        out.push((format!("other ({})", sorted.height() - n), other));
    }
    Ok(out)
}

/// `(label, value)` of every row, the value as f64 (nulls as 0).
pub fn rows_of(frame: &DataFrame, label: &str, value: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let labels = frame.column(label)?.cast(&DataType::String)?;
    let values = frame.column(value)?.cast(&DataType::Float64)?;
    let (labels, values) = (labels.str()?, values.f64()?);
    Ok((0..frame.height())
        .map(|i| (labels.get(i).unwrap_or("").to_string(), values.get(i).unwrap_or(0.0)))
        .collect())
}

/// A cell as text: strings without quotes, nulls empty.
fn cell(value: AnyValue) -> String {
    match value {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        AnyValue::Float64(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        AnyValue::Float64(f) => format!("{f:.2}"),
        other => other.to_string(),
    }
}

/// Every row of `frame` as text cells.
fn text_rows(frame: &DataFrame) -> anyhow::Result<Vec<Vec<String>>> {
    let columns = frame.columns();
    (0..frame.height())
        .map(|i| columns.iter().map(|c| Ok(cell(c.get(i)?))).collect())
        .collect()
}

fn column_names(frame: &DataFrame) -> Vec<String> {
    frame.get_column_names().iter().map(|n| n.to_string()).collect()
}

/// Polars' table formatting for the terminal: every row and column, no
/// dtype lines. Polars reads these once, on first use: call before any.
pub fn configure_terminal_tables() {
    for (key, value) in [
        ("POLARS_FMT_MAX_ROWS", "-1"),
        ("POLARS_FMT_MAX_COLS", "-1"),
        ("POLARS_FMT_STR_LEN", "60"),
        ("POLARS_TABLE_WIDTH", "180"),
        ("POLARS_FMT_TABLE_HIDE_COLUMN_DATA_TYPES", "1"),
        ("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1"),
        ("POLARS_FMT_TABLE_ROUNDED_CORNERS", "1"),
    ] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
}

/// A copy of `frame` with its float columns as text with 2 decimals.
fn with_rounded_floats(frame: &DataFrame) -> anyhow::Result<DataFrame> {
    let mut columns = Vec::new();
    for column in frame.columns() {
        if column.dtype() == &DataType::Float64 {
            let values = column.f64()?;
            let text: Vec<Option<String>> = (0..frame.height())
                .map(|i| values.get(i).map(|v| format!("{v:.2}")))
                .collect();
            columns.push(Column::new(column.name().clone(), text));
        } else {
            columns.push(column.clone());
        }
    }
    Ok(DataFrame::new(frame.height(), columns)?)
}

/// The report as terminal tables (polars' own formatting, see
/// [`configure_terminal_tables`]).
pub fn render_terminal(report: &Report) -> anyhow::Result<String> {
    let mut out = format!("report of {}\n", report.root);
    for (name, table) in &report.tables {
        out.push_str(&format!("\n{name}\n{}\n", with_rounded_floats(table)?));
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    Ok(out)
}

/// The report as Markdown tables.
pub fn render_markdown(report: &Report) -> anyhow::Result<String> {
    let mut out = format!("# Report of `{}`\n", report.root);
    for (name, table) in &report.tables {
        let names = column_names(table);
        out.push_str(&format!("\n## {name}\n\n| {} |\n|", names.join(" | ")));
        out.push_str(&" --- |".repeat(names.len()));
        out.push('\n');
        for row in text_rows(table)? {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }
    if !report.notes.is_empty() {
        out.push('\n');
        for note in &report.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    Ok(out)
}

/// The report as one JSON object: `{"root", "notes", "tables": {name: [row objects]}}`
/// (each table written by polars' JSON writer).
pub fn render_json(report: &Report) -> anyhow::Result<serde_json::Value> {
    let mut tables = serde_json::Map::new();
    for (name, table) in &report.tables {
        let mut buffer = Vec::new();
        JsonWriter::new(&mut buffer)
            .with_json_format(JsonFormat::Json)
            .finish(&mut table.clone())?;
        tables.insert(name.to_string(), serde_json::from_slice(&buffer)?);
    }
    Ok(serde_json::json!({ "root": report.root, "notes": report.notes, "tables": tables }))
}

/// Writes every table as `<dir>/<table>.csv` or `.parquet`.
pub fn write_files(report: &Report, dir: &std::path::Path, format: &str) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, table) in &report.tables {
        let path = dir.join(format!("{name}.{format}"));
        let mut file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut table = table.clone();
        match format {
            "csv" => CsvWriter::new(&mut file).finish(&mut table)?,
            "parquet" => {
                ParquetWriter::new(&mut file).finish(&mut table)?;
            }
            other => anyhow::bail!("cannot write {other} files (csv or parquet)"),
        }
        written.push(path);
    }
    Ok(written)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one `rect.bar` per row, its
/// `data-value` the number it stands for.
fn bar_chart(id: &str, title: &str, unit: &str, rows: &[(String, f64)]) -> String {
    const WIDTH: f64 = 900.0;
    const LABEL: f64 = 220.0;
    const BAR: f64 = 22.0;
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let height = 40.0 + BAR * rows.len().max(1) as f64;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg class=\"chart\" id=\"{id}\" data-chart=\"{id}\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    if rows.is_empty() {
        svg.push_str("<text x=\"10\" y=\"24\" class=\"empty\">no data in this run</text>");
    }
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 10.0 + BAR * i as f64;
        let width = if max > 0.0 {
            (WIDTH - LABEL - 140.0) * value / max
        } else {
            0.0
        };
        svg.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" class=\"label\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{LABEL}\" y=\"{:.0}\" width=\"{width:.1}\" height=\"{:.0}\" data-label=\"{}\" data-value=\"{value}\"><title>{}: {}</title></rect>\
             <text x=\"{:.0}\" y=\"{:.0}\" class=\"value\">{} {unit}</text>",
            LABEL - 8.0,
            y + 15.0,
            escape(label),
            y + 3.0,
            BAR - 6.0,
            escape(label),
            escape(label),
            thousands(*value),
            LABEL + width + 6.0,
            y + 15.0,
            thousands(*value),
        ));
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// 1234567 → "1,234,567" (fractions to 2 decimals).
fn thousands(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn html_table(frame: &DataFrame) -> anyhow::Result<String> {
    let mut out = String::from("<table><thead><tr>");
    for name in column_names(frame) {
        out.push_str(&format!("<th>{}</th>", escape(&name)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in text_rows(frame)? {
        out.push_str("<tr>");
        for value in row {
            out.push_str(&format!("<td>{}</td>", escape(&value)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    Ok(out)
}

/// Languages shown by name in the tokens-by-language chart; the rest are
/// summed into one "other" bar.
pub const TOP_LANGUAGES: usize = 12;

/// The report as one self-contained HTML page (inline CSS and SVG, no
/// script, nothing fetched): the stage funnel, tokens by language (top
/// [`TOP_LANGUAGES`] and other), the quality-score histogram, code
/// languages, then every table.
pub fn render_html(report: &Report) -> anyhow::Result<String> {
    // (chart id, title, unit, bars), bars from the report's tables.
    let table_rows = |table: &str, label: &str, value: &str| -> anyhow::Result<Vec<(String, f64)>> {
        report.table(table).map_or(Ok(Vec::new()), |t| rows_of(t, label, value))
    };
    let tokens_by_language = match report.table("tokens") {
        Some(tokens) => {
            let languages = tokens
                .clone()
                .lazy()
                .filter(col("dimension").eq(lit("language")))
                .collect()?;
            top_n(&languages, "value", "tokens", TOP_LANGUAGES)?
        }
        None => Vec::new(),
    };
    let charts = [
        (
            "funnel",
            "Stage funnel: documents out of each stage".to_string(),
            "docs",
            table_rows("funnel", "stage", "documents_out")?,
        ),
        (
            "tokens-by-language",
            format!("Tokens of the final output by language (top {TOP_LANGUAGES} and other)"),
            "tokens",
            tokens_by_language,
        ),
        (
            "quality-histogram",
            "Quality scores: documents per bucket".to_string(),
            "docs",
            table_rows("quality_histogram", "bucket", "documents_scored")?,
        ),
        (
            "code-languages",
            "Code languages: documents per language (none: no code)".to_string(),
            "docs",
            table_rows("code_languages", "language", "documents")?,
        ),
    ];
    let mut body = String::new();
    for (id, title, unit, bars) in &charts {
        body.push_str(&bar_chart(id, title, unit, bars));
    }
    for (name, table) in &report.tables {
        body.push_str(&format!("<h2>{}</h2>\n{}", escape(name), html_table(table)?));
    }
    if !report.notes.is_empty() {
        body.push_str("<h2>notes</h2><ul>");
        for note in &report.notes {
            body.push_str(&format!("<li>{}</li>", escape(note)));
        }
        body.push_str("</ul>\n");
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>thresher report: {root}</title>\n<style>\n\
         body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; max-width: 1000px; }}\n\
         h1 {{ font-size: 22px; }} h2 {{ font-size: 16px; margin-top: 28px; }}\n\
         figure {{ margin: 18px 0; }} figcaption {{ font-weight: 600; margin-bottom: 6px; }}\n\
         svg .bar {{ fill: #3b6fb6; }} svg .label, svg .value {{ font-size: 12px; fill: #1d2430; }} svg .empty {{ fill: #888; }}\n\
         table {{ border-collapse: collapse; margin: 8px 0; }} th, td {{ border: 1px solid #ccd; padding: 3px 8px; text-align: right; }}\n\
         th {{ background: #eef1f6; }} td:first-child, th:first-child {{ text-align: left; }}\n\
         </style></head><body>\n<h1>thresher report: {root}</h1>\n{body}</body></html>\n",
        root = escape(&report.root),
    ))
}
