//! The metric catalog. Envoy exports wasm metrics as `wasmcustom.<name>`; labels are encoded in
//! the name as `.<tag>.<value>` pairs and turned back into Prometheus labels by the `stats_tags`
//! regexes shipped in `envoy/`. Tag values come only from bounded sets (configuration, enums),
//! and are sanitized so a value can never add a tag or a name segment.

use crate::cache::{Location, Skip, Ttl};
use crate::request::BodyIssue;

/// Prefix of every metric name.
pub const PREFIX: &str = "claude_gateway";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Histogram,
}

/// A metric of the catalog with its label values filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metric {
    pub kind: Kind,
    pub name: String,
}

impl Metric {
    fn new(kind: Kind, base: &str, tags: &[(&str, &str)]) -> Metric {
        let mut name = format!("{PREFIX}.{base}");
        for (tag, value) in tags {
            name.push('.');
            name.push_str(tag);
            name.push('.');
            push_label(&mut name, value);
        }
        Metric { kind, name }
    }
}

/// Appends a label value, mapping every byte outside `[A-Za-z0-9_-]` to `_` (dots would split
/// the name, and quotes or newlines have no business in an exposition format) and bounding its
/// length.
fn push_label(out: &mut String, value: &str) {
    const MAX: usize = 64;
    if value.is_empty() {
        out.push('_');
    }
    for b in value.bytes().take(MAX) {
        let ok = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        out.push(if ok { char::from(b) } else { '_' });
    }
}

/// Requests whose body was forwarded untouched, by reason.
pub fn body_passthrough(reason: BodyIssue) -> Metric {
    Metric::new(
        Kind::Counter,
        "body_passthrough",
        &[("reason", reason.as_str())],
    )
}

/// Cache markers the gateway added, by location and TTL.
pub fn cache_markers_added(location: Location, ttl: Ttl) -> Metric {
    Metric::new(
        Kind::Counter,
        "cache_markers_added",
        &[("location", location.as_str()), ("ttl", ttl.as_str())],
    )
}

/// Messages requests that got no cache marker, by reason.
pub fn cache_skipped(reason: Skip) -> Metric {
    Metric::new(
        Kind::Counter,
        "cache_skipped",
        &[("reason", reason.as_str())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_tags() {
        let m = body_passthrough(BodyIssue::InvalidJson);
        assert_eq!(
            m.name,
            "claude_gateway.body_passthrough.reason.invalid_json"
        );
        assert_eq!(m.kind, Kind::Counter);
    }

    #[test]
    fn label_values_cannot_inject() {
        let m = Metric::new(Kind::Counter, "x", &[("model", "a.b\n{c=\"d\"}")]);
        assert_eq!(m.name, "claude_gateway.x.model.a_b__c__d__");
        let m = Metric::new(Kind::Counter, "x", &[("model", "")]);
        assert_eq!(m.name, "claude_gateway.x.model._");
        let long = "m".repeat(500);
        let m = Metric::new(Kind::Counter, "x", &[("model", &long)]);
        assert_eq!(m.name.len(), "claude_gateway.x.model.".len() + 64);
    }
}
