//! Renders the gateway's Envoy bootstraps. [`Bootstrap`] edits a shipped bootstrap
//! (`envoy/*.yaml`) as parsed YAML: local values (the path of the built .wasm, addresses and
//! ports, the plugin configuration, the upstream) for `make run`, `make validate`,
//! `make manifests`, the end-to-end tests and the benchmarks, so what they run is the shipped
//! file with only these values changed; and the structured edits that make each example in
//! `envoy/examples/` out of `envoy/envoy.yaml` ([`examples`]). The `render` binary is the
//! command line for both.

mod emit;
pub mod examples;
pub mod kubernetes;
pub mod oidc;

pub use emit::Comment;

use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const BUFFER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";
const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const STRUCT_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";
const STRING_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const STDOUT_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const FILE_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const RATELIMIT_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute";
const UPSTREAM_CODEC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec";

/// The `vm_id` of a module other than the gateway's.
const OTHER_VM: &str = "other_module";

/// How often Envoy writes buffered access-log lines (the audit record among them) to their file
/// or standard output, in milliseconds. Envoy buffers them and writes every 10 s by default, or
/// sooner once 64 KiB are waiting (`--file-flush-min-size-kb`). Envoy 1.40 has no bootstrap or
/// access-log field for this: only the command line sets it (`--file-flush-interval-msec`).
pub const FILE_FLUSH_INTERVAL_MS: u32 = 1000;
const _: () = assert!(FILE_FLUSH_INTERVAL_MS <= 1000, "audit records within 1 s");

/// The command-line flags every shipped way of starting Envoy passes along with the bootstrap:
/// `make run` (`render envoy-args`), deploy/kubernetes/replicas.yaml's container, and the
/// end-to-end test of the flush. Istio's pilot-agent and Envoy Gateway start Envoy themselves;
/// their manifests set the same interval their own way (`make manifests` checks them).
pub const ENVOY_ARGS: [&str; 2] = ["--file-flush-interval-msec", "1000"];

/// A parsed Envoy bootstrap (anchors expanded), edited in place and written back as YAML.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    doc: Value,
}

/// An upstream given as a URL: `http://host:port` (plain HTTP/1.1) or `https://host[:port]`
/// (TLS with SNI and certificate name checks, HTTP/2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "upstream {url:?} must start with http:// or https://"
            ));
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!("upstream {url:?} must not have a path"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("bad port in upstream {url:?}"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("upstream {url:?} has no host"));
        }
        Ok(Upstream {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// `v` as a mapping, replacing anything else by an empty one.
fn map(v: &mut Value) -> &mut Mapping {
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    match v {
        Value::Mapping(m) => m,
        // A mapping since the line above: this calls itself at most once.
        other => map(other),
    }
}

/// `v[k]`, inserted as null when missing (and `v` made a mapping).
fn key<'a>(v: &'a mut Value, k: &str) -> &'a mut Value {
    map(v).entry(Value::from(k)).or_insert(Value::Null)
}

/// `v` as a sequence, replacing anything else by an empty one.
fn seq(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_sequence() {
        *v = Value::Sequence(Vec::new());
    }
    match v {
        Value::Sequence(s) => s,
        // A sequence since the line above: this calls itself at most once.
        other => seq(other),
    }
}

fn yaml(text: &str) -> Result<Value, String> {
    serde_yaml_ng::from_str(text).map_err(|e| format!("{e} in YAML {text:?}"))
}

fn yaml_mapping(text: &str) -> Result<Mapping, String> {
    match yaml(text)? {
        Value::Mapping(m) => Ok(m),
        _ => Err(format!("expected a YAML mapping, got {text:?}")),
    }
}

fn yaml_sequence(text: &str) -> Result<Vec<Value>, String> {
    match yaml(text)? {
        Value::Sequence(s) => Ok(s),
        _ => Err(format!("expected a YAML sequence, got {text:?}")),
    }
}

/// A mapping from `(key, value)` pairs, in order.
fn mapping<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Sets every key of `from` in `m`: in place when `m` has it, else at the end.
fn set_all(m: &mut Mapping, from: Mapping) {
    for (k, v) in from {
        m.insert(k, v);
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("typed_config")
        .and_then(|c| c.get("@type"))
        .and_then(Value::as_str)
}

/// Calls `f` on every mapping of the tree.
fn visit(v: &mut Value, f: &mut dyn FnMut(&mut Mapping)) {
    match v {
        Value::Mapping(m) => {
            f(m);
            for (_, child) in m.iter_mut() {
                visit(child, f);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(|c| visit(c, f)),
        Value::Tagged(t) => visit(&mut t.value, f),
        _ => {}
    }
}

/// The plugin configuration as the wasm filter's `configuration` (a `google.protobuf.Any`):
/// a mapping as YAML in a `google.protobuf.Struct` (Envoy serializes the message for the
/// filter), anything else as text in a `google.protobuf.StringValue`.
fn struct_configuration(value: Mapping) -> Value {
    mapping([
        ("@type", Value::from(STRUCT_TYPE)),
        ("value", Value::Mapping(value)),
    ])
}

fn string_configuration(text: &str) -> Value {
    mapping([
        ("@type", Value::from(STRING_TYPE)),
        ("value", Value::from(text)),
    ])
}

/// A JSON object as a Struct; any other text (not JSON, not an object, empty) as it is, in a
/// StringValue, so a test can still hand the filter a configuration it must refuse.
fn json_configuration(json: &str) -> Value {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Mapping(m)) => struct_configuration(m),
        _ => string_configuration(json),
    }
}

fn module(path: &str) -> Value {
    mapping([("local", mapping([("filename", Value::from(path))]))])
}

fn socket_address(address: &str, port: u16) -> Value {
    mapping([(
        "socket_address",
        mapping([
            ("address", Value::from(address)),
            ("port_value", Value::from(port)),
        ]),
    )])
}

/// Every wasm filter config (`Wasm.config`) under `v`.
fn wasm_configs_in(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    visit(v, &mut |m| {
        if m.get("@type").and_then(Value::as_str) == Some(WASM_TYPE) {
            if let Some(config) = m.get_mut("config") {
                f(config);
            }
        }
    });
}

/// The first HTTP connection manager's config in a listener.
fn hcm_in(listener: &mut Value) -> Result<&mut Mapping, String> {
    let name = name_of(listener).unwrap_or("?").to_owned();
    listener
        .get_mut("filter_chains")
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
        .filter_map(|chain| chain.get_mut("filters").and_then(Value::as_sequence_mut))
        .flatten()
        .find(|f| type_of(f) == Some(HCM_TYPE))
        .and_then(|f| f.get_mut("typed_config"))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| format!("listener {name:?} has no HTTP connection manager"))
}

/// The routes of every virtual host of an HTTP connection manager's inline route config.
fn routes_in(hcm: &mut Mapping) -> impl Iterator<Item = &mut Value> {
    hcm.get_mut("route_config")
        .and_then(|c| c.get_mut("virtual_hosts"))
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
        .filter_map(|vh| vh.get_mut("routes").and_then(Value::as_sequence_mut))
        .flatten()
}

impl Bootstrap {
    pub fn load(path: &Path) -> Result<Bootstrap, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Bootstrap, String> {
        let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        // Aliases (`*x`) are copies once parsed; this also expands merge keys (`<<: *x`), so
        // every copy can be edited on its own.
        doc.apply_merge().map_err(|e| e.to_string())?;
        Ok(Bootstrap { doc })
    }

    /// The document as it is now.
    pub fn value(&self) -> &Value {
        &self.doc
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, String> {
        emit::emit(&self.doc, "", &[])
    }

    /// The document as YAML after `header` (comment lines), with `comments` above the nodes
    /// their patterns name (see [`Comment`]).
    pub fn render(&self, header: &str, comments: &[Comment]) -> Result<String, String> {
        emit::emit(&self.doc, header, comments)
    }

    /// Every wasm filter config (`Wasm.config`) in the document.
    fn wasm_configs(&mut self, f: &mut dyn FnMut(&mut Value)) {
        wasm_configs_in(&mut self.doc, f);
    }

    /// Points every wasm filter at the given module (but a benchmark's other module, see
    /// [`Bootstrap::add_module_listener`]).
    pub fn wasm(&mut self, path: &str) -> &mut Self {
        self.wasm_configs(&mut |config| {
            let vm = key(config, "vm_config");
            if vm.get("vm_id").and_then(Value::as_str) != Some(OTHER_VM) {
                *key(vm, "code") = module(path);
            }
        });
        self
    }

    fn set_configuration(&mut self, configuration: &Value) -> &mut Self {
        self.wasm_configs(&mut |config| {
            *key(config, "configuration") = configuration.clone();
        });
        self
    }

    /// Sets the plugin configuration of every wasm filter from a JSON document: an object is
    /// written as YAML, in a `google.protobuf.Struct`; any other text (empty, not JSON, not an
    /// object) as it is, in a `google.protobuf.StringValue`, which the filter then refuses.
    pub fn plugin_config(&mut self, json: &str) -> &mut Self {
        self.set_configuration(&json_configuration(json))
    }

    /// Sets the plugin configuration of every wasm filter as text, in a
    /// `google.protobuf.StringValue` (a JSON string, as bootstraps carried it before the
    /// Struct form; the filter reads both).
    pub fn plugin_config_string(&mut self, text: &str) -> &mut Self {
        self.set_configuration(&string_configuration(text))
    }

    /// Sets the plugin configuration of every wasm filter from a YAML or JSON mapping, in a
    /// `google.protobuf.Struct`. Empty text means `{}`.
    pub fn plugin_config_yaml(&mut self, text: &str) -> Result<&mut Self, String> {
        let value = if text.trim().is_empty() {
            Mapping::new()
        } else if let Ok(json) = serde_json::from_str::<Value>(text) {
            match json {
                Value::Mapping(m) => m,
                _ => {
                    return Err("the plugin configuration must be a mapping (a JSON object)".into());
                }
            }
        } else {
            yaml_mapping(text).map_err(|e| format!("plugin configuration: {e}"))?
        };
        Ok(self.set_configuration(&struct_configuration(value)))
    }

    /// Lists environment variables every wasm VM gets from Envoy's own environment
    /// (`vm_config.environment_variables.host_env_keys`): the pool keys.
    pub fn host_env_keys(&mut self, names: &[&str]) -> &mut Self {
        let names = Value::Sequence(names.iter().map(|&n| Value::from(n)).collect());
        self.wasm_configs(&mut |config| {
            let env = key(key(config, "vm_config"), "environment_variables");
            *key(env, "host_env_keys") = names.clone();
        });
        self
    }

    fn listeners(&mut self) -> &mut Vec<Value> {
        seq(key(key(&mut self.doc, "static_resources"), "listeners"))
    }

    /// The first listener: the gateway's.
    fn gateway(&mut self) -> Result<&mut Value, String> {
        self.listeners()
            .first_mut()
            .ok_or_else(|| "the bootstrap has no listener".to_owned())
    }

    fn listener(&mut self, name: &str) -> Result<&mut Value, String> {
        self.listeners()
            .iter_mut()
            .find(|l| name_of(l) == Some(name))
            .ok_or_else(|| format!("no listener named {name:?}"))
    }

    /// The gateway listener's HTTP connection manager config.
    fn hcm(&mut self) -> Result<&mut Mapping, String> {
        hcm_in(self.gateway()?)
    }

    /// Sets the address of the (first) listener.
    pub fn listen(&mut self, address: &str, port: u16) -> Result<&mut Self, String> {
        *key(self.gateway()?, "address") = socket_address(address, port);
        Ok(self)
    }

    /// Sets the address of the listener named `name`.
    pub fn listener_address(
        &mut self,
        name: &str,
        address: &str,
        port: u16,
    ) -> Result<&mut Self, String> {
        *key(self.listener(name)?, "address") = socket_address(address, port);
        Ok(self)
    }

    /// Adds a listener, given as YAML, after the others.
    pub fn add_listener_yaml(&mut self, text: &str) -> Result<&mut Self, String> {
        let listener = Value::Mapping(yaml_mapping(text)?);
        self.listeners().push(listener);
        Ok(self)
    }

    /// Sets the transport socket (a YAML mapping; TLS termination) of every filter chain of
    /// the gateway listener.
    pub fn downstream_transport_socket(&mut self, text: &str) -> Result<&mut Self, String> {
        let socket = Value::Mapping(yaml_mapping(text)?);
        let chains = key(self.gateway()?, "filter_chains");
        for chain in seq(chains) {
            *key(chain, "transport_socket") = socket.clone();
        }
        Ok(self)
    }

    /// A copy of the first listener, named `name`, on an ephemeral port.
    fn listener_copy(&mut self, name: &str) -> Result<Value, String> {
        let mut copy = self.gateway()?.clone();
        *key(&mut copy, "name") = Value::from(name);
        *key(&mut copy, "address") = socket_address("127.0.0.1", 0);
        Ok(copy)
    }

    /// Adds a copy of the first listener without the wasm filter (and the buffer filter that
    /// only serves it), routing to `cluster` instead of the routing header: the same Envoy then
    /// serves bare and filtered traffic (for benchmarks).
    pub fn add_bare_listener(&mut self, name: &str, cluster: &str) -> Result<&mut Self, String> {
        let mut copy = self.listener_copy(name)?;
        visit(&mut copy, &mut |m| {
            if let Some(Value::Sequence(filters)) = m.get_mut("http_filters") {
                filters.retain(|f| !matches!(type_of(f), Some(WASM_TYPE | BUFFER_TYPE)));
            }
            if m.remove("cluster_header").is_some() {
                m.insert(Value::from("cluster"), Value::from(cluster));
            }
        });
        self.listeners().push(copy);
        Ok(self)
    }

    /// Adds a copy of the first listener whose wasm filter gets another plugin configuration
    /// (JSON, as in [`Bootstrap::plugin_config`]): benchmarks compare configurations in one
    /// Envoy.
    pub fn add_configured_listener(&mut self, name: &str, json: &str) -> Result<&mut Self, String> {
        let mut copy = self.listener_copy(name)?;
        let configuration = json_configuration(json);
        wasm_configs_in(&mut copy, &mut |config| {
            *key(config, "configuration") = configuration.clone();
        });
        self.listeners().push(copy);
        Ok(self)
    }

    /// Adds a copy of the first listener whose wasm filter runs another module, in its own VM,
    /// with the given plugin configuration as text (benchmarks compare the gateway with the
    /// least a wasm filter can do).
    pub fn add_module_listener(
        &mut self,
        name: &str,
        path: &str,
        text: &str,
    ) -> Result<&mut Self, String> {
        let mut copy = self.listener_copy(name)?;
        wasm_configs_in(&mut copy, &mut |config| {
            let vm = key(config, "vm_config");
            *key(vm, "vm_id") = Value::from(OTHER_VM);
            *key(vm, "code") = module(path);
            *key(config, "configuration") = string_configuration(text);
        });
        self.listeners().push(copy);
        Ok(self)
    }

    /// Inserts HTTP filters (a YAML sequence) into the gateway listener's chain, before the
    /// filter named `before` (e.g. `envoy.filters.http.router`).
    pub fn add_http_filters(&mut self, before: &str, text: &str) -> Result<&mut Self, String> {
        let new = yaml_sequence(text)?;
        let filters = seq(key_in(self.hcm()?, "http_filters"));
        let at = filters
            .iter()
            .position(|f| name_of(f) == Some(before))
            .ok_or_else(|| format!("no HTTP filter named {before:?}"))?;
        filters.splice(at..at, new);
        Ok(self)
    }

    /// Sends the gateway listener's standard-output access logs to the file at `path`.
    pub fn access_logs_to_file(&mut self, path: &str) -> Result<&mut Self, String> {
        let logs = seq(key_in(self.hcm()?, "access_log"));
        let mut changed = 0;
        for log in logs
            .iter_mut()
            .filter(|l| type_of(l) == Some(STDOUT_LOG_TYPE))
        {
            *key(log, "name") = Value::from("envoy.access_loggers.file");
            let typed = map(key(log, "typed_config"));
            let old = std::mem::take(typed);
            typed.insert(Value::from("@type"), Value::from(FILE_LOG_TYPE));
            typed.insert(Value::from("path"), Value::from(path));
            for (k, v) in old {
                if k.as_str() != Some("@type") {
                    typed.insert(k, v);
                }
            }
            changed += 1;
        }
        if changed == 0 {
            return Err("the gateway listener logs nothing to standard output".to_owned());
        }
        Ok(self)
    }

    /// Sets keys (a YAML mapping) in the gateway listener's virtual host named `name`.
    pub fn set_in_virtual_host(&mut self, name: &str, text: &str) -> Result<&mut Self, String> {
        let fields = yaml_mapping(text)?;
        let host = self
            .hcm()?
            .get_mut("route_config")
            .and_then(|c| c.get_mut("virtual_hosts"))
            .and_then(Value::as_sequence_mut)
            .into_iter()
            .flatten()
            .find(|h| name_of(h) == Some(name))
            .ok_or_else(|| format!("no virtual host named {name:?}"))?;
        set_all(map(host), fields);
        Ok(self)
    }

    /// Sets the global rate-limit filter's descriptors (a YAML list of `RateLimit`) on the named
    /// routes, as `RateLimitPerRoute` in their `typed_per_filter_config`: the only place (with the
    /// filter's own list) where Envoy honours a descriptor's `hits_addend`.
    pub fn add_rate_limits(&mut self, routes: &[&str], text: &str) -> Result<&mut Self, String> {
        let limits = yaml_sequence(text)?;
        let hcm = self.hcm()?;
        let mut found = Vec::new();
        for route in routes_in(hcm) {
            let Some(name) = name_of(route).filter(|n| routes.contains(n)) else {
                continue;
            };
            found.push(name.to_owned());
            let per_route = key(
                key(route, "typed_per_filter_config"),
                "envoy.filters.http.ratelimit",
            );
            *key(per_route, "@type") = Value::from(RATELIMIT_PER_ROUTE_TYPE);
            seq(key(per_route, "rate_limits")).extend(limits.iter().cloned());
        }
        if let Some(missing) = routes.iter().find(|r| !found.iter().any(|f| f == *r)) {
            return Err(format!("no route named {missing:?}"));
        }
        Ok(self)
    }

    /// Puts a local-reply mapper (YAML) first in the gateway listener's `local_reply_config`.
    pub fn first_local_reply_mapper(&mut self, text: &str) -> Result<&mut Self, String> {
        let mapper = Value::Mapping(yaml_mapping(text)?);
        let mappers = seq(key(key_in(self.hcm()?, "local_reply_config"), "mappers"));
        mappers.insert(0, mapper);
        Ok(self)
    }

    /// Sets keys (a YAML mapping) in the retry policy of every route of the gateway listener
    /// that has one.
    pub fn set_in_retry_policies(&mut self, text: &str) -> Result<&mut Self, String> {
        let fields = yaml_mapping(text)?;
        let mut changed = 0;
        for route in routes_in(self.hcm()?) {
            if let Some(policy) = route
                .get_mut("route")
                .and_then(|r| r.get_mut("retry_policy"))
            {
                set_all(map(policy), fields.clone());
                changed += 1;
            }
        }
        if changed == 0 {
            return Err("no route has a retry policy".to_owned());
        }
        Ok(self)
    }

    /// Sets every `key: from` in the document to `to` (YAML values, or plain strings where the
    /// text does not parse); returns how many changed. Tests use it to shorten timeouts.
    pub fn replace_value(&mut self, key: &str, from: &str, to: &str) -> usize {
        let value = |text: &str| yaml(text).unwrap_or_else(|_| Value::from(text));
        let (from, to) = (value(from), value(to));
        let mut n = 0;
        visit(&mut self.doc, &mut |m| {
            if let Some(v) = m.get_mut(key) {
                if *v == from {
                    *v = to.clone();
                    n += 1;
                }
            }
        });
        n
    }

    /// Moves the wasm HTTP filter's configuration out of the bootstrap into `path`, which Envoy
    /// watches (extension config discovery from the filesystem), so a test can change the
    /// plugin configuration while Envoy runs. Returns the filter's typed config (write it with
    /// [`ecds_resource`]); call [`Bootstrap::wasm`] first, as it only edits the bootstrap.
    pub fn wasm_filter_from_file(&mut self, path: &Path) -> Value {
        // Any xDS subscription, even a file, needs a node identity.
        let node = key(&mut self.doc, "node");
        if node.is_null() {
            *node = mapping([
                ("id", Value::from("claude-gateway")),
                ("cluster", Value::from("claude-gateway")),
            ]);
        }
        let mut taken = Value::Null;
        let source = mapping([
            ("name", Value::from("claude_gateway")),
            (
                "config_discovery",
                mapping([
                    (
                        "config_source",
                        mapping([
                            (
                                "path_config_source",
                                mapping([("path", Value::from(path.display().to_string()))]),
                            ),
                            ("resource_api_version", Value::from("V3")),
                        ]),
                    ),
                    ("type_urls", Value::Sequence(vec![Value::from(WASM_TYPE)])),
                ]),
            ),
        ]);
        visit(&mut self.doc, &mut |m| {
            if let Some(Value::Sequence(filters)) = m.get_mut("http_filters") {
                for f in filters.iter_mut() {
                    if type_of(f) == Some(WASM_TYPE) {
                        taken = f.get("typed_config").cloned().unwrap_or(Value::Null);
                        *f = source.clone();
                    }
                }
            }
        });
        taken
    }

    pub fn admin(&mut self, address: &str, port: u16) -> &mut Self {
        *key(key(&mut self.doc, "admin"), "address") = socket_address(address, port);
        self
    }

    fn clusters(&mut self) -> &mut Vec<Value> {
        seq(key(key(&mut self.doc, "static_resources"), "clusters"))
    }

    fn cluster(&mut self, name: &str) -> Result<&mut Value, String> {
        self.clusters()
            .iter_mut()
            .find(|c| name_of(c) == Some(name))
            .ok_or_else(|| format!("no cluster named {name:?}"))
    }

    /// Points a cluster at another upstream, keeping its other settings.
    pub fn upstream(&mut self, cluster: &str, upstream: &Upstream) -> Result<&mut Self, String> {
        self.endpoints(cluster, std::slice::from_ref(upstream))
    }

    /// Points a cluster at upstreams, the n-th at priority n (all plain or all TLS, one host).
    pub fn endpoints(
        &mut self,
        cluster: &str,
        upstreams: &[Upstream],
    ) -> Result<&mut Self, String> {
        let first = upstreams.first().ok_or("no upstream")?.clone();
        let c = self.cluster(cluster)?;
        // The endpoints' metadata (a failover target's name) stays.
        let metadata = c
            .get("load_assignment")
            .and_then(|a| a.get("endpoints"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("lb_endpoints"))
            .and_then(|e| e.get(0))
            .and_then(|e| e.get("metadata"))
            .cloned();
        let levels = upstreams
            .iter()
            .enumerate()
            .map(|(priority, Upstream { host, port, .. })| {
                let mut endpoint = mapping([(
                    "endpoint",
                    mapping([
                        ("hostname", Value::from(host.as_str())),
                        ("address", socket_address(host, *port)),
                    ]),
                )]);
                if let Some(m) = &metadata {
                    *key(&mut endpoint, "metadata") = m.clone();
                }
                let lb = ("lb_endpoints", Value::Sequence(vec![endpoint]));
                // Priority 0 is the default: written only from the second level on.
                if priority == 0 {
                    mapping([lb])
                } else {
                    mapping([("priority", Value::from(priority)), lb])
                }
            })
            .collect();
        *key(c, "load_assignment") = mapping([
            ("cluster_name", Value::from(cluster)),
            ("endpoints", Value::Sequence(levels)),
        ]);
        let Upstream { tls, host, .. } = first;
        if tls {
            let tls_config = key(key(c, "transport_socket"), "typed_config");
            *key(tls_config, "sni") = Value::from(host.as_str());
            let validation = key(key(tls_config, "common_tls_context"), "validation_context");
            *key(validation, "match_typed_subject_alt_names") = Value::Sequence(vec![mapping([
                ("san_type", Value::from("DNS")),
                ("matcher", mapping([("exact", Value::from(host.as_str()))])),
            ])]);
        } else if map(c).remove("transport_socket").is_some() {
            // A TLS upstream replaced by a plain local one: HTTP/1.1, which every test server
            // and mock speaks. (A cluster that was plain already keeps its protocol: gRPC.)
            let options = key(c, "typed_extension_protocol_options");
            let http = key(options, HTTP_OPTIONS);
            // A cluster that had no protocol options gets them whole (an Any needs its type).
            if http.get("@type").is_none() {
                *key(http, "@type") = Value::from(format!("type.googleapis.com/{HTTP_OPTIONS}"));
            }
            // `auto_config` needs TLS (ALPN); a plain upstream gets HTTP/1.1 explicitly.
            map(http).remove("auto_config");
            *key(http, "explicit_http_config") =
                mapping([("http_protocol_options", Value::Mapping(Mapping::new()))]);
        }
        Ok(self)
    }

    /// Adds a plain HTTP/1.1 cluster with one endpoint.
    pub fn add_cluster(&mut self, name: &str, host: &str, port: u16) -> &mut Self {
        let endpoint = mapping([(
            "endpoint",
            mapping([("address", socket_address(host, port))]),
        )]);
        let cluster = mapping([
            ("name", Value::from(name)),
            ("type", Value::from("STATIC")),
            ("connect_timeout", Value::from("2s")),
            (
                "load_assignment",
                mapping([
                    ("cluster_name", Value::from(name)),
                    (
                        "endpoints",
                        Value::Sequence(vec![mapping([(
                            "lb_endpoints",
                            Value::Sequence(vec![endpoint]),
                        )])]),
                    ),
                ]),
            ),
        ]);
        self.clusters().push(cluster);
        self
    }

    /// Adds a cluster, given as YAML, after the others.
    pub fn add_cluster_yaml(&mut self, text: &str) -> Result<&mut Self, String> {
        let cluster = Value::Mapping(yaml_mapping(text)?);
        self.clusters().push(cluster);
        Ok(self)
    }

    /// Adds a copy of the cluster `from` named `name` (its load assignment renamed too); point
    /// it elsewhere with [`Bootstrap::upstream`].
    pub fn copy_cluster(&mut self, from: &str, name: &str) -> Result<&mut Self, String> {
        let mut copy = self.cluster(from)?.clone();
        *key(&mut copy, "name") = Value::from(name);
        if let Some(assignment) = copy.get_mut("load_assignment") {
            *key(assignment, "cluster_name") = Value::from(name);
        }
        self.clusters().push(copy);
        Ok(self)
    }

    /// Sets top-level keys (a YAML mapping) of the bootstrap (`node`, say).
    pub fn set_in_document(&mut self, text: &str) -> Result<&mut Self, String> {
        let fields = yaml_mapping(text)?;
        set_all(map(&mut self.doc), fields);
        Ok(self)
    }

    /// Sets keys (a YAML mapping) in the cluster named `name`.
    pub fn set_in_cluster(&mut self, name: &str, text: &str) -> Result<&mut Self, String> {
        let fields = yaml_mapping(text)?;
        set_all(map(self.cluster(name)?), fields);
        Ok(self)
    }

    /// Runs the gateway filter again as an upstream HTTP filter of `cluster`, once per attempt
    /// (a retry after a 429 can then go out with another pool key): the downstream filter's
    /// `vm_config` and plugin configuration (same `vm_id`, so the two share data), root id
    /// `<name>_upstream`, then the upstream codec.
    pub fn add_upstream_filter(&mut self, cluster: &str) -> Result<&mut Self, String> {
        self.upstream_filters(cluster, Some(false), "[]")
    }

    /// Sets the upstream HTTP filters of `cluster`: the gateway's upstream instance first
    /// (`Some(hold)`: holding each attempt's headers for its body, as failover targets need;
    /// `None`: no gateway instance), then `extra` (a YAML list of filters), then the codec.
    pub fn upstream_filters(
        &mut self,
        cluster: &str,
        gateway: Option<bool>,
        extra: &str,
    ) -> Result<&mut Self, String> {
        let mut filters = match gateway {
            Some(hold) => vec![self.gateway_upstream_filter(hold)?],
            None => Vec::new(),
        };
        match serde_yaml_ng::from_str::<Value>(extra).map_err(|e| e.to_string())? {
            Value::Sequence(s) => filters.extend(s),
            _ => return Err("the upstream filters must be a YAML list".into()),
        }
        filters.push(mapping([
            ("name", Value::from("envoy.filters.http.upstream_codec")),
            (
                "typed_config",
                mapping([("@type", Value::from(UPSTREAM_CODEC_TYPE))]),
            ),
        ]));
        let c = self.cluster(cluster)?;
        let options = c
            .get_mut("typed_extension_protocol_options")
            .and_then(|o| o.get_mut(HTTP_OPTIONS))
            .ok_or_else(|| format!("cluster {cluster:?} has no {HTTP_OPTIONS}"))?;
        *key(options, "http_filters") = Value::Sequence(filters);
        Ok(self)
    }

    /// The gateway filter as an upstream filter: the downstream filter's `vm_config` and
    /// plugin configuration (same `vm_id`, so the two share data), root id `<name>_upstream`.
    fn gateway_upstream_filter(&mut self, hold: bool) -> Result<Value, String> {
        let downstream = seq(key_in(self.hcm()?, "http_filters"))
            .iter()
            .find(|f| type_of(f) == Some(WASM_TYPE))
            .and_then(|f| f.get("typed_config"))
            .and_then(|c| c.get("config"))
            .cloned()
            .ok_or("the gateway listener has no wasm filter")?;
        let field = |k: &str| downstream.get(k).cloned().unwrap_or(Value::Null);
        let name = format!(
            "{}_upstream",
            downstream
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("claude_gateway")
        );
        let mut config = mapping([
            ("name", Value::from(name.as_str())),
            ("root_id", Value::from(name.as_str())),
        ]);
        if hold {
            *key(&mut config, "allow_on_headers_stop_iteration") = Value::from(true);
        }
        for k in ["failure_policy", "vm_config", "configuration"] {
            *key(&mut config, k) = field(k);
        }
        Ok(mapping([
            ("name", Value::from("envoy.filters.http.wasm")),
            (
                "typed_config",
                mapping([("@type", Value::from(WASM_TYPE)), ("config", config)]),
            ),
        ]))
    }
}

/// `m[k]`, inserted as null when missing.
fn key_in<'a>(m: &'a mut Mapping, k: &str) -> &'a mut Value {
    m.entry(Value::from(k)).or_insert(Value::Null)
}

/// The content of an extension-config file for a wasm filter taken out with
/// [`Bootstrap::wasm_filter_from_file`], with the given plugin configuration (JSON, as in
/// [`Bootstrap::plugin_config`]).
pub fn ecds_resource(filter: &Value, plugin_config: &str, version: u32) -> Result<String, String> {
    let mut typed = filter.clone();
    *key(key(&mut typed, "config"), "configuration") = json_configuration(plugin_config);
    let mut resource = mapping([
        (
            "@type",
            Value::from("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"),
        ),
        ("name", Value::from("claude_gateway")),
    ]);
    *key(&mut resource, "typed_config") = typed;
    let doc = mapping([
        ("version_info", Value::from(version.to_string())),
        ("resources", Value::Sequence(vec![resource])),
    ]);
    emit::emit(&doc, "", &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../../envoy/envoy.yaml");

    fn configurations(b: &Bootstrap) -> Vec<Value> {
        let mut out = Vec::new();
        let mut doc = b.value().clone();
        wasm_configs_in(&mut doc, &mut |c| {
            out.push(c.get("configuration").cloned().unwrap_or(Value::Null))
        });
        out
    }

    #[test]
    fn the_envoy_flags_set_the_flush_interval() {
        assert_eq!(
            ENVOY_ARGS,
            [
                "--file-flush-interval-msec",
                FILE_FLUSH_INTERVAL_MS.to_string().as_str()
            ]
        );
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            Upstream::parse("https://api.anthropic.com").unwrap(),
            Upstream {
                tls: true,
                host: "api.anthropic.com".into(),
                port: 443
            }
        );
        assert_eq!(
            Upstream::parse("http://127.0.0.1:8080/").unwrap().port,
            8080
        );
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("http://x/v1").is_err());
        assert!(Upstream::parse("http://:80").is_err());
    }

    #[test]
    fn the_shipped_bootstrap_carries_an_empty_struct() {
        let b = Bootstrap::parse(BASE).unwrap();
        assert_eq!(
            configurations(&b),
            vec![yaml("{'@type': type.googleapis.com/google.protobuf.Struct, value: {}}").unwrap()]
        );
    }

    #[test]
    fn a_json_object_becomes_a_struct_in_its_order_and_other_text_a_string() {
        let mut b = Bootstrap::parse(BASE).unwrap();
        b.plugin_config(r#"{"routes":[{"name":"a","cluster":"b"}],"cache":{"enabled":false,"ttl":"1h"},"n":30}"#);
        let got = configurations(&b).remove(0);
        assert_eq!(
            got,
            yaml(
                "{'@type': type.googleapis.com/google.protobuf.Struct, value: \
                 {routes: [{name: a, cluster: b}], cache: {enabled: false, ttl: 1h}, n: 30}}"
            )
            .unwrap()
        );
        let keys: Vec<_> = got["value"].as_mapping().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            vec![Value::from("routes"), "cache".into(), "n".into()]
        );
        for text in ["", "not json", "[1]", "{\"a\":"] {
            b.plugin_config(text);
            assert_eq!(
                configurations(&b),
                vec![mapping([
                    ("@type", Value::from(STRING_TYPE)),
                    ("value", Value::from(text))
                ])]
            );
        }
        b.plugin_config_string("{}");
        assert_eq!(configurations(&b)[0]["value"], Value::from("{}"));
        b.plugin_config_yaml("cache: {enabled: false}").unwrap();
        assert_eq!(
            configurations(&b)[0]["value"]["cache"]["enabled"],
            Value::from(false)
        );
        assert!(b.plugin_config_yaml("- a list").is_err());
    }

    #[test]
    fn the_rendered_yaml_reads_back_and_keeps_local_values() {
        let mut b = Bootstrap::parse(BASE).unwrap();
        b.wasm("/tmp/x.wasm")
            .listen("127.0.0.1", 0)
            .unwrap()
            .admin("127.0.0.1", 0)
            .upstream("anthropic", &Upstream::parse("http://127.0.0.1:9").unwrap())
            .unwrap();
        let text = b.to_yaml().unwrap();
        let back = Bootstrap::parse(&text).unwrap();
        assert_eq!(back.value(), b.value());
        assert!(
            text.contains("code: {local: {filename: /tmp/x.wasm}}"),
            "{text}"
        );
        let cluster = &back.value()["static_resources"]["clusters"][0];
        assert!(cluster.get("transport_socket").is_none());
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
            socket_address("127.0.0.1", 9)
        );
    }

    #[test]
    fn edits_name_what_they_did_not_find() {
        let mut b = Bootstrap::parse(BASE).unwrap();
        assert!(
            b.set_in_cluster("nope", "{a: 1}")
                .unwrap_err()
                .contains("nope")
        );
        assert!(
            b.add_http_filters("nope", "[]")
                .unwrap_err()
                .contains("nope")
        );
        assert!(
            b.add_rate_limits(&["messages", "nope"], "[]")
                .unwrap_err()
                .contains("nope")
        );
        assert!(b.listener_address("nope", "0.0.0.0", 1).is_err());
        let mut empty = Bootstrap::parse("admin: {}").unwrap();
        assert!(empty.listen("127.0.0.1", 0).is_err());
        assert!(empty.add_bare_listener("x", "y").is_err());
    }

    #[test]
    fn the_ecds_resource_holds_the_filter_with_its_configuration() {
        let mut b = Bootstrap::parse(BASE).unwrap();
        let filter = b.wasm_filter_from_file(Path::new("/tmp/ecds.yaml"));
        let text = ecds_resource(&filter, r#"{"cache":{"enabled":false}}"#, 3).unwrap();
        let doc = yaml(&text).unwrap();
        assert_eq!(doc["version_info"], Value::from("3"));
        let config = &doc["resources"][0]["typed_config"]["config"];
        assert_eq!(config["configuration"]["@type"], Value::from(STRUCT_TYPE));
        assert_eq!(
            config["configuration"]["value"]["cache"]["enabled"],
            Value::from(false)
        );
        assert_eq!(config["root_id"], Value::from("claude_gateway"));
    }
}
