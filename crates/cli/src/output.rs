//! Output formats. Every string shown here may come from a log an attacker could write to, so
//! terminal output drops control characters and escape sequences, and CSV cells that a
//! spreadsheet would run as a formula are defused.

use std::borrow::Cow;
use std::io::{self, Write};

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// Removes ANSI escape sequences and every other control character, so a log-derived string
/// cannot move the cursor, recolour or rewrite the terminal.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte; OSC: ESC ] ... BEL or ESC \ ; else one char.
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {
                    chars.next();
                }
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prefixes a CSV cell that a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR) with
/// a quote so it stays text.
pub fn csv_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// A table: a header and rows of cells, printed with aligned columns.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Table {
        Table { header, rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| terminal_safe(c).into_owned()).collect());
    }

    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut dyn Write| -> io::Result<()> {
            let mut text = String::new();
            for (i, (cell, width)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
            }
            writeln!(out, "{}", text.trim_end())
        };
        line(&mut self.header.iter().copied(), out)?;
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str), out)?;
        }
        Ok(())
    }
}

/// Prints one item as a line of JSON.
pub fn print_json_line<T: Serialize>(item: &T, out: &mut dyn Write) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, item)?;
    writeln!(out)?;
    Ok(())
}

/// Prints items as one JSON array (pretty) or one object per line.
pub fn print_json<T: Serialize>(items: &[T], lines: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if lines {
        for item in items {
            print_json_line(item, out)?;
        }
    } else {
        serde_json::to_writer_pretty(&mut *out, items)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Prints rows as CSV with a header, every cell defused.
pub fn print_csv<R: AsRef<[String]>>(
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut csv = CsvOut::new(header, out)?;
    for row in rows {
        csv.row(row.as_ref())?;
    }
    csv.finish()
}

/// A JSON array written an item at a time, byte for byte what [`print_json`] writes for the
/// whole array at once: for listings too long to hold.
pub struct JsonArrayOut<'w> {
    out: &'w mut dyn Write,
    items: usize,
    item: Vec<u8>,
}

impl<'w> JsonArrayOut<'w> {
    pub fn new(out: &'w mut dyn Write) -> JsonArrayOut<'w> {
        JsonArrayOut { out, items: 0, item: Vec::new() }
    }

    pub fn item<T: Serialize>(&mut self, item: &T) -> anyhow::Result<()> {
        self.item.clear();
        serde_json::to_writer_pretty(&mut self.item, item)?;
        self.out.write_all(if self.items == 0 { b"[\n  " } else { b",\n  " })?;
        // Inside the array every line of the item is indented two spaces more. A line break
        // is always the printer's: one inside a string is written `\n`.
        for (i, line) in self.item.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n  ")?;
            }
            self.out.write_all(line)?;
        }
        self.items += 1;
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        self.out.write_all(if self.items == 0 { b"[]\n" } else { b"\n]\n" })?;
        Ok(())
    }
}

/// CSV written a row at a time (every cell defused), for listings too long to hold.
pub struct CsvOut<'w> {
    writer: csv::Writer<&'w mut dyn Write>,
}

impl<'w> CsvOut<'w> {
    pub fn new(header: &[&str], out: &'w mut dyn Write) -> anyhow::Result<CsvOut<'w>> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(header)?;
        Ok(CsvOut { writer })
    }

    pub fn row(&mut self, cells: &[String]) -> anyhow::Result<()> {
        self.writer.write_record(cells.iter().map(|c| SafeCell(csv_safe(c))))?;
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.writer.flush()?;
        Ok(())
    }
}

/// A defused cell, written without copying it.
struct SafeCell<'a>(Cow<'a, str>);

impl AsRef<[u8]> for SafeCell<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written an item at a time, an array is what printing it whole gives: empty, one item,
    /// and items with nested arrays and objects (empty ones too) and line breaks in strings.
    #[test]
    fn an_array_written_item_by_item_is_the_array_printed_whole() {
        let items = [
            serde_json::json!({"a": 1, "b": [1, [2, {}]], "c": {"d": [], "e": "two\nlines"}}),
            serde_json::json!([]),
            serde_json::json!("plain"),
            serde_json::json!({"reasons": [{"text": "x", "event_ids": ["e1", "e2"]}]}),
        ];
        for n in 0..=items.len() {
            let mut whole = Vec::new();
            print_json(&items[..n], false, &mut whole).unwrap();
            let mut streamed = Vec::new();
            let mut array = JsonArrayOut::new(&mut streamed);
            for item in &items[..n] {
                array.item(item).unwrap();
            }
            array.finish().unwrap();
            assert_eq!(String::from_utf8(streamed).unwrap(), String::from_utf8(whole).unwrap(), "{n} items");
        }
    }

    #[test]
    fn escapes_and_controls_are_removed() {
        assert_eq!(terminal_safe("plain"), "plain");
        assert_eq!(terminal_safe("red\u{1b}[31mtext\u{1b}[0m"), "redtext");
        assert_eq!(terminal_safe("a\u{1b}]0;title\u{7}b"), "ab");
        assert_eq!(terminal_safe("line\nbreak\r\tx\u{0}"), "linebreakx");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(csv_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for cell in ["+1", "-1", "@SUM(A1)"] {
            assert!(csv_safe(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(csv_safe("arn:aws:iam::1:role/x"), "arn:aws:iam::1:role/x");
    }
}
