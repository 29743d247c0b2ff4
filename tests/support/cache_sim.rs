//! A mock upstream that caches like the Messages API (anthropic-wire.md §4.2-§4.4): prefixes are
//! written at breakpoints in tools -> system -> messages order, reads look back up to 20 blocks
//! from each breakpoint, entries expire after their TTL (refreshed on read), prefixes below the
//! minimum are not cached, and usage reports input / cache writes (5m and 1h) / cache reads.
//! Tokens are estimated as bytes / 4 of each block's canonical JSON.

use super::mock::{Recorded, Reply, Responder};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LOOKBACK: usize = 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimUsage {
    pub input: u64,
    pub write_5m: u64,
    pub write_1h: u64,
    pub read: u64,
}

impl SimUsage {
    /// Input cost in hundredths of the base input price per token: uncached 1x, 5m writes
    /// 1.25x, 1h writes 2x, reads 0.1x (list-price multipliers).
    pub fn cost(&self) -> u64 {
        self.input * 100 + self.write_5m * 125 + self.write_1h * 200 + self.read * 10
    }

    pub fn add(&mut self, o: SimUsage) {
        self.input += o.input;
        self.write_5m += o.write_5m;
        self.write_1h += o.write_1h;
        self.read += o.read;
    }
}

struct Block {
    tokens: u64,
    hash: u64,
    /// The block's marker TTL, if it has one (long = 1h).
    marker: Option<bool>,
}

pub struct CacheSim {
    min_tokens: u64,
    entries: Mutex<HashMap<u64, Instant>>,
}

fn hash(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn marker_of(v: &Value) -> Option<bool> {
    v.get("cache_control")
        .filter(|m| m.is_object())
        .map(|m| m["ttl"] == "1h")
}

/// A block's content without markers; a string becomes the text block the API turns it into.
fn block(v: &Value) -> Block {
    let (canonical, marker) = match v {
        Value::String(s) => (json!({"type":"text","text":s}), None),
        other => {
            let mut c = other.clone();
            let mut marker = marker_of(other);
            if let Some(o) = c.as_object_mut() {
                o.remove("cache_control");
            }
            // Markers on tool_result sub-blocks act on the tool result.
            for sub in c
                .get_mut("content")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                marker = marker.or(marker_of(sub));
                if let Some(o) = sub.as_object_mut() {
                    o.remove("cache_control");
                }
            }
            (c, marker)
        }
    };
    let text = canonical.to_string();
    Block {
        tokens: (text.len() as u64 / 4).max(1),
        hash: hash(&text),
        marker,
    }
}

fn blocks_of(v: &Value) -> Vec<Block> {
    match v {
        Value::Array(a) => a.iter().map(block).collect(),
        Value::Null => Vec::new(),
        other => vec![block(other)],
    }
}

impl CacheSim {
    pub fn new(min_tokens: u64) -> Arc<CacheSim> {
        Arc::new(CacheSim {
            min_tokens,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Processes one request body and returns its usage.
    pub fn process(&self, body: &Value) -> SimUsage {
        let mut blocks = blocks_of(&body["tools"]);
        blocks.extend(blocks_of(&body["system"]));
        for m in body["messages"].as_array().into_iter().flatten() {
            blocks.extend(blocks_of(&m["content"]));
        }
        let mut prefix = Vec::with_capacity(blocks.len());
        let mut tokens = Vec::with_capacity(blocks.len());
        let (mut h, mut t) = (hash(&body["model"].to_string()), 0u64);
        for b in &blocks {
            h = hash(&(h, b.hash));
            t += b.tokens;
            prefix.push(h);
            tokens.push(t);
        }
        let total = t;
        let mut breakpoints: Vec<(usize, bool)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.marker.map(|long| (i, long)))
            .collect();
        if let Some(long) = marker_of(body) {
            if let Some(last) = blocks.len().checked_sub(1) {
                breakpoints.push((last, long));
            }
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|_, expiry| *expiry > now);
        // The longest cached prefix reachable from any breakpoint.
        let mut hit: Option<usize> = None;
        for &(b, _) in &breakpoints {
            let found = (b.saturating_sub(LOOKBACK - 1)..=b)
                .rev()
                .find(|&j| entries.contains_key(&prefix[j]));
            hit = hit.max(found);
        }
        let read = hit.map_or(0, |a| tokens[a]);
        let ttl = |long: bool| Duration::from_secs(if long { 3600 } else { 300 });
        if let Some(a) = hit {
            let long = breakpoints.iter().any(|&(b, l)| l && b >= a);
            entries.insert(prefix[a], now + ttl(long));
        }
        // Writes at every breakpoint past the hit whose prefix is long enough.
        let mut written = read;
        let mut usage = SimUsage::default();
        breakpoints.sort();
        for &(b, long) in &breakpoints {
            if hit.is_some_and(|a| b <= a) || tokens[b] < self.min_tokens {
                continue;
            }
            entries.insert(prefix[b], now + ttl(long));
            let fresh = tokens[b] - written;
            if long {
                usage.write_1h += fresh;
            } else {
                usage.write_5m += fresh;
            }
            written = tokens[b];
        }
        usage.read = read;
        usage.input = total - written;
        usage
    }

    /// A responder that answers every Messages request with a JSON message carrying the usage.
    pub fn responder(self: &Arc<Self>) -> Responder {
        let sim = self.clone();
        Arc::new(move |r: &Recorded| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let u = sim.process(&body);
            Reply::json(
                200,
                json!({"id":"msg_sim","type":"message","role":"assistant","model":body["model"],
                    "content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,
                    "usage":{"input_tokens":u.input,"cache_creation_input_tokens":u.write_5m + u.write_1h,
                        "cache_read_input_tokens":u.read,
                        "cache_creation":{"ephemeral_5m_input_tokens":u.write_5m,"ephemeral_1h_input_tokens":u.write_1h},
                        "output_tokens":12}})
                .to_string(),
            )
        })
    }
}

/// Usage from a Messages API response body.
pub fn usage_of(response: &Value) -> SimUsage {
    let u = &response["usage"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    SimUsage {
        input: n(&u["input_tokens"]),
        write_5m: n(&u["cache_creation"]["ephemeral_5m_input_tokens"]),
        write_1h: n(&u["cache_creation"]["ephemeral_1h_input_tokens"]),
        read: n(&u["cache_read_input_tokens"]),
    }
}
