//! The URL of a storage layer: `s3://[key:secret@]host[:port]/bucket[/prefix]`
//! with its options, or a local directory. Configuration, checked at start-up.

use std::path::PathBuf;

/// The parts of an S3 layer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Path-style (`host/bucket/key`) rather than virtual-host requests.
    pub path_style: bool,
    /// Credentials given in the URL (`s3://key:secret@host/...`).
    pub credentials: Option<(String, String)>,
}

impl S3Url {
    /// Parses `s3://[key:secret@]host[:port]/bucket[/prefix][?secure=true|false][&url-style=vhost|path]`.
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url.strip_prefix("s3://").ok_or("an S3 layer URL starts with s3://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').ok_or("the S3 URL has no bucket: s3://host/bucket")?;
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (key, secret) = userinfo.split_once(':').ok_or("credentials in the URL are key:secret")?;
                (Some((key.to_owned(), secret.to_owned())), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err("the S3 URL has no endpoint host".into());
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err("the S3 URL has no bucket: s3://host/bucket".into());
        }
        let mut secure = true;
        let mut path_style = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "secure" => {
                    secure = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => return Err(format!("secure={other}: expected true or false")),
                    }
                }
                "url-style" => {
                    path_style = match value {
                        "path" => true,
                        "vhost" => false,
                        other => return Err(format!("url-style={other}: expected path or vhost")),
                    }
                }
                other => return Err(format!("unknown S3 URL parameter '{other}' (known: secure, url-style)")),
            }
        }
        Ok(S3Url {
            endpoint: format!("{}://{host}", if secure { "https" } else { "http" }),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            path_style,
            credentials,
        })
    }
}

/// The local directory of an fs layer URL (`file:///data`, `/data` or `./data`).
pub fn fs_layer_root(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}
