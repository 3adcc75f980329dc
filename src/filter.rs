//! Endpoint filters: `LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX` (both sides),
//! `_SERVER` (matched on the request's path) and `_CLIENT` (matched on
//! `url.full`).
//!
//! A matching exchange yields no span. A filtered SERVER request's context
//! is unsampled, so nothing made while serving it is exported either (the
//! thread's active context is marked filtered, which also overrides a
//! sampler that ignores parents), and the `-00` it propagates makes
//! downstream services drop theirs: a health check leaves no trace.
//! Requests the app itself sends to one of our OTLP endpoints are filtered
//! as clients always.

use regex_lite::Regex;

/// The compiled filters of a process.
#[derive(Debug, Default)]
pub struct EndpointFilters {
    server: Vec<Regex>,
    client: Vec<Regex>,
    /// `scheme://authority` of each OTLP endpoint spans go to.
    own_endpoints: Vec<String>,
}

impl EndpointFilters {
    /// From the patterns (already checked to compile) and the OTLP
    /// endpoint URLs.
    pub fn new<'a>(
        server: &[String],
        client: &[String],
        endpoints: impl IntoIterator<Item = &'a str>,
    ) -> EndpointFilters {
        let compile = |list: &[String]| list.iter().filter_map(|p| Regex::new(p).ok()).collect();
        EndpointFilters {
            server: compile(server),
            client: compile(client),
            own_endpoints: endpoints
                .into_iter()
                .filter_map(origin)
                .map(str::to_ascii_lowercase)
                .collect(),
        }
    }

    /// Whether any server filter is set.
    pub fn filters_servers(&self) -> bool {
        !self.server.is_empty()
    }

    /// Whether a request to this server path yields no span.
    pub fn server_filtered(&self, path: &str) -> bool {
        !self.server.is_empty() && self.server.iter().any(|r| r.is_match(path))
    }

    /// Whether a request to `url_full` (a CLIENT span's `url.full`) yields
    /// no span.
    pub fn client_filtered(&self, url_full: &str) -> bool {
        self.own_endpoints.iter().any(|o| {
            // Bytes, not `str` slicing: `url_full` may have a multi-byte
            // character across `o.len()`.
            url_full
                .as_bytes()
                .get(..o.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(o.as_bytes()))
                && matches!(url_full.as_bytes().get(o.len()), None | Some(b'/' | b'?'))
        }) || self.client.iter().any(|r| r.is_match(url_full))
    }
}

/// The patterns of one filter variable (a JSON array of regexes); an
/// invalid regex, or a value that is no such array, is warned about and
/// ignored.
pub fn parse_patterns(name: &str, raw: Option<&str>, warnings: &mut Vec<String>) -> Vec<String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Vec::new();
    };
    let Ok(list) = serde_json::from_str::<Vec<String>>(raw) else {
        warnings.push(format!(
            "{name}={raw:?} is not a JSON array of strings; ignored"
        ));
        return Vec::new();
    };
    list.into_iter()
        .filter(|p| match Regex::new(p) {
            Ok(_) => true,
            Err(e) => {
                warnings.push(format!("{name}: ignoring invalid regex {p:?}: {e}"));
                false
            }
        })
        .collect()
}

/// `scheme://authority` of a URL, if it has both.
fn origin(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    (end > start).then(|| &url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(server: &[&str], client: &[&str]) -> EndpointFilters {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        EndpointFilters::new(
            &v(server),
            &v(client),
            ["https://ga-otlp.lumigo-tracer-edge.golumigo.com/v1/traces"],
        )
    }

    #[test]
    fn server_paths_and_client_urls() {
        let f = filters(&["^/health$", "ready"], &["example\\.com/skip"]);
        assert!(f.server_filtered("/health"));
        assert!(!f.server_filtered("/healthz"));
        assert!(f.server_filtered("/k8s/ready/now"), "unanchored search");
        assert!(!f.server_filtered("/orders"));
        assert!(f.client_filtered("http://example.com/skip/1"));
        assert!(!f.client_filtered("http://example.com/keep"));
        assert!(!filters(&[], &[]).server_filtered("/health"));
    }

    /// Found by `fuzz/` (target config): a URL with a multi-byte character
    /// across the length of an endpoint's origin panicked (a `str` sliced
    /// inside a character).
    #[test]
    fn a_url_with_a_character_across_the_origin_length_is_compared() {
        let f = EndpointFilters::new(&[], &[], ["http://localhost:4318/v1/traces"]);
        assert!(!f.client_filtered("http://localhost:431\u{e9}/v1/traces"));
        assert!(!f.client_filtered("http://localhost:43\u{1F600}"));
        assert!(f.client_filtered("HTTP://LOCALHOST:4318/v1/traces"));
    }

    #[test]
    fn patterns_from_json() {
        let mut w = Vec::new();
        let p = parse_patterns("F", Some(r#"["^/health$", "(", "x"]"#), &mut w);
        assert_eq!(p, vec!["^/health$", "x"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(parse_patterns("F", Some("/health"), &mut w).is_empty());
        assert_eq!(w.len(), 2);
        assert!(parse_patterns("F", None, &mut w).is_empty());
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn our_own_endpoint_is_never_a_client_span() {
        let f = filters(&[], &[]);
        for own in [
            "https://ga-otlp.lumigo-tracer-edge.golumigo.com/v1/traces",
            "HTTPS://GA-OTLP.lumigo-tracer-edge.golumigo.com/",
            "https://ga-otlp.lumigo-tracer-edge.golumigo.com",
        ] {
            assert!(f.client_filtered(own), "{own}");
        }
        for other in [
            "https://ga-otlp.lumigo-tracer-edge.golumigo.com.evil/v1/traces",
            "https://ga-otlp.lumigo-tracer-edge.golumigo.com:8443/v1/traces",
            "http://ga-otlp.lumigo-tracer-edge.golumigo.com/v1/traces",
        ] {
            assert!(!f.client_filtered(other), "{other}");
        }
        assert_eq!(origin("http://h:1/x?y"), Some("http://h:1"));
        assert_eq!(origin("http://"), None);
        assert_eq!(origin("nothing"), None);
    }
}
