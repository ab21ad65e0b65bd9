//! Writing observations and inventory rows as a table, JSON Lines or CSV.
//!
//! Every writer streams: a row is written as soon as it is known, so a scan of 10,000
//! endpoints never holds its results in memory to print them.

use std::io::IsTerminal;
use std::io::{self, Write};

use certpilot_core::policy::{self, Urgency};
use certpilot_core::ports::InventoryEntry;
use certpilot_core::{Endpoint, Observation, Status, Tags};
use owo_colors::OwoColorize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::args::Format;

/// Standard output that a reader may close early (`certpilot scan … | head -1`): once a
/// write finds the pipe closed, every later write is dropped quietly, so the command goes on
/// with its work (recording a scan, renewing) and prints no "Broken pipe".
pub struct Stdout {
    inner: io::StdoutLock<'static>,
    closed: bool,
}

/// This process's standard output, as a [`Stdout`].
pub fn stdout() -> Stdout {
    Stdout {
        inner: io::stdout().lock(),
        closed: false,
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// Extra columns an inventory row carries beyond its observation.
pub struct InventoryFacts<'a> {
    /// Whether the endpoint is registered.
    pub registered: bool,
    /// When the current certificate was first seen.
    pub cert_first_seen: Option<OffsetDateTime>,
    /// When the observation last changed materially.
    pub last_changed: OffsetDateTime,
    /// When the endpoint was last seen in this state.
    pub last_seen: OffsetDateTime,
    /// Tags to show (the registration's).
    pub tags: &'a Tags,
}

impl<'a> From<&'a InventoryEntry> for InventoryFacts<'a> {
    fn from(e: &'a InventoryEntry) -> Self {
        InventoryFacts {
            registered: e.registered,
            cert_first_seen: e.cert_first_seen,
            last_changed: e.last_changed,
            last_seen: e.last_seen,
            tags: &e.tags,
        }
    }
}

/// Writes rows in one format.
pub struct RowWriter<W: Write> {
    out: W,
    format: Format,
    color: bool,
    /// Reference time for `days_remaining` in inventory rows.
    now: OffsetDateTime,
    header_written: bool,
    target_width: usize,
    /// Table rows, held back to be sorted by urgency and aligned.
    table_rows: Vec<TableRow>,
}

/// One table row: where it sorts, how urgent it is, and its plain cells.
struct TableRow {
    key: (u8, u8, i64, String, String),
    urgency: Urgency,
    cells: Vec<String>,
}

/// Widest a table column grows, per column (target, address, days, expires, issuer, status,
/// first seen, last change, last seen); the last column (tags) is never padded.
const MAX_WIDTHS: [usize; 9] = [48, 41, 5, 10, 32, 60, 10, 11, 10];

const CSV_HEADER: [&str; 26] = [
    "target",
    "host",
    "port",
    "address",
    "scanned_at",
    "elapsed_ms",
    "status",
    "error_kind",
    "error_message",
    "tls_version",
    "tls_cipher",
    "subject",
    "issuer",
    "sans",
    "serial",
    "not_before",
    "not_after",
    "fingerprint_sha256",
    "key_type",
    "key_bits",
    "signature_algorithm",
    "chain_length",
    "days_remaining",
    "trusted",
    "problems",
    "tags",
];

const CSV_INVENTORY_HEADER: [&str; 4] =
    ["registered", "cert_first_seen", "last_changed", "last_seen"];

pub(crate) use certpilot_core::rfc3339;

fn date(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn tags_text(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<W: Write> RowWriter<W> {
    /// A writer of `format` to `out`; `color` adds ANSI colours to tables.
    pub fn new(out: W, format: Format, color: bool, now: OffsetDateTime) -> Self {
        RowWriter {
            out,
            format,
            color,
            now,
            header_written: false,
            target_width: 28,
            table_rows: Vec::new(),
        }
    }

    /// Widens the table's target column to fit `width` characters (capped).
    pub fn fit_targets(&mut self, width: usize) {
        self.target_width = width.clamp(12, 48);
    }

    /// Writes one scan result.
    pub fn observation(&mut self, obs: &Observation) -> io::Result<()> {
        self.row(obs, None)
    }

    /// Writes one inventory row; days are counted from `now`.
    pub fn inventory(&mut self, entry: &InventoryEntry) -> io::Result<()> {
        self.row(&entry.observation, Some(InventoryFacts::from(entry)))
    }

    fn row(&mut self, obs: &Observation, facts: Option<InventoryFacts<'_>>) -> io::Result<()> {
        match self.format {
            Format::Json => self.json(obs, facts.as_ref()),
            Format::Csv => self.csv_row(obs, facts.as_ref()),
            Format::Table => self.table(obs, facts.as_ref()),
        }
    }

    fn days(&self, obs: &Observation, facts: Option<&InventoryFacts<'_>>) -> Option<i64> {
        match facts {
            // Inventory rows may be days old: count from now, not from the scan.
            Some(_) => obs
                .certificate
                .as_ref()
                .map(|c| policy::days_remaining(c.not_after, self.now)),
            None => obs.days_remaining,
        }
    }

    fn json(&mut self, obs: &Observation, facts: Option<&InventoryFacts<'_>>) -> io::Result<()> {
        let line = match facts {
            None => serde_json::to_string(obs)?,
            Some(f) => {
                let mut value = serde_json::to_value(obs)?;
                if let Value::Object(map) = &mut value {
                    map.insert(
                        "days_remaining".into(),
                        serde_json::json!(self.days(obs, facts)),
                    );
                    map.insert("tags".into(), serde_json::to_value(f.tags)?);
                    map.insert("registered".into(), Value::Bool(f.registered));
                    map.insert(
                        "cert_first_seen".into(),
                        f.cert_first_seen
                            .map(rfc3339)
                            .map_or(Value::Null, Value::String),
                    );
                    map.insert(
                        "last_changed".into(),
                        Value::String(rfc3339(f.last_changed)),
                    );
                }
                serde_json::to_string(&value)?
            }
        };
        writeln!(self.out, "{line}")
    }

    fn csv_row(&mut self, obs: &Observation, facts: Option<&InventoryFacts<'_>>) -> io::Result<()> {
        let days = self.days(obs, facts);
        if !self.header_written {
            let mut header: Vec<&str> = CSV_HEADER.to_vec();
            if facts.is_some() {
                header.extend(CSV_INVENTORY_HEADER);
            }
            csv_record(&mut self.out, &header)?;
            self.header_written = true;
        }
        let cert = obs.certificate.as_ref();
        let opt = |v: Option<String>| v.unwrap_or_default();
        let mut record = vec![
            obs.target.clone(),
            obs.host.clone(),
            obs.port.to_string(),
            opt(obs.address.clone()),
            rfc3339(obs.scanned_at),
            obs.elapsed_ms.to_string(),
            status_word(obs.status).to_owned(),
            opt(obs.error.as_ref().map(|e| e.kind.to_string())),
            opt(obs.error.as_ref().map(|e| e.message.clone())),
            opt(obs.tls.as_ref().map(|t| t.version.clone())),
            opt(obs.tls.as_ref().map(|t| t.cipher.clone())),
            opt(cert.map(|c| c.subject.clone())),
            opt(cert.map(|c| c.issuer.clone())),
            opt(cert.map(|c| c.sans.join(" "))),
            opt(cert.map(|c| c.serial.clone())),
            opt(cert.map(|c| rfc3339(c.not_before))),
            opt(cert.map(|c| rfc3339(c.not_after))),
            opt(cert.map(|c| c.fingerprint_sha256.clone())),
            opt(cert.map(|c| c.key.kind.clone())),
            opt(cert.map(|c| c.key.bits.to_string())),
            opt(cert.map(|c| c.signature_algorithm.clone())),
            if obs.chain.is_empty() {
                String::new()
            } else {
                obs.chain.len().to_string()
            },
            opt(days.map(|d| d.to_string())),
            opt(obs.validation.as_ref().map(|v| v.trusted.to_string())),
            opt(obs.validation.as_ref().map(|v| {
                v.problems
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })),
            tags_text(facts.map_or(&obs.tags, |f| f.tags)),
        ];
        if let Some(f) = facts {
            record.push(f.registered.to_string());
            record.push(opt(f.cert_first_seen.map(rfc3339)));
            record.push(rfc3339(f.last_changed));
            record.push(rfc3339(f.last_seen));
        }
        csv_record(&mut self.out, &record)
    }

    /// Holds a table row back: tables are written whole, most urgent first (failed and
    /// expired, then fewest days left), in aligned columns.
    fn table(&mut self, obs: &Observation, facts: Option<&InventoryFacts<'_>>) -> io::Result<()> {
        let days = self.days(obs, facts);
        let urgency = match facts {
            Some(_) => {
                let mut judged = obs.clone();
                judged.days_remaining = days;
                Urgency::of(&judged)
            }
            None => Urgency::of(obs),
        };
        let cert = obs.certificate.as_ref();
        let mut cells = vec![
            printable(&obs.target).into_owned(),
            obs.address.clone().unwrap_or_else(|| "-".to_owned()),
            days.map_or_else(|| "-".to_owned(), |d| d.to_string()),
            cert.map_or_else(|| "-".to_owned(), |c| date(c.not_after)),
            printable(&cert.map_or_else(|| "-".to_owned(), |c| short_name(&c.issuer))).into_owned(),
            printable(&status_text(obs)).into_owned(),
        ];
        if let Some(f) = facts {
            cells.extend([
                f.cert_first_seen.map_or_else(|| "-".to_owned(), date),
                date(f.last_changed),
                date(f.last_seen),
                printable(&tags_text(f.tags)).into_owned(),
            ]);
        } else {
            cells.push(if obs.tags.is_empty() {
                String::new()
            } else {
                format!("[{}]", printable(&tags_text(&obs.tags)))
            });
        }
        let rank = match urgency {
            Urgency::Broken => 0,
            Urgency::Critical => 1,
            Urgency::Warning => 2,
            Urgency::Fine => 3,
        };
        let failed = u8::from(obs.status != Status::Error);
        self.table_rows.push(TableRow {
            key: (
                rank,
                failed,
                days.unwrap_or(i64::MIN),
                obs.target.clone(),
                obs.address.clone().unwrap_or_default(),
            ),
            urgency,
            cells,
        });
        Ok(())
    }

    /// Writes the held-back table rows, sorted and aligned.
    fn write_table(&mut self) -> io::Result<()> {
        if self.table_rows.is_empty() {
            return Ok(());
        }
        let mut rows = std::mem::take(&mut self.table_rows);
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        let inventory = rows[0].cells.len() > 7;
        let mut header: Vec<&str> =
            vec!["TARGET", "ADDRESS", "DAYS", "EXPIRES", "ISSUER", "STATUS"];
        if inventory {
            header.extend(["FIRST SEEN", "LAST CHANGE", "LAST SEEN", "TAGS"]);
        } else {
            header.push("");
        }
        let columns = header.len();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        widths[0] = widths[0].max(self.target_width.min(MAX_WIDTHS[0]));
        for row in &rows {
            for (i, cell) in row.cells.iter().enumerate().take(columns - 1) {
                widths[i] = widths[i].max(cell.chars().count().min(MAX_WIDTHS[i]));
            }
        }
        let line = |cells: &[String], urgency: Option<Urgency>, color: bool| -> String {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let last = i + 1 == columns;
                let text = if last {
                    cell.clone()
                } else {
                    let cut = truncate(cell, widths[i]);
                    // Numbers line up on the right.
                    if i == 2 {
                        format!("{cut:>w$}", w = widths[i])
                    } else {
                        format!("{cut:<w$}", w = widths[i])
                    }
                };
                let text = match (color, urgency, i) {
                    (true, Some(Urgency::Broken), 2) => text.red().bold().to_string(),
                    (true, Some(Urgency::Critical), 2) => text.red().to_string(),
                    (true, Some(Urgency::Warning), 2) => text.yellow().to_string(),
                    (true, Some(Urgency::Fine), 2) => text.green().to_string(),
                    (true, Some(Urgency::Broken), 5) => text.red().to_string(),
                    _ => text,
                };
                if i > 0 {
                    out.push_str(if inventory && i == 6 { "  |  " } else { "  " });
                }
                out.push_str(&text);
            }
            out.trim_end().to_owned()
        };
        let header_cells: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        let head = line(&header_cells, None, false);
        let head = if self.color {
            head.bold().to_string()
        } else {
            head
        };
        writeln!(self.out, "{head}")?;
        for row in &rows {
            writeln!(
                self.out,
                "{}",
                line(&row.cells, Some(row.urgency), self.color)
            )?;
        }
        Ok(())
    }

    /// Writes one registered endpoint.
    pub fn endpoint(&mut self, e: &Endpoint) -> io::Result<()> {
        match self.format {
            Format::Json => writeln!(self.out, "{}", serde_json::to_string(e)?),
            Format::Csv => {
                if !self.header_written {
                    csv_record(&mut self.out, &["target", "tags", "added_at", "version"])?;
                    self.header_written = true;
                }
                csv_record(
                    &mut self.out,
                    &[
                        e.key(),
                        tags_text(&e.tags),
                        rfc3339(e.added_at),
                        e.version.to_string(),
                    ],
                )
            }
            Format::Table => {
                let w = self.target_width;
                if !self.header_written {
                    writeln!(self.out, "{:<w$}  {:<10}  TAGS", "TARGET", "ADDED")?;
                    self.header_written = true;
                }
                writeln!(
                    self.out,
                    "{:<w$}  {:<10}  {}",
                    truncate(&e.key(), w),
                    date(e.added_at),
                    printable(&tags_text(&e.tags))
                )
            }
        }
    }

    /// Pushes written rows out (for a person watching a terminal); tables wait for
    /// [`RowWriter::finish`], which sorts them.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes what was held back (a table) and flushes everything written.
    pub fn finish(mut self) -> io::Result<()> {
        self.write_table()?;
        self.out.flush()
    }
}

/// Writes one CSV record, quoted as RFC 4180 requires.
fn csv_record<W: Write, S: AsRef<str>>(out: &mut W, fields: &[S]) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(
        fields
            .iter()
            .map(|f| spreadsheet_safe(f.as_ref()).into_owned()),
    )?;
    w.flush()
}

use certpilot_core::spreadsheet_safe;

/// Text for a terminal: control characters (escape sequences, newlines that would forge
/// rows) and bidirectional overrides from a hostile server are shown escaped, `\u{1b}`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hostile) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if hostile(c) {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Error => "error",
    }
}

/// The status column in words: "ok", the problems, or the error.
fn status_text(obs: &Observation) -> String {
    if let Some(e) = &obs.error {
        return format!("{}: {}", e.kind, e.message);
    }
    match &obs.validation {
        Some(v) if v.problems.is_empty() && v.trusted => "ok".to_owned(),
        Some(v) if v.problems.is_empty() => "untrusted".to_owned(),
        Some(v) => v
            .problems
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        None => "ok".to_owned(),
    }
}

/// The CN (or O) of a distinguished name, which is what people recognise an issuer by.
fn short_name(dn: &str) -> String {
    for prefix in ["CN=", "O="] {
        if let Some(part) = dn.split(", ").find_map(|p| p.strip_prefix(prefix)) {
            return part.to_owned();
        }
    }
    dn.to_owned()
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Writes small record sets (certificates, renewal results) in `format`: each record as table
/// cells under `header`, or as its JSON object. Tables are aligned over all records, so the
/// records are collected first; they are few.
pub fn write_records(
    format: Format,
    header: &[&str],
    records: impl Iterator<Item = (Vec<String>, Value)>,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(stdout());
    match format {
        Format::Json => {
            for (_, json) in records {
                writeln!(out, "{json}")?;
            }
        }
        Format::Csv => {
            csv_record(&mut out, header)?;
            for (cells, _) in records {
                csv_record(&mut out, &cells)?;
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = records
                .map(|(cells, _)| cells.iter().map(|c| printable(c).into_owned()).collect())
                .collect();
            let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: Vec<String>| {
                let last = cells.len().saturating_sub(1);
                cells
                    .into_iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| if i == last { c } else { format!("{c:<w$}") })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(
                out,
                "{}",
                line(header.iter().map(|h| h.to_uppercase()).collect())
            )?;
            for row in rows {
                writeln!(out, "{}", line(row))?;
            }
        }
    }
    out.flush()
}

pub(crate) fn format_or_default(format: Option<Format>) -> Format {
    format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    })
}

pub(crate) fn colour() -> bool {
    colour_for(std::io::stdout().is_terminal())
}

/// Colour for a stream that `is_terminal`, unless `NO_COLOR` is set to anything but empty
/// (<https://no-color.org>).
pub(crate) fn colour_for(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_for_terminals_and_neutralised_for_spreadsheets() {
        assert_eq!(printable("shop.example.com"), "shop.example.com");
        assert_eq!(printable("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\u{a}c");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(printable("Zürich CA"), "Zürich CA");
        assert_eq!(spreadsheet_safe("=1+2"), "'=1+2");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("-3"), "-3", "negative days stay a number");
        assert_eq!(spreadsheet_safe("-cmd"), "'-cmd");
        assert_eq!(spreadsheet_safe("CN=shop"), "CN=shop");
    }

    #[test]
    fn issuers_are_shown_by_common_name() {
        assert_eq!(short_name("CN=R11, O=Let's Encrypt, C=US"), "R11");
        assert_eq!(short_name("C=US, O=Let's Encrypt, CN=E6"), "E6");
        assert_eq!(short_name("O=Acme"), "Acme");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
