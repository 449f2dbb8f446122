//! Parameter markers as JDBC and ADBC users write them.

/// The SQL with each `?` parameter marker numbered (`$1`, `$2`, ...): JDBC and
/// ADBC users write `?`, and the engine takes Postgres' numbered markers.
/// A `?` inside a string (also `E'...'` and `$tag$...$tag$`), a quoted name or
/// a comment is text. SQL that already numbers its markers (`$1`, `?1`) is
/// left as it is.
pub fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let bytes = sql.as_bytes();
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
    let mut markers: Vec<usize> = Vec::new();
    let mut numbered = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // E'...' strings take backslash escapes; the others double the quote.
                let backslashes = quote == b'\''
                    && i > 0
                    && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !name_byte(bytes[i - 2]));
                i += 1;
                while i < bytes.len() {
                    let escaped = backslashes && bytes[i] == b'\\';
                    let doubled = bytes[i] == quote && bytes.get(i + 1) == Some(&quote);
                    if escaped || doubled {
                        i += 2;
                    } else if bytes[i] == quote {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |at| i + at);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Block comments nest, as in Postgres.
                let mut depth = 1;
                i += 2;
                while i < bytes.len() && depth > 0 {
                    if bytes[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if bytes[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) && (i == 0 || !name_byte(bytes[i - 1])) => {
                numbered = true;
                i += 1;
            }
            b'$' if i == 0 || !name_byte(bytes[i - 1]) => {
                // $tag$ ... $tag$ (the tag may be empty) is a string.
                let end = (i + 1..bytes.len()).find(|&j| !name_byte(bytes[j])).unwrap_or(bytes.len());
                if bytes.get(end) == Some(&b'$') {
                    let tag = &bytes[i..=end];
                    i = memchr::memmem::find(&bytes[end + 1..], tag).map_or(bytes.len(), |at| end + 1 + at + tag.len());
                } else {
                    i += 1;
                }
            }
            b'?' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                numbered = true;
                i += 1;
            }
            // jsonb's `?|`, `?&` and `@?` are operators, not markers.
            b'?' if matches!(bytes.get(i + 1), Some(b'|' | b'&')) || (i > 0 && bytes[i - 1] == b'@') => i += 1,
            b'?' => {
                markers.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    if markers.is_empty() || numbered {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 2 * markers.len());
    let mut copied = 0;
    for (n, at) in markers.into_iter().enumerate() {
        out.push_str(&sql[copied..at]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        copied = at + 1;
    }
    out.push_str(&sql[copied..]);
    std::borrow::Cow::Owned(out)
}
