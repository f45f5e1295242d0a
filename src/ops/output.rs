//! Rows for people and scripts: an aligned table (UTC times), JSON (an array of objects;
//! times as `<name>_ms` and RFC 3339 `<name>`), or TSV with the JSON field names as header.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Tsv,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "tsv" => Ok(Format::Tsv),
            _ => Err(format!("unknown format '{s}': use table, json or tsv")),
        }
    }
}

pub enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    /// Unix milliseconds.
    Time(Option<i64>),
}

/// A Unix-ms time as UTC (RFC 3339, seconds).
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// A Unix-ms time as UTC (RFC 3339, seconds), or "-".
pub fn utc(ms: Option<i64>) -> String {
    ms.map_or("-".into(), rfc3339)
}

/// A time as it is from `now`: "in 4m12s", "3m ago", "now", or "-".
pub fn relative(ms: Option<i64>, now: i64) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let d = (ms - now) / 1000;
    let span = |s: i64| match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    };
    match d {
        0 => "now".into(),
        d if d > 0 => format!("in {}", span(d)),
        d => format!("{} ago", span(-d)),
    }
}

/// A claw1... address shortened for a narrow table: its start and end, a "…" between.
pub fn short_address(address: &str) -> String {
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 20 {
        return address.to_string();
    }
    let head: String = chars[..11].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!("{head}…{tail}")
}

pub use crate::chain::fees::claw;

impl Cell {
    pub fn shown(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::OptText(s) => s
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into()),
            Cell::Int(n) => n.to_string(),
            Cell::OptInt(n) => n.map_or("-".into(), |n| n.to_string()),
            Cell::Bool(b) => if *b { "yes" } else { "no" }.into(),
            Cell::Time(t) => t.map_or("-".into(), rfc3339),
        }
    }
}

pub struct Rows {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Rows {
    pub fn new(columns: Vec<&'static str>) -> Rows {
        Rows {
            columns,
            rows: Vec::new(),
        }
    }

    /// (field name, JSON value) pairs of a row; a time gives two fields.
    pub(crate) fn fields(&self, row: &[Cell]) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (name, cell) in self.columns.iter().zip(row) {
            match cell {
                Cell::Time(t) => {
                    out.push((format!("{name}_ms"), t.map_or(Value::Null, Value::from)));
                    out.push((
                        name.to_string(),
                        t.map_or(Value::Null, |t| Value::from(rfc3339(t))),
                    ));
                }
                Cell::Text(s) => out.push((name.to_string(), Value::from(s.clone()))),
                Cell::OptText(s) => {
                    out.push((name.to_string(), s.clone().map_or(Value::Null, Value::from)))
                }
                Cell::Int(n) => out.push((name.to_string(), Value::from(*n))),
                Cell::OptInt(n) => out.push((name.to_string(), n.map_or(Value::Null, Value::from))),
                Cell::Bool(b) => out.push((name.to_string(), Value::from(*b))),
            }
        }
        out
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => {
                let items: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|r| Value::Object(self.fields(r).into_iter().collect::<Map<_, _>>()))
                    .collect();
                let mut s = serde_json::to_string_pretty(&Value::Array(items)).expect("json");
                s.push('\n');
                s
            }
            Format::Tsv => {
                let clean = |s: String| s.replace(['\t', '\n', '\r'], " ");
                let mut out = String::new();
                // A time column gives two fields, known from a row; with no rows, the names.
                let header: Vec<String> = match self.rows.first() {
                    Some(r) => self.fields(r).into_iter().map(|(k, _)| k).collect(),
                    None => self.columns.iter().map(|c| c.to_string()).collect(),
                };
                out.push_str(&header.join("\t"));
                out.push('\n');
                for r in &self.rows {
                    let cells: Vec<String> = self
                        .fields(r)
                        .into_iter()
                        .map(|(_, v)| match v {
                            Value::Null => String::new(),
                            Value::String(s) => clean(s),
                            other => other.to_string(),
                        })
                        .collect();
                    out.push_str(&cells.join("\t"));
                    out.push('\n');
                }
                out
            }
        }
    }

    /// Prints the rows; warnings go after a table, or to stderr so JSON and TSV stay
    /// parseable.
    pub fn emit(&self, format: Format, warnings: &[String]) {
        print!("{}", self.render(format));
        for w in warnings {
            if format == Format::Table {
                println!("warning: {w}");
            } else {
                eprintln!("warning: {w}");
            }
        }
    }

    fn table(&self) -> String {
        let headers: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::shown).collect())
            .collect();
        let mut widths: Vec<usize> = headers.iter().map(String::len).collect();
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: &[String]| {
            let last = row.len().saturating_sub(1);
            let parts: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            format!("{}\n", parts.join("  ").trim_end())
        };
        let mut out = line(&headers);
        for row in &cells {
            out.push_str(&line(row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        let mut rows = Rows::new(vec!["address", "windows", "next", "error"]);
        rows.rows.push(vec![
            Cell::Text("claw1x".into()),
            Cell::Int(3),
            Cell::Time(Some(1_800_000_000_000)),
            Cell::OptText(Some("a\tb".into())),
        ]);
        rows.rows.push(vec![
            Cell::Text("claw1y".into()),
            Cell::Int(0),
            Cell::Time(None),
            Cell::OptText(None),
        ]);
        rows
    }

    #[test]
    fn json_has_ms_and_rfc3339_and_tsv_has_the_same_fields() {
        let json: Value = serde_json::from_str(&sample().render(Format::Json)).unwrap();
        assert_eq!(json[0]["next_ms"], 1_800_000_000_000i64);
        assert_eq!(json[0]["next"], "2027-01-15T08:00:00Z");
        assert_eq!(json[1]["next"], Value::Null);
        let tsv = sample().render(Format::Tsv);
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines[0], "address\twindows\tnext_ms\tnext\terror");
        assert_eq!(lines[1].split('\t').count(), 5);
        assert!(lines[1].ends_with("a b"));
        let table = sample().render(Format::Table);
        assert!(table.starts_with("ADDRESS"));
        assert!(table.contains("2027-01-15T08:00:00Z"));
    }
}
