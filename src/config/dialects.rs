//! `dialects`: what each vendor accepts (see `dialect::policy`). The shipped defaults are
//! `src/dialect/policies.json`; a dialect named here replaces its shipped lists.

use super::{ConfigError, error};
use crate::dialect::{Dialect, Policies, Policy};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    /// Client beta -> vendor beta, or null to drop it; `null` for the whole map: all pass.
    #[serde(default, deserialize_with = "present")]
    betas: Option<Option<BTreeMap<String, Option<String>>>>,
    #[serde(default, deserialize_with = "present")]
    fields: Option<Option<Vec<String>>>,
}

/// Tells a field set to `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

const SHIPPED: &str = include_str!("../dialect/policies.json");

/// A beta or field name: printable, no spaces, commas or quotes.
fn name(path: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(error(path, "must be a beta or field name"))
    }
}

fn compile(path: &str, raw: &RawPolicy, base: Policy) -> Result<Policy, ConfigError> {
    let mut p = base;
    if let Some(betas) = &raw.betas {
        p.betas = match betas {
            None => None,
            Some(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (from, to) in map {
                    name(&format!("{path}.betas"), from)?;
                    if let Some(to) = to {
                        name(&format!("{path}.betas.{from}"), to)?;
                    }
                    out.push((from.clone(), to.clone()));
                }
                Some(out)
            }
        };
    }
    if let Some(fields) = &raw.fields {
        if let Some(list) = fields {
            for (i, f) in list.iter().enumerate() {
                name(&format!("{path}.fields[{i}]"), f)?;
            }
        }
        p.fields = fields.clone();
    }
    Ok(p)
}

pub(super) fn compile_policies(raw: &BTreeMap<String, RawPolicy>) -> Result<Policies, ConfigError> {
    let shipped: BTreeMap<String, RawPolicy> = serde_json::from_str(SHIPPED).map_err(|e| {
        error(
            "dialects",
            format!("the shipped defaults do not parse: {e}"),
        )
    })?;
    for key in raw.keys() {
        if Dialect::from_name(key).is_none_or(|d| d == Dialect::Anthropic) {
            return Err(error(
                &format!("dialects.{key}"),
                "must be one of bedrock, bedrock-messages, vertex, foundry",
            ));
        }
    }
    let mut out = Vec::new();
    for d in Dialect::ALL {
        let base = match shipped.get(d.as_str()) {
            Some(s) => compile("dialects", s, Policy::default())?,
            None => Policy::default(),
        };
        let p = match raw.get(d.as_str()) {
            Some(r) => compile(&format!("dialects.{}", d.as_str()), r, base)?,
            None => base,
        };
        out.push((d, p));
    }
    Ok(Policies::new(out))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use crate::dialect::Dialect;

    #[test]
    fn shipped_policies_load_and_can_be_replaced() {
        let c = parse(b"{}").unwrap();
        let bedrock = c.policies.of(Dialect::Bedrock);
        assert_eq!(
            bedrock.beta("advanced-tool-use-2025-11-20"),
            Some("tool-search-tool-2025-10-19")
        );
        assert_eq!(bedrock.beta("extended-cache-ttl-2025-04-11"), None);
        assert!(
            bedrock
                .fields
                .as_ref()
                .unwrap()
                .iter()
                .any(|f| f == "anthropic_version")
        );
        assert_eq!(
            c.policies.of(Dialect::Anthropic).beta("anything"),
            Some("anything")
        );
        let c = parse(
            br#"{"dialects":{"bedrock":{"betas":{"new-beta-2027-01-01":"new-beta-2027-01-01"}},
                 "vertex":{"betas":null,"fields":["messages"]}}}"#,
        )
        .unwrap();
        let bedrock = c.policies.of(Dialect::Bedrock);
        assert_eq!(
            bedrock.beta("new-beta-2027-01-01"),
            Some("new-beta-2027-01-01")
        );
        assert_eq!(bedrock.beta("context-1m-2025-08-07"), None);
        // Fields not named keep their shipped list.
        assert!(bedrock.fields.is_some());
        let vertex = c.policies.of(Dialect::Vertex);
        assert_eq!(vertex.beta("x"), Some("x"));
        assert_eq!(vertex.fields.as_deref(), Some(&["messages".to_owned()][..]));
        for (doc, path) in [
            (r#"{"dialects":{"anthropic":{}}}"#, "dialects.anthropic"),
            (
                r#"{"dialects":{"bedrock":{"fields":["a b"]}}}"#,
                "dialects.bedrock.fields[0]",
            ),
            (
                r#"{"dialects":{"bedrock":{"betas":{"a":"b,c"}}}}"#,
                "dialects.bedrock.betas.a",
            ),
            (
                r#"{"dialects":{"bedrock":{"beta":{}}}}"#,
                "dialects.bedrock.beta",
            ),
        ] {
            assert_eq!(parse(doc.as_bytes()).unwrap_err().path, path, "{doc}");
        }
    }
}
