//! A minimal HTTP/1.1 client for the loader: one keep-alive connection, POST with a
//! body, read the status, the headers it needs and the body. A general client
//! would cost the loader CPU that the server needs on a two-core machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A write endpoint, split for the request line and `Host` header.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) address: String,
    pub(crate) host_header: String,
    pub(crate) path_and_query: String,
}

impl Endpoint {
    /// `http://host:port/path?query`; only plain HTTP.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        Ok(Endpoint { address, host_header: authority.to_owned(), path_and_query: path.to_owned() })
    }
}

/// What the server answered.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) retry_after_s: Option<u64>,
    pub(crate) body: Vec<u8>,
}

/// One keep-alive connection; reconnects after the server closes it.
pub(crate) struct Connection {
    endpoint: Endpoint,
    extra_headers: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub(crate) fn new(endpoint: Endpoint, extra_headers: &[(String, String)]) -> Connection {
        let extra_headers = extra_headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        Connection { endpoint, extra_headers, stream: None }
    }

    /// POSTs `body`; on an I/O error the connection is dropped, so the next call
    /// opens a new one.
    pub(crate) fn post(&mut self, body: &[u8], gzip: bool) -> std::io::Result<Response> {
        let result = self.try_post(body, gzip);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_post(&mut self, body: &[u8], gzip: bool) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.endpoint.address)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(300)))?;
            self.stream = Some(BufReader::with_capacity(64 << 10, stream));
        }
        let reader = self.stream.as_mut().ok_or_else(|| std::io::Error::other("no connection"))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}{}\r\n",
            self.endpoint.path_and_query,
            self.endpoint.host_header,
            body.len(),
            if gzip { "Content-Encoding: gzip\r\n" } else { "" },
            self.extra_headers,
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;

        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
        let (mut length, mut chunked, mut close, mut retry_after_s) = (0usize, false, false, None);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("the connection closed in the headers"));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else { continue };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "retry-after" => retry_after_s = value.parse().ok(),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or("0"), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body)?;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, retry_after_s, body })
    }
}
