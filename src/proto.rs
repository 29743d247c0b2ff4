//! Protobuf that Envoy hands the filter instead of JSON: a plugin configuration written as YAML
//! (`google.protobuf.Struct`; Envoy passes the serialized message to the VM) and an upstream
//! host's metadata (`xds.upstream_host_metadata`, an `envoy.config.core.v3.Metadata`).

use prost::Message;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use std::collections::HashMap;

/// `envoy.config.core.v3.Metadata`: only the field the filter reads.
#[derive(Clone, PartialEq, Message)]
struct Metadata {
    #[prost(map = "string, message", tag = "1")]
    filter_metadata: HashMap<String, Struct>,
}

/// Decodes a serialized `google.protobuf.Struct` into JSON. Envoy's YAML loader gives integers
/// as numbers (doubles) and other scalars as strings: integral numbers become JSON integers, so
/// `cooldown_seconds: 30` reads as `30`, not `30.0`.
pub fn struct_to_json(bytes: &[u8]) -> Option<serde_json::Value> {
    Struct::decode(bytes).ok().map(|s| object(&s))
}

fn object(s: &Struct) -> serde_json::Value {
    // Sorted by key: protobuf maps have no order, and a stable one keeps error paths stable.
    let mut fields: Vec<(&String, &Value)> = s.fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    serde_json::Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

fn value(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StructValue(s)) => object(s),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value).collect()),
    }
}

fn number(n: f64) -> serde_json::Value {
    // 2^53: beyond it a double no longer holds every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // In range, so the conversion is exact.
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// A string in a host's `filter_metadata[filter][key]`, from the serialized `Metadata`.
pub fn metadata_string(bytes: &[u8], filter: &str, key: &str) -> Option<String> {
    let m = Metadata::decode(bytes).ok()?;
    match &m.filter_metadata.get(filter)?.fields.get(key)?.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes Envoy 1.40 handed the VM for `value: {p: 3.75, i: 30, b: true, s: "30",
    /// l: [1, 2.5, x], n: null, neg: -2.5e3}` (captured with a probe filter).
    const FROM_ENVOY: &str = concat!(
        "0a090a017312041a0233300a070a016e120208000a1e0a016c121932170a0911000000000000f03f0a051a03",
        "322e350a031a01780a070a0162120220010a0f0a036e656712081a062d322e3565330a0b0a017012061a0433",
        "2e37350a0e0a01691209110000000000003e40",
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn structs_become_json_with_integers() {
        let s = Struct {
            fields: [
                (
                    "i".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(30.0)),
                    },
                ),
                (
                    "f".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(0.5)),
                    },
                ),
                (
                    "s".to_owned(),
                    Value {
                        kind: Some(Kind::StringValue("3.75".into())),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let json = struct_to_json(&s.encode_to_vec()).unwrap();
        assert_eq!(json, serde_json::json!({"f": 0.5, "i": 30, "s": "3.75"}));
        assert_eq!(json.to_string(), r#"{"f":0.5,"i":30,"s":"3.75"}"#);
        assert!(struct_to_json(b"\xff\xff").is_none());
    }

    #[test]
    fn decodes_what_envoy_sends() {
        let json = struct_to_json(&unhex(FROM_ENVOY)).unwrap();
        let want = serde_json::json!({
            "b": true, "i": 30, "l": [1, "2.5", "x"], "n": null, "neg": "-2.5e3", "p": "3.75",
            "s": "30"
        });
        assert_eq!(json, want);
    }

    #[test]
    fn reads_host_metadata() {
        // `metadata: {filter_metadata: {claude_gateway: {vendor: bedrock}}}` as Envoy serializes it.
        let bytes = unhex(
            "0a270a0e636c617564655f6761746577617912150a130a0676656e646f7212091a07626564726f636b",
        );
        assert_eq!(
            metadata_string(&bytes, "claude_gateway", "vendor").as_deref(),
            Some("bedrock")
        );
        assert_eq!(metadata_string(&bytes, "claude_gateway", "other"), None);
        assert_eq!(metadata_string(&bytes, "other", "vendor"), None);
        assert_eq!(metadata_string(b"", "claude_gateway", "vendor"), None);
    }
}
