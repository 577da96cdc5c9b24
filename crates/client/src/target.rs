//! Where requests go: a [`Target`] as the user wrote it (name, base URL, API dialect, key,
//! extra headers) and its validated form, the [`Endpoint`] (scheme, host, port, base path,
//! and the ready-made headers every request to it carries).
//!
//! Validation happens once, here, with errors that name the target and the fix; the
//! transport and the request builders accept only an [`Endpoint`] (raw -> resolved, STYLE
//! habit 4).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use hyper::Uri;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::error::ClientError;

/// The `anthropic-version` header value sent to Anthropic endpoints.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The `user-agent` every request carries.
pub const USER_AGENT: &str = concat!("tokenpace/", env!("CARGO_PKG_VERSION"));

/// Which API dialect an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI and compatible servers (`/v1/chat/completions`, `/v1/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Api {
    /// Short name for reports: `openai` or `anthropic`.
    pub fn label(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

/// An upstream as the user described it. Turn it into an [`Endpoint`] with
/// [`Target::endpoint`].
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Name used in reports and error messages.
    pub name: String,
    /// `http://` or `https://` URL, with or without the trailing `/v1`.
    pub base_url: String,
    /// The API dialect.
    pub api: Api,
    /// The API key: sent as `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic).
    pub api_key: Option<String>,
    /// Headers added to every request, after (and overriding) the standard ones.
    pub extra_headers: Vec<(String, String)>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api", &self.api)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "extra_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Target {
    /// A target with no key and no extra headers.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>, api: Api) -> Self {
        Target {
            name: name.into(),
            base_url: base_url.into(),
            api,
            api_key: None,
            extra_headers: Vec::new(),
        }
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// Validates the target into an [`Endpoint`].
    ///
    /// The base path gets `/v1` appended unless it already ends in `/v1`, so
    /// `http://127.0.0.1:8090` and `https://api.openai.com/v1` both work, as do proxies
    /// that mount the API under a prefix (`https://host/api/v1`).
    pub fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let bad = |reason: &str| ClientError::BaseUrl {
            target: self.name.clone(),
            url: self.base_url.clone(),
            reason: reason.to_owned(),
        };
        let raw = self.base_url.trim();
        if raw.is_empty() {
            return Err(bad("it is empty"));
        }
        if !raw.contains("://") {
            return Err(bad("it has no scheme (http:// or https://)"));
        }
        let uri: Uri = raw
            .parse()
            .map_err(|e| bad(&format!("it is not a URL ({e})")))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => {
                return Err(bad(&format!(
                    "scheme '{s}' is not supported (http or https)"
                )));
            }
            None => return Err(bad("it has no scheme (http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "user info (user:password@) is not supported; pass the key as the API key",
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("it has no host"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not supported in a base URL"));
        }
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        // `Uri` keeps IPv6 literals in brackets; sockets and TLS want them bare.
        let bare_host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_ascii_lowercase();
        let mut base_path = uri.path().trim_end_matches('/').to_owned();
        if !base_path.ends_with("/v1") {
            base_path.push_str("/v1");
        }
        let host_header = if port == scheme.default_port() {
            host.to_ascii_lowercase()
        } else {
            format!("{}:{port}", host.to_ascii_lowercase())
        };

        let mut headers = HeaderMap::new();
        let header_err = |name: &str, reason: String| ClientError::Header {
            target: self.name.clone(),
            name: name.to_owned(),
            reason,
        };
        let value = |name: &str, v: &str, sensitive: bool| {
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                header_err(
                    name,
                    "the value contains characters not allowed in HTTP headers (control \
                     characters or newlines); check for a stray newline"
                        .into(),
                )
            })?;
            value.set_sensitive(sensitive);
            Ok::<_, ClientError>(value)
        };
        headers.insert(header::HOST, value("host", &host_header, false)?);
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match (self.api, &self.api_key) {
            (Api::OpenAi, Some(key)) => {
                headers.insert(
                    header::AUTHORIZATION,
                    value("authorization", &format!("Bearer {}", key.trim()), true)?,
                );
            }
            (Api::Anthropic, key) => {
                if let Some(key) = key {
                    headers.insert("x-api-key", value("x-api-key", key.trim(), true)?);
                }
                headers.insert(
                    "anthropic-version",
                    HeaderValue::from_static(ANTHROPIC_VERSION),
                );
            }
            (Api::OpenAi, None) => {}
        }
        for (name, v) in &self.extra_headers {
            let parsed = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                header_err(
                    name,
                    "not a valid header name (letters, digits and '-' only)".into(),
                )
            })?;
            let sensitive = matches!(
                parsed.as_str(),
                "authorization" | "x-api-key" | "api-key" | "proxy-authorization"
            );
            headers.insert(parsed, value(name, v, sensitive)?);
        }

        Ok(Endpoint(Arc::new(EndpointInner {
            name: self.name.clone(),
            api: self.api,
            key: PoolKey {
                scheme,
                host: bare_host,
                port,
            },
            base_path,
            headers,
        })))
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS (rustls).
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What identifies a connection pool: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) scheme: Scheme,
    /// Lowercase host; IPv6 literals without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl PoolKey {
    /// The host as an IP address, when it is one (no DNS needed).
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

#[derive(Debug)]
struct EndpointInner {
    name: String,
    api: Api,
    key: PoolKey,
    base_path: String,
    headers: HeaderMap,
}

/// A validated [`Target`]: cheap to clone (shared inside).
#[derive(Clone)]
pub struct Endpoint(Arc<EndpointInner>);

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // HeaderMap's Debug already hides values marked sensitive (the keys).
        f.debug_struct("Endpoint")
            .field("name", &self.0.name)
            .field("api", &self.0.api)
            .field("url", &self.url())
            .field("headers", &self.0.headers)
            .finish()
    }
}

impl Endpoint {
    /// The target's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The API dialect.
    pub fn api(&self) -> Api {
        self.0.api
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.0.key.scheme
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.0.key.host
    }

    /// The port (the scheme's default when the URL gave none).
    pub fn port(&self) -> u16 {
        self.0.key.port
    }

    /// The base path, always ending in `/v1` and never in `/`.
    pub fn base_path(&self) -> &str {
        &self.0.base_path
    }

    /// The normalised base URL, e.g. `http://127.0.0.1:8090/v1`.
    pub fn url(&self) -> String {
        let host = if self.host().contains(':') {
            format!("[{}]", self.host())
        } else {
            self.host().to_owned()
        };
        format!(
            "{}://{host}:{}{}",
            self.scheme().as_str(),
            self.port(),
            self.base_path()
        )
    }

    /// The headers every request to this endpoint carries (host, user agent, content type,
    /// authentication, `anthropic-version`, extra headers).
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    pub(crate) fn pool_key(&self) -> &PoolKey {
        &self.0.key
    }

    /// Joins `path` (`/chat/completions`, `messages`, or already `/v1/...`) to the base path.
    pub fn join(&self, path: &str) -> String {
        let path = path.trim();
        let base = self.base_path();
        if path.starts_with(base) && path[base.len()..].starts_with('/') {
            return path.to_owned();
        }
        let rel = path.trim_start_matches('/');
        format!("{base}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Result<Endpoint, ClientError> {
        Target::new("t", url, Api::OpenAi).endpoint()
    }

    #[test]
    fn v1_is_appended_once() {
        let e = ep("http://127.0.0.1:8090").unwrap();
        assert_eq!(e.base_path(), "/v1");
        assert_eq!(e.port(), 8090);
        let e = ep("https://api.openai.com/v1/").unwrap();
        assert_eq!(e.base_path(), "/v1");
        assert_eq!(e.port(), 443);
        assert_eq!(e.scheme(), Scheme::Https);
        let e = ep("https://openrouter.ai/api/v1").unwrap();
        assert_eq!(e.base_path(), "/api/v1");
        assert_eq!(e.join("/chat/completions"), "/api/v1/chat/completions");
        assert_eq!(e.join("chat/completions"), "/api/v1/chat/completions");
        assert_eq!(e.join("/api/v1/messages"), "/api/v1/messages");
    }

    #[test]
    fn host_header_and_ipv6() {
        let e = ep("http://[::1]:9000").unwrap();
        assert_eq!(e.host(), "::1");
        assert_eq!(e.headers()[header::HOST], "[::1]:9000");
        assert_eq!(e.url(), "http://[::1]:9000/v1");
        let e = ep("http://Example.COM").unwrap();
        assert_eq!(e.headers()[header::HOST], "example.com");
        assert_eq!(e.port(), 80);
    }

    #[test]
    fn bad_urls_name_the_fix() {
        for (url, needle) in [
            ("", "empty"),
            ("127.0.0.1:8090", "no scheme"),
            ("ftp://x", "not supported"),
            ("http://u:p@host", "user info"),
            ("http://host/v1?x=1", "query"),
            ("http://host:0", "port 0"),
        ] {
            let err = ep(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(err.contains("use e.g. http://127.0.0.1:8090"), "{err}");
        }
    }

    #[test]
    fn auth_headers_per_api_and_redacted() {
        let e = Target::new("a", "http://h", Api::OpenAi)
            .with_api_key("sk-secret")
            .endpoint()
            .unwrap();
        assert_eq!(e.headers()[header::AUTHORIZATION], "Bearer sk-secret");
        assert!(!format!("{e:?}").contains("sk-secret"));
        let t = Target::new("b", "http://h", Api::Anthropic).with_api_key("ant-secret");
        assert!(!format!("{t:?}").contains("ant-secret"));
        let e = t.endpoint().unwrap();
        assert_eq!(e.headers()["x-api-key"], "ant-secret");
        assert_eq!(e.headers()["anthropic-version"], ANTHROPIC_VERSION);
        assert!(e.headers().get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn extra_headers_override_and_are_validated() {
        let e = Target::new("a", "http://h", Api::OpenAi)
            .with_header("X-Team", "perf")
            .with_header("user-agent", "custom")
            .endpoint()
            .unwrap();
        assert_eq!(e.headers()["x-team"], "perf");
        assert_eq!(e.headers()[header::USER_AGENT], "custom");
        let err = Target::new("a", "http://h", Api::OpenAi)
            .with_header("bad name", "v")
            .endpoint()
            .unwrap_err();
        assert!(err.to_string().contains("'bad name'"), "{err}");
        let err = Target::new("a", "http://h", Api::OpenAi)
            .with_api_key("sk\nx")
            .endpoint()
            .unwrap_err();
        assert!(err.to_string().contains("stray newline"), "{err}");
    }
}
