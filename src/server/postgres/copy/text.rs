//! Postgres' text and CSV formats of COPY: finding lines, splitting them into
//! values (COPY FROM), and writing values (COPY TO).

use super::Format;

/// Where the search for the end of the current line stands in the pending
/// bytes, and whether it is inside a quoted CSV value there.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LineScanner {
    pub(super) scanned: usize,
    pub(super) quoted: bool,
}

impl LineScanner {
    /// The end of the current line (a newline, outside quotes in CSV), from
    /// where the last search stopped; `None` when `bytes` holds no complete line.
    pub(super) fn line_end(&mut self, bytes: &[u8], format: &Format) -> Option<usize> {
        if !format.is_csv() {
            let found = memchr::memchr(b'\n', &bytes[self.scanned..]).map(|i| self.scanned + i);
            if found.is_none() {
                self.scanned = bytes.len();
            }
            return found;
        }
        let mut i = self.scanned;
        while i < bytes.len() {
            let b = bytes[i];
            if self.quoted {
                if b == format.escape && format.escape != format.quote {
                    if i + 1 >= bytes.len() {
                        // The escaped byte is in the next message: look again from here.
                        break;
                    }
                    i += 2;
                    continue;
                }
                if b == format.quote {
                    self.quoted = false;
                }
            } else if b == format.quote {
                self.quoted = true;
            } else if b == b'\n' {
                return Some(i);
            }
            i += 1;
        }
        self.scanned = i;
        None
    }
}

#[cfg(test)]
fn line_end(bytes: &[u8], format: &Format) -> Option<usize> {
    LineScanner::default().line_end(bytes, format)
}

/// The fields of a line in text format: `\N` is NULL, backslash escapes.
pub(super) fn text_fields(line: &[u8], format: &Format) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i <= line.len() {
        if i == line.len() || line[i] == format.delimiter {
            let raw = &line[start..i];
            fields.push(if raw == format.null.as_slice() { None } else { Some(unescape_text(raw)?) });
            start = i + 1;
        } else if line[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    Ok(fields)
}

fn unescape_text(raw: &[u8]) -> Result<Vec<u8>, String> {
    if !raw.contains(&b'\\') {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&next) = raw.get(i) else { return Err("the line ends with a backslash".into()) };
        i += 1;
        out.push(match next {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(next - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (value & 0xff) as u8
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u8;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d as u8;
                            i += 1;
                        }
                        None => break,
                    }
                }
                value
            }
            other => other,
        });
    }
    Ok(out)
}

/// The fields of a line in CSV format: an unquoted NULL string is NULL, a
/// quoted one is a value.
pub(super) fn csv_fields(line: &[u8], format: &Format) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut value = Vec::new();
        let mut quoted_any = false;
        let start = i;
        while i < line.len() && line[i] != format.delimiter {
            if line[i] == format.quote {
                quoted_any = true;
                i += 1;
                loop {
                    let Some(&b) = line.get(i) else { return Err("a quoted value is not closed".into()) };
                    if b == format.escape && line.get(i + 1).is_some_and(|n| *n == format.quote || *n == format.escape)
                    {
                        // An escaped quote (or escape); with the default escape, `""`.
                        if format.escape != format.quote || line.get(i + 1) == Some(&format.quote) {
                            value.push(line[i + 1]);
                            i += 2;
                            continue;
                        }
                    }
                    i += 1;
                    if b == format.quote {
                        break;
                    }
                    value.push(b);
                }
            } else {
                value.push(line[i]);
                i += 1;
            }
        }
        let raw = &line[start..i];
        fields.push(if !quoted_any && raw == format.null.as_slice() { None } else { Some(value) });
        if i >= line.len() {
            break;
        }
        i += 1;
    }
    Ok(fields)
}

/// Appends one value to a COPY TO line: `None` is NULL; text is escaped as
/// the format needs (backslash escapes in text, quotes in CSV where needed).
pub(super) fn push_value(out: &mut Vec<u8>, value: Option<&[u8]>, format: &Format) {
    let Some(value) = value else {
        out.extend_from_slice(&format.null);
        return;
    };
    if !format.is_csv() {
        for &b in value {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' if format.delimiter == b'\t' => out.extend_from_slice(b"\\t"),
                b if b == format.delimiter => {
                    out.push(b'\\');
                    out.push(b);
                }
                b => out.push(b),
            }
        }
        return;
    }
    // CSV quotes a value that holds the delimiter, the quote, a line break,
    // or that reads as NULL (so that a value stays a value).
    let needs_quotes = value.is_empty() && format.null.is_empty()
        || value == format.null.as_slice()
        || value.iter().any(|&b| b == format.delimiter || b == format.quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(format.quote);
    for &b in value {
        if b == format.quote || b == format.escape {
            out.push(format.escape);
        }
        out.push(b);
    }
    out.push(format.quote);
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::*;

    fn text(values: &[Option<&str>]) -> Vec<Option<Vec<u8>>> {
        values.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect()
    }

    #[test]
    fn text_format_escapes_and_nulls() {
        let format = Format::text();
        assert_eq!(
            text_fields(b"a\\tb\t\\N\t1\\\\2\t\\101\\x41", &format),
            Ok(text(&[Some("a\tb"), None, Some("1\\2"), Some("AA")]))
        );
        assert_eq!(text_fields(b"", &format), Ok(text(&[Some("")])));
        assert_eq!(text_fields(b"a\\\tb", &format), Ok(text(&[Some("a\tb")])));
    }

    #[test]
    fn csv_format_quotes_and_nulls() {
        let format = Format::text().csv();
        assert_eq!(
            csv_fields(b"a,,\"\",\"x,\"\"y\"\"\nz\"", &format),
            Ok(text(&[Some("a"), None, Some(""), Some("x,\"y\"\nz")]))
        );
        assert!(csv_fields(b"\"open", &format).is_err());
        assert_eq!(line_end(b"\"a\nb\"\nrest", &format), Some(5));
        assert_eq!(line_end(b"a\nb", &Format::text()), Some(1));
    }

    #[test]
    fn a_line_split_across_messages_is_found_once_whole() {
        let format = Format::text().csv();
        let mut scanner = LineScanner::default();
        let mut bytes = b"x,\"a\n".to_vec();
        assert_eq!(scanner.line_end(&bytes, &format), None, "the newline is quoted");
        bytes.extend_from_slice(b"b\"\n");
        assert_eq!(scanner.line_end(&bytes, &format), Some(7));
        let escaped = Format { escape: b'\\', ..format };
        let mut scanner = LineScanner::default();
        let mut bytes = b"\"a\\".to_vec();
        assert_eq!(scanner.line_end(&bytes, &escaped), None);
        bytes.extend_from_slice(b"\"\"\n");
        assert_eq!(scanner.line_end(&bytes, &escaped), Some(5), "the escaped quote does not close the value");
    }

    #[test]
    fn values_written_by_copy_to_read_back_the_same() {
        let values: Vec<Option<&[u8]>> =
            vec![Some(b"plain"), None, Some(b""), Some(b"tab\there"), Some(b"a,\"b\"\nc"), Some(b"back\\slash")];
        for format in [Format::text(), Format::text().csv()] {
            let mut line = Vec::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    line.push(format.delimiter);
                }
                push_value(&mut line, *value, &format);
            }
            let mut scanner = LineScanner::default();
            let mut with_newline = line.clone();
            with_newline.push(b'\n');
            assert_eq!(scanner.line_end(&with_newline, &format), Some(line.len()), "{format:?}");
            let fields = if format.is_csv() { csv_fields(&line, &format) } else { text_fields(&line, &format) };
            let expected: Vec<Option<Vec<u8>>> = values.iter().map(|v| v.map(<[u8]>::to_vec)).collect();
            assert_eq!(fields, Ok(expected), "{format:?}");
        }
    }
}
