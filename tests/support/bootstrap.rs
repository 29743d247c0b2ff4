//! Renders a shipped Envoy bootstrap (`envoy/*.yaml`) with local values: the path of the built
//! .wasm, addresses and ports, the plugin configuration, the upstream. Used by `make run` (through
//! `examples/render_envoy.rs`), by `make validate` and by the end-to-end tests, so what the tests
//! run is the shipped file with only these values changed.

// Shared by the example and the tests; each uses a subset.
#![allow(dead_code)]

use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const BUFFER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";

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

fn map(v: &mut Value) -> &mut Mapping {
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    v.as_mapping_mut().unwrap()
}

fn key<'a>(v: &'a mut Value, k: &str) -> &'a mut Value {
    map(v).entry(Value::from(k)).or_insert(Value::Null)
}

fn yaml(s: &str) -> Value {
    serde_yaml_ng::from_str(s).unwrap()
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

impl Bootstrap {
    pub fn load(path: &Path) -> Result<Bootstrap, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Bootstrap, String> {
        let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        // Expands anchors (`&x` / `*x`) so every copy can be edited on its own.
        doc.apply_merge().map_err(|e| e.to_string())?;
        Ok(Bootstrap { doc })
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.doc).unwrap()
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

    /// Sets the plugin configuration (a JSON document) of every wasm filter.
    pub fn plugin_config(&mut self, json: &str) -> &mut Self {
        self.wasm_configs(&mut |config| set_plugin_config(config, json));
        self
    }

    fn listeners(&mut self) -> &mut Vec<Value> {
        let l = key(key(&mut self.doc, "static_resources"), "listeners");
        if !l.is_sequence() {
            *l = Value::Sequence(Vec::new());
        }
        l.as_sequence_mut().unwrap()
    }

    /// Sets the address of the (first) listener.
    pub fn listen(&mut self, address: &str, port: u16) -> &mut Self {
        let listener = self.listeners().first_mut().expect("no listener");
        *key(listener, "address") = socket_address(address, port);
        self
    }

    /// A copy of the first listener, named `name`, on an ephemeral port.
    fn listener_copy(&mut self, name: &str) -> Value {
        let mut copy = self.listeners().first().expect("no listener").clone();
        *key(&mut copy, "name") = Value::from(name);
        *key(&mut copy, "address") = socket_address("127.0.0.1", 0);
        copy
    }

    /// Adds a copy of the first listener without the wasm filter (and the buffer filter that
    /// only serves it), routing to `cluster` instead of the routing header: the same Envoy then
    /// serves bare and filtered traffic (for benchmarks).
    pub fn add_bare_listener(&mut self, name: &str, cluster: &str) -> &mut Self {
        let mut copy = self.listener_copy(name);
        visit(&mut copy, &mut |m| {
            if let Some(Value::Sequence(filters)) = m.get_mut("http_filters") {
                filters.retain(|f| {
                    let ty = f.get("typed_config").and_then(|c| c.get("@type"));
                    !matches!(ty.and_then(Value::as_str), Some(WASM_TYPE | BUFFER_TYPE))
                });
            }
            if m.remove("cluster_header").is_some() {
                m.insert(Value::from("cluster"), Value::from(cluster));
            }
        });
        self.listeners().push(copy);
        self
    }

    /// Adds a copy of the first listener whose wasm filter gets another plugin configuration
    /// (benchmarks compare configurations in one Envoy).
    pub fn add_configured_listener(&mut self, name: &str, json: &str) -> &mut Self {
        let mut copy = self.listener_copy(name);
        wasm_configs_in(&mut copy, &mut |config| set_plugin_config(config, json));
        self.listeners().push(copy);
        self
    }

    /// Sets every `key: from` in the document to `to` (a YAML value); returns how many changed.
    /// Tests use it to shorten timeouts.
    pub fn replace_value(&mut self, key: &str, from: &str, to: &str) -> usize {
        let (from, to) = (yaml(from), yaml(to));
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
            *node = yaml("{id: claude-gateway, cluster: claude-gateway}");
        }
        let mut taken = Value::Null;
        let source = yaml(&format!(
            "{{name: claude_gateway, config_discovery: {{config_source: {{path_config_source: \
             {{path: {:?}}}, resource_api_version: V3}}, type_urls: [{WASM_TYPE:?}]}}}}",
            path.display().to_string()
        ));
        visit(&mut self.doc, &mut |m| {
            if let Some(Value::Sequence(filters)) = m.get_mut("http_filters") {
                for f in filters.iter_mut() {
                    let ty = f.get("typed_config").and_then(|c| c.get("@type"));
                    if ty.and_then(Value::as_str) == Some(WASM_TYPE) {
                        taken = f.get("typed_config").cloned().unwrap_or(Value::Null);
                        *f = source.clone();
                    }
                }
            }
        });
        taken
    }

    /// Adds a copy of the first listener whose wasm filter runs another module, in its own VM,
    /// with the given plugin configuration (benchmarks compare the gateway with the least a
    /// wasm filter can do).
    pub fn add_module_listener(&mut self, name: &str, path: &str, json: &str) -> &mut Self {
        let mut copy = self.listener_copy(name);
        wasm_configs_in(&mut copy, &mut |config| {
            let vm = key(config, "vm_config");
            *key(vm, "vm_id") = Value::from(OTHER_VM);
            *key(vm, "code") = module(path);
            set_plugin_config(config, json);
        });
        self.listeners().push(copy);
        self
    }

    pub fn admin(&mut self, address: &str, port: u16) -> &mut Self {
        *key(key(&mut self.doc, "admin"), "address") = socket_address(address, port);
        self
    }

    fn clusters(&mut self) -> &mut Vec<Value> {
        let c = key(key(&mut self.doc, "static_resources"), "clusters");
        if !c.is_sequence() {
            *c = Value::Sequence(Vec::new());
        }
        c.as_sequence_mut().unwrap()
    }

    fn cluster(&mut self, name: &str) -> Result<&mut Value, String> {
        self.clusters()
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
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
        let levels: Vec<String> = upstreams
            .iter()
            .enumerate()
            .map(|(priority, Upstream { host, port, .. })| {
                format!(
                    "{{priority: {priority}, lb_endpoints: [{{endpoint: {{hostname: {host:?}, \
                     address: {{socket_address: {{address: {host:?}, port_value: {port}}}}}}}}}]}}"
                )
            })
            .collect();
        *key(c, "load_assignment") = yaml(&format!(
            "{{cluster_name: {cluster}, endpoints: [{}]}}",
            levels.join(", ")
        ));
        let Upstream { tls, host, .. } = first;
        if tls {
            let tls_config = key(key(c, "transport_socket"), "typed_config");
            *key(tls_config, "sni") = Value::from(host.as_str());
            let validation = key(key(tls_config, "common_tls_context"), "validation_context");
            *key(validation, "match_typed_subject_alt_names") = yaml(&format!(
                "[{{san_type: DNS, matcher: {{exact: {host:?}}}}}]"
            ));
        } else if map(c).remove("transport_socket").is_some() {
            // A TLS upstream replaced by a plain local one: HTTP/1.1, which every test server
            // and mock speaks. (A cluster that was plain already keeps its protocol: gRPC.)
            let options = key(c, "typed_extension_protocol_options");
            let http = key(
                options,
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            );
            *key(http, "explicit_http_config") = yaml("{http_protocol_options: {}}");
        }
        Ok(self)
    }

    /// Adds a plain HTTP/1.1 cluster with one endpoint.
    pub fn add_cluster(&mut self, name: &str, host: &str, port: u16) -> &mut Self {
        let cluster = yaml(&format!(
            "{{name: {name}, type: STATIC, connect_timeout: 2s, load_assignment: {{cluster_name: {name}, \
             endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: \
             {{address: {host}, port_value: {port}}}}}}}}}]}}]}}}}"
        ));
        self.clusters().push(cluster);
        self
    }
}

/// The `vm_id` of a module other than the gateway's.
const OTHER_VM: &str = "other_module";

fn module(path: &str) -> Value {
    yaml(&format!("{{local: {{filename: {path:?}}}}}"))
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

fn set_plugin_config(config: &mut Value, json: &str) {
    *key(key(config, "configuration"), "value") = Value::from(json);
}

fn socket_address(address: &str, port: u16) -> Value {
    yaml(&format!(
        "{{socket_address: {{address: {address:?}, port_value: {port}}}}}"
    ))
}

/// The content of an extension-config file for a wasm filter taken out with
/// [`Bootstrap::wasm_filter_from_file`], with the given plugin configuration.
pub fn ecds_resource(filter: &Value, plugin_config: &str, version: u32) -> String {
    let mut typed = filter.clone();
    let c = key(key(key(&mut typed, "config"), "configuration"), "value");
    *c = Value::from(plugin_config);
    let mut doc = yaml(&format!(
        "{{version_info: \"{version}\", resources: [{{\"@type\": \
         type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig, name: claude_gateway}}]}}"
    ));
    if let Some(Value::Sequence(r)) = doc.get_mut("resources") {
        if let Some(first) = r.first_mut() {
            *key(first, "typed_config") = typed;
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}
