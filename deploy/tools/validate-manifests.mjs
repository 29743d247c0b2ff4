// Validates every manifest under deploy/ (istio/, envoy-gateway/, kubernetes/) against the published schemas
// of its kind: Istio's CRDs (@kubernetes-models/istio), Envoy Gateway's and the Gateway API's,
// and the Kubernetes core API (kubernetes-models). Then:
//   - the stats tags in the Istio bootstrap override must equal envoy/envoy.yaml's;
//   - the variant files (clouds.yaml, patch-policy.yaml) are applied after the others, and an
//     object there with the name of another file's replaces it: it must be that object plus
//     additions only;
//   - references hold in each set of objects applied together ("world"): VirtualService
//     destinations have a ServiceEntry (and TLS origination), EnvoyFilter patches name existing
//     routes, clusters and hosts, every cluster the plugin configuration names is matched on
//     the routing header, held requests get the 32 MiB buffer limit, and a filter that holds
//     headers under Envoy Gateway is patched by an EnvoyPatchPolicy that finds it;
//   - deploy/kubernetes/ (Envoy replicas, the rate-limit service, Redis) is a set of its own:
//     Services select pods and name their ports, the Envoy bootstrap is in a mounted ConfigMap,
//     its module is plugin.wasm of a mounted image volume, its listener a container port, its
//     DNS clusters name Services (headless for STRICT_DNS), and the rate-limit service reads
//     exactly the filter's plugin configuration and a Redis that is a Service; that bootstrap
//     is written to target/manifests/ as it is;
//   - every Envoy the manifests start writes its access log (the audit records) at least every
//     second: --file-flush-interval-msec on the Kubernetes container and in Envoy Gateway's
//     EnvoyProxy extraArgs, fileFlushInterval in the Istio gateway's proxy.istio.io/config
//     (Envoy has no bootstrap field for it; its default is 10 s); under Envoy Gateway, the
//     EnvoyProxy also prints the audit record;
//   - every wasm filter configuration in the manifests is written into a copy of
//     envoy/envoy.yaml under target/manifests/, which `make manifests` then runs through
//     `envoy --mode validate` (Envoy's own proto check, and the filter's check of its plugin
//     configuration). For an EnvoyFilter the copy also carries what Istio would build from
//     its patches (the vendors' clusters with their upstream filters, gcp_authn, the
//     VirtualService's cloud routes); for Envoy Gateway, the EnvoyPatchPolicy is applied to a
//     copy of the listener Envoy Gateway generates;
//   - broken copies of the manifests, written to a temporary directory, must be rejected, so a
//     validator that accepts anything is caught.
// usage: node deploy/tools/validate-manifests.mjs   (from the repository root; `make manifests`)

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import YAML from "yaml";

import { Namespace } from "kubernetes-models/v1/Namespace";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { EnvoyFilter } from "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter";
import { ServiceEntry } from "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry";
import { Gateway as IstioGateway } from "@kubernetes-models/istio/networking.istio.io/v1/Gateway";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { VirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { Telemetry } from "@kubernetes-models/istio/telemetry.istio.io/v1/Telemetry";
import { IstioOperator } from "@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator";
import { EnvoyExtensionPolicy } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy";
import { EnvoyPatchPolicy } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/EnvoyPatchPolicy";
import { BackendTrafficPolicy } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/BackendTrafficPolicy";
import { HTTPRouteFilter } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/HTTPRouteFilter";
import { Backend } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/Backend";
import { EnvoyProxy } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/EnvoyProxy";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";

const MODELS = [
  Namespace, Service, ServiceAccount, ConfigMap, Deployment, StatefulSet, PodDisruptionBudget,
  EnvoyFilter, ServiceEntry, IstioGateway, DestinationRule, VirtualService, WasmPlugin,
  Telemetry, IstioOperator, EnvoyExtensionPolicy, EnvoyPatchPolicy, BackendTrafficPolicy,
  HTTPRouteFilter, Backend, HTTPRoute, EnvoyProxy,
];
const DIRS = ["deploy/istio", "deploy/envoy-gateway", "deploy/kubernetes"];
// Plain Kubernetes (Envoy Deployments of their own): a set of objects applied on its own.
const KUBERNETES_DIR = "deploy/kubernetes";
const inKubernetes = (e) => e.file.startsWith(KUBERNETES_DIR + "/");
// Applied after the other files of their directory; their objects replace same-named ones.
const VARIANT_FILES = ["deploy/istio/clouds.yaml", "deploy/envoy-gateway/patch-policy.yaml"];
const WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const ROUTER = "envoy.filters.http.router";
const ROUTING_HEADER = "x-claude-gateway-cluster";
const BUFFER_LIMIT = 33554432;
const SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt";
const SECRETS_DIR = "/etc/envoy/secrets";
const OUT = "target/manifests";

function modelFor(doc) {
  return MODELS.find((m) => m.apiVersion === doc.apiVersion && m.kind === doc.kind);
}

function yamlFiles(dir) {
  return fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort().map((f) => path.join(dir, f));
}

// Parses a file into its documents; YAML errors are failures too.
function documents(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  return docs.map((d, i) => {
    if (d.errors.length) throw new Error(`${file} document ${i + 1}: ${d.errors[0].message}`);
    return d.toJS();
  }).filter((d) => d !== null);
}

const ns = (d) => d.metadata?.namespace ?? "default";
const keyOf = (d) => `${d.kind}/${ns(d)}/${d.metadata?.name}`;
const arr = (v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

// What the CRD schemas cannot say about an EnvoyPatchPolicy operation (Envoy Gateway checks it
// when it translates: internal/ir JSONPatchOperation.Validate).
function patchOperationProblems(doc) {
  const out = [];
  arr(doc.spec?.jsonPatches).forEach((p, i) => {
    const op = p.operation ?? {};
    const at = `jsonPatches[${i}].operation`;
    if (!op.path && !op.jsonPath && !(op.op === "add" && "value" in op)) out.push(`${at}: needs path or jsonPath`);
    if (["add", "replace", "test"].includes(op.op) && !("value" in op)) out.push(`${at}: ${op.op} needs a value`);
    if (["move", "copy"].includes(op.op) && !op.from) out.push(`${at}: ${op.op} needs from`);
    if (op.jsonPath) {
      try {
        parseJsonPath(op.jsonPath);
      } catch (e) {
        out.push(`${at}.jsonPath: ${e.message}`);
      }
    }
  });
  return out;
}

// Returns the problems of one file (empty: valid).
function problems(file) {
  let docs;
  try {
    docs = documents(file);
  } catch (e) {
    return [e.message];
  }
  const out = [];
  docs.forEach((doc, i) => {
    const where = `${file} #${i + 1} ${doc.kind}/${doc.metadata?.name}`;
    const Model = modelFor(doc);
    if (!Model) {
      out.push(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      return;
    }
    if (!doc.metadata?.name) out.push(`${where}: metadata.name is missing`);
    try {
      new Model(doc).validate();
    } catch (e) {
      out.push(`${where}: ${e.message}`);
    }
    if (doc.kind === "EnvoyPatchPolicy") out.push(...patchOperationProblems(doc).map((p) => `${where}: ${p}`));
  });
  return out;
}

// The bootstrap override's stats tags must be the shipped bootstrap's, or labels differ
// between plain Envoy and Istio.
function checkStatsTags(all) {
  const envoy = YAML.parse(fs.readFileSync("envoy/envoy.yaml", "utf8"));
  const want = JSON.stringify(envoy.stats_config.stats_tags);
  const maps = all.filter((d) => d.kind === "ConfigMap" && d.data?.["custom_bootstrap.json"]);
  if (maps.length === 0) return ["no ConfigMap with custom_bootstrap.json"];
  return maps.flatMap((m) => {
    const got = JSON.stringify(JSON.parse(m.data["custom_bootstrap.json"]).stats_config.stats_tags);
    return got === want ? [] : [`ConfigMap/${m.metadata.name}: stats_tags differ from envoy/envoy.yaml`];
  });
}

// ---- Variants: an object replacing another must be it plus additions only. ----

// True when `small`'s items appear in `big` in the same order.
function isSubsequence(small, big) {
  let j = 0;
  for (const item of big) if (j < small.length && isDeepStrictEqual(small[j], item)) j++;
  return j === small.length;
}

const withoutPluginConfig = (patch) => {
  const p = structuredClone(patch);
  if (p.patch?.value?.typed_config?.config) delete p.patch.value.typed_config.config.configuration;
  return p;
};

// Why `variant` is not `original` plus additions, or null.
function extensionProblem(original, variant) {
  const spec = (d, drop) => {
    const s = structuredClone(d.spec ?? {});
    delete s[drop];
    return s;
  };
  switch (original.kind) {
    case "ServiceAccount": {
      const strip = (d) => ({ ...d, metadata: { ...d.metadata, annotations: undefined, labels: undefined } });
      if (!isDeepStrictEqual(strip(original), strip(variant))) return "differs beyond annotations and labels";
      for (const field of ["annotations", "labels"]) {
        for (const [k, v] of Object.entries(original.metadata[field] ?? {})) {
          if (variant.metadata[field]?.[k] !== v) return `drops or changes ${field} ${k}`;
        }
      }
      return null;
    }
    case "VirtualService":
      if (!isDeepStrictEqual(spec(original, "http"), spec(variant, "http"))) return "differs beyond its http routes";
      return isSubsequence(arr(original.spec.http), arr(variant.spec.http)) ? null : "drops or changes an http route";
    case "HTTPRoute":
      if (!isDeepStrictEqual(spec(original, "rules"), spec(variant, "rules"))) return "differs beyond its rules";
      return isSubsequence(arr(original.spec.rules), arr(variant.spec.rules)) ? null : "drops or changes a rule";
    case "EnvoyFilter":
      if (!isDeepStrictEqual(spec(original, "configPatches"), spec(variant, "configPatches"))) {
        return "differs beyond its patches";
      }
      return isSubsequence(arr(original.spec.configPatches).map(withoutPluginConfig),
        arr(variant.spec.configPatches).map(withoutPluginConfig)) ? null
        : "drops or changes a patch (other than the plugin configuration)";
    case "EnvoyExtensionPolicy": {
      const strip = (d) => ({ ...spec(d, "wasm"), wasm: arr(d.spec.wasm).map((w) => ({ ...w, config: undefined })) });
      return isDeepStrictEqual(strip(original), strip(variant)) ? null : "differs beyond the plugin configuration";
    }
    default:
      return isDeepStrictEqual(original, variant) ? null : "differs (only some kinds may be extended)";
  }
}

// The sets of objects applied together: the base files, and the base with each variant file.
function worlds(entries) {
  const failures = [];
  const base = new Map();
  for (const { file, doc } of entries.filter((e) => !VARIANT_FILES.includes(e.file) && !inKubernetes(e))) {
    const k = keyOf(doc);
    if (base.has(k)) failures.push(`${k} is defined in ${base.get(k).file} and ${file}`);
    else base.set(k, { file, doc });
  }
  const out = [{ name: "base", entries: [...base.values()] }];
  for (const variant of VARIANT_FILES) {
    const world = new Map(base);
    for (const { file, doc } of entries.filter((e) => e.file === variant)) {
      const k = keyOf(doc);
      const original = base.get(k);
      if (original) {
        const why = extensionProblem(original.doc, doc);
        if (why) failures.push(`${variant}: ${k} replaces the one in ${original.file} but ${why}`);
      }
      world.set(k, { file, doc });
    }
    out.push({ name: path.basename(variant), entries: [...world.values()], variant });
  }
  return { worlds: out, failures };
}

// ---- Istio: what the patches and routes refer to. ----

const hostMatches = (pattern, host) => pattern === host || (pattern.startsWith("*.") && host.endsWith(pattern.slice(1)));

function serviceEntryPort(docs, host, port) {
  for (const se of docs.filter((d) => d.kind === "ServiceEntry")) {
    if (!arr(se.spec.hosts).some((h) => hostMatches(h, host))) continue;
    const p = arr(se.spec.ports).find((x) => x.number === port);
    if (p) return { se, port: p };
  }
  return null;
}

function isKubernetesService(docs, host) {
  const m = /^([^.]+)\.([^.]+)\.svc\.cluster\.local$/.exec(host);
  return !!m && docs.some((d) => d.kind === "Service" && d.metadata.name === m[1] && ns(d) === m[2]);
}

function destinationRuleTls(docs, host, port) {
  for (const dr of docs.filter((d) => d.kind === "DestinationRule" && hostMatches(d.spec.host, host))) {
    const level = arr(dr.spec.trafficPolicy?.portLevelSettings).find((s) => s.port?.number === port);
    const tls = level?.tls ?? dr.spec.trafficPolicy?.tls;
    if (tls) return { dr, tls };
  }
  return null;
}

// The gateway routes (VirtualService http routes bound to a non-mesh gateway), by vhost name.
function gatewayRoutes(docs) {
  const out = [];
  for (const vs of docs.filter((d) => d.kind === "VirtualService")) {
    for (const r of arr(vs.spec.http)) {
      const matches = arr(r.match);
      const gateways = matches.flatMap((m) => arr(m.gateways));
      const atGateway = gateways.length ? gateways.some((g) => g !== "mesh")
        : arr(vs.spec.gateways).some((g) => g !== "mesh");
      if (!atGateway) continue;
      const port = matches.find((m) => m.port)?.port ?? 80;
      for (const h of arr(vs.spec.hosts)) out.push({ vs, route: r, vhost: `${h}:${port}` });
    }
  }
  return out;
}

const wasmPatch = (ef) => arr(ef.spec.configPatches).find((p) => p.applyTo === "EXTENSION_CONFIG"
  && p.patch?.value?.typed_config?.["@type"] === WASM_TYPE);

function pluginConfigOf(config) {
  const c = config?.configuration;
  if (!c) return {};
  if (c["@type"]?.endsWith("StringValue")) return c.value ? JSON.parse(c.value) : {};
  return c.value ?? {};
}

// Every cluster the plugin configuration can set as the routing-header value.
function configClusters(plugin) {
  const routes = arr(plugin.routes);
  return new Set([...routes.map((r) => r.cluster), plugin.default_route?.cluster ?? "anthropic"].filter(Boolean));
}

function outboundRefs(value, found = []) {
  if (typeof value === "string") {
    const m = /^outbound\|(\d+)\|\|(.+)$/.exec(value);
    if (m) found.push({ port: Number(m[1]), host: m[2] });
  } else if (value && typeof value === "object") {
    for (const v of Object.values(value)) outboundRefs(v, found);
  }
  return found;
}

function istioProblems(docs) {
  const out = [];
  const routes = gatewayRoutes(docs);
  const vsRoutes = docs.filter((d) => d.kind === "VirtualService").flatMap((vs) => arr(vs.spec.http).map((route) => ({ vs, route })));
  for (const { vs, route } of vsRoutes) {
    for (const { destination } of arr(route.route)) {
      const host = destination.host;
      const port = destination.port?.number;
      const where = `VirtualService/${vs.metadata.name} route ${route.name}`;
      if (isKubernetesService(docs, host)) continue;
      const entry = serviceEntryPort(docs, host, port);
      if (!entry) {
        out.push(`${where}: no ServiceEntry for ${host}:${port}`);
        continue;
      }
      if (entry.port.protocol === "HTTPS" && entry.se.spec.location === "MESH_EXTERNAL") {
        const tls = destinationRuleTls(docs, host, port)?.tls;
        if (tls?.mode !== "SIMPLE" || tls.sni !== host || !arr(tls.subjectAltNames).includes(host)) {
          out.push(`${where}: ${host}:${port} needs a DestinationRule originating TLS (SIMPLE, sni and subjectAltNames ${host})`);
        }
      }
    }
  }
  for (const ef of docs.filter((d) => d.kind === "EnvoyFilter")) {
    const where = `EnvoyFilter/${ef.metadata.name}`;
    const patches = arr(ef.spec.configPatches);
    for (const p of patches) {
      if (p.applyTo === "CLUSTER" && p.match?.cluster?.service) {
        const { service, portNumber } = p.match.cluster;
        if (!serviceEntryPort(docs, service, portNumber)) out.push(`${where}: CLUSTER patch for ${service}:${portNumber}, which no ServiceEntry has`);
      }
      if (p.applyTo === "HTTP_ROUTE") {
        const { name: vhost, route } = p.match?.routeConfiguration?.vhost ?? {};
        if (!routes.some((r) => r.vhost === vhost && r.route.name === route?.name)) {
          out.push(`${where}: HTTP_ROUTE patch for route ${route?.name} of ${vhost}, which no VirtualService has`);
        }
      }
      for (const ref of outboundRefs(p.patch?.value)) {
        if (!serviceEntryPort(docs, ref.host, ref.port)) out.push(`${where}: outbound|${ref.port}||${ref.host} has no ServiceEntry`);
      }
    }
    const wasm = wasmPatch(ef)?.patch.value.typed_config.config;
    if (!wasm) continue;
    // The routing header decides: a cluster no route matches would go to the catch-all.
    const matched = new Set(routes.flatMap(({ route }) => arr(route.match)
      .map((m) => m.headers?.[ROUTING_HEADER]?.exact).filter(Boolean)));
    for (const c of configClusters(pluginConfigOf(wasm))) {
      if (!matched.has(c)) out.push(`${where}: the plugin configuration routes to cluster ${c}, which no VirtualService route matches on ${ROUTING_HEADER}`);
    }
    // A held request is buffered on the route it starts on: any gateway route.
    if (wasm.allow_on_headers_stop_iteration) {
      const limited = new Set(patches.filter((p) => p.applyTo === "HTTP_ROUTE"
        && p.patch?.value?.request_body_buffer_limit >= BUFFER_LIMIT)
        .map((p) => p.match.routeConfiguration.vhost.route.name));
      for (const { route } of routes) {
        if (!limited.has(route.name)) out.push(`${where}: gateway route ${route.name} has no request_body_buffer_limit patch (held bodies over 1 MiB would get 413)`);
      }
    }
  }
  for (const wp of docs.filter((d) => d.kind === "WasmPlugin")) {
    if (wp.spec.pluginConfig?.hold_headers !== false) out.push(`WasmPlugin/${wp.metadata.name}: hold_headers must be false (no allow_on_headers_stop_iteration)`);
  }
  return out;
}

// ---- Envoy Gateway: the names of the generated xDS, and the patch policy. ----

// internal/gatewayapi: irConfigNameForWasm + internal/xds/translator: wasmFilterName.
const egWasmFilterName = (eep, index) => `envoy.filters.http.wasm/envoyextensionpolicy/${ns(eep)}/${eep.metadata.name}/wasm/${index}`;

// A JSONPath subset (what the patches here use, as ojg reads it): $, .key, ..key, ['key'],
// [n], [*], [?(@.key=='value')].
function parseJsonPath(text) {
  const steps = [];
  let i = text.startsWith("$") ? 1 : 0;
  while (i < text.length) {
    let m;
    const rest = text.slice(i);
    if ((m = /^\.\.([A-Za-z0-9_@-]+)/.exec(rest))) steps.push({ deep: true, key: m[1] });
    else if ((m = /^\.([A-Za-z0-9_@-]+)/.exec(rest))) steps.push({ key: m[1] });
    else if (i === 0 && (m = /^([A-Za-z0-9_@-]+)/.exec(rest))) steps.push({ key: m[1] });
    else if ((m = /^\[(\d+)\]/.exec(rest))) steps.push({ index: Number(m[1]) });
    else if ((m = /^\[\*\]/.exec(rest))) steps.push({ all: true });
    else if ((m = /^\['([^']*)'\]/.exec(rest))) steps.push({ key: m[1] });
    else if ((m = /^\[\?\(@\.([A-Za-z0-9_]+)\s*==\s*(?:'([^']*)'|"([^"]*)")\)\]/.exec(rest))) {
      steps.push({ filter: m[1], equals: m[2] ?? m[3] });
    } else throw new Error(`unsupported JSONPath at "${rest}"`);
    i += m[0].length;
  }
  if (steps.length === 0) throw new Error("an empty JSONPath selects the root only");
  return steps;
}

// The locations (arrays of keys) the JSONPath selects in `doc`.
function locate(doc, text) {
  let found = [[]];
  const at = (p) => p.reduce((v, k) => v?.[k], doc);
  const descendants = (p, key, out) => {
    const v = at(p);
    if (v && typeof v === "object") {
      if (!Array.isArray(v) && key in v) out.push([...p, key]);
      for (const k of Object.keys(v)) descendants([...p, Array.isArray(v) ? Number(k) : k], key, out);
    }
    return out;
  };
  for (const s of parseJsonPath(text)) {
    const next = [];
    for (const p of found) {
      const v = at(p);
      if (s.deep) next.push(...descendants(p, s.key, []));
      else if (s.key !== undefined && v && typeof v === "object" && s.key in v) next.push([...p, s.key]);
      else if (s.index !== undefined && Array.isArray(v) && s.index < v.length) next.push([...p, s.index]);
      else if ((s.all || s.filter) && Array.isArray(v)) {
        v.forEach((item, i) => {
          if (s.all || item?.[s.filter] === s.equals) next.push([...p, i]);
        });
      }
    }
    found = next;
  }
  return found;
}

const pointerTokens = (pointer) => pointer.split("/").slice(1).map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));

// RFC 6902 on a JSON document, with Envoy Gateway's options (a JSONPath first turned into
// pointers, `path` appended; add creates missing parents). Returns the number of locations.
function applyJsonPatch(doc, operation) {
  const pointers = operation.jsonPath
    ? locate(doc, operation.jsonPath).map((p) => "/" + p.map((k) => String(k).replace(/~/g, "~0").replace(/\//g, "~1")).join("/")
      + (operation.path ? "/" + operation.path.replace(/^\//, "") : ""))
    : [operation.path];
  for (const pointer of pointers) {
    const tokens = pointerTokens(pointer);
    const last = tokens.pop();
    let parent = doc;
    for (const t of tokens) {
      if (parent[t] === undefined && operation.op === "add") parent[t] = {};
      parent = parent[t];
      if (parent === undefined) throw new Error(`no ${pointer}`);
    }
    if (operation.op === "add" || operation.op === "replace") {
      if (Array.isArray(parent) && last === "-") parent.push(structuredClone(operation.value));
      else parent[last] = structuredClone(operation.value);
    } else if (operation.op === "remove") delete parent[last];
    else if (operation.op === "test" && !isDeepStrictEqual(parent[last], operation.value)) throw new Error(`test failed at ${pointer}`);
  }
  return pointers.length;
}

// The EnvoyExtensionPolicy wasm entries, with their generated filter names and HTTPRoutes.
function egWasmFilters(docs) {
  return docs.filter((d) => d.kind === "EnvoyExtensionPolicy").flatMap((eep) => arr(eep.spec.wasm).map((w, i) => ({
    eep, wasm: w, index: i, name: egWasmFilterName(eep, i),
    routes: arr(eep.spec.targetRefs).filter((t) => t.kind === "HTTPRoute")
      .map((t) => docs.find((d) => d.kind === "HTTPRoute" && d.metadata.name === t.name && ns(d) === ns(eep))).filter(Boolean),
  })));
}

// The listener Envoy Gateway generates for an HTTP Gateway listener (proto field names, as
// the patch sees it), with the wasm filters of the policies and `config` for each.
function egListener(name, filters, configFor) {
  return {
    name,
    default_filter_chain: {
      filters: [{
        name: "envoy.filters.network.http_connection_manager",
        typed_config: {
          "@type": HCM_TYPE,
          http_filters: [
            ...filters.map((f) => ({ name: f.name, disabled: true, typed_config: { "@type": WASM_TYPE, config: configFor(f) } })),
            { name: ROUTER, typed_config: { "@type": ROUTER_TYPE } },
          ],
        },
      }],
    },
  };
}

// Applies the EnvoyPatchPolicies to the generated listeners; returns, per wasm filter name, its
// config after the patches, and the problems.
function patchedEgConfigs(docs, configFor) {
  const out = [];
  const patched = new Map();
  const filters = egWasmFilters(docs);
  for (const epp of docs.filter((d) => d.kind === "EnvoyPatchPolicy")) {
    const where = `EnvoyPatchPolicy/${epp.metadata.name}`;
    const target = epp.spec.targetRef;
    if (target.kind !== "Gateway") continue;
    const mine = filters.filter((f) => f.routes.some((r) => arr(r.spec.parentRefs).some((p) => p.name === target.name)));
    for (const [i, p] of arr(epp.spec.jsonPatches).entries()) {
      if (!p.type.endsWith("listener.v3.Listener")) continue;
      const m = /^([^/]+)\/([^/]+)\/([^/]+)$/.exec(p.name);
      if (!(m && m[1] === ns(epp) && m[2] === target.name) && !/^tcp-\d+$/.test(p.name)) {
        out.push(`${where}: jsonPatches[${i}] listener ${p.name} is not <namespace>/${target.name}/<listener> (or tcp-<port>)`);
        continue;
      }
      const listener = egListener(p.name, mine, (f) => patched.get(f.name) ?? configFor(f));
      try {
        const n = applyJsonPatch(listener, p.operation);
        if (n === 0) throw new Error(`selects nothing in the listener Envoy Gateway generates for ${mine.map((f) => f.name).join(", ") || "no wasm filter"}`);
      } catch (e) {
        out.push(`${where}: jsonPatches[${i}]: ${e.message}`);
        continue;
      }
      for (const f of listener.default_filter_chain.filters[0].typed_config.http_filters) {
        if (f.typed_config["@type"] === WASM_TYPE) patched.set(f.name, f.typed_config.config);
      }
    }
  }
  return { patched, problems: out };
}

function egProblems(docs, patched) {
  const out = [];
  for (const f of egWasmFilters(docs)) {
    const where = `EnvoyExtensionPolicy/${f.eep.metadata.name} wasm[${f.index}]`;
    const plugin = f.wasm.config ?? {};
    if (plugin.hold_headers !== false) {
      if (!patched.get(f.name)?.allow_on_headers_stop_iteration) {
        out.push(`${where}: holds the headers, but no EnvoyPatchPolicy sets allow_on_headers_stop_iteration on ${f.name} (requests would hang)`);
      }
      const buffered = f.routes.every((r) => docs.some((d) => d.kind === "BackendTrafficPolicy" && ns(d) === ns(r)
        && arr(d.spec.targetRefs).some((t) => t.kind === "HTTPRoute" && t.name === r.metadata.name) && d.spec.requestBuffer));
      if (!buffered) out.push(`${where}: holds the headers, but its HTTPRoute has no BackendTrafficPolicy requestBuffer (bodies over 32 KiB would get 413)`);
    }
    const rules = f.routes.flatMap((r) => arr(r.spec.rules));
    const matched = new Set(rules.flatMap((rule) => arr(rule.matches).flatMap((m) => arr(m.headers))
      .filter((h) => h.name === ROUTING_HEADER && (h.type ?? "Exact") === "Exact").map((h) => h.value)));
    const catchAll = rules.some((rule) => !arr(rule.matches).some((m) => arr(m.headers).some((h) => h.name === ROUTING_HEADER)));
    const fallback = plugin.default_route?.cluster ?? "anthropic";
    for (const c of configClusters(plugin)) {
      if (!matched.has(c) && !(c === fallback && catchAll)) {
        out.push(`${where}: the plugin configuration routes to cluster ${c}, which no HTTPRoute rule matches on ${ROUTING_HEADER}`);
      }
    }
  }
  return out;
}

// ---- Access-log flush: within a second, wherever Envoy runs. ----

// Envoy buffers access-log lines (the audit record) and writes them every 10 s by default (or
// once 64 KiB wait): a crash loses what is buffered. Envoy 1.40 has no bootstrap field for the
// interval, only this flag (render/src/lib.rs ENVOY_ARGS), which each platform passes its own way.
const FLUSH_FLAG = "--file-flush-interval-msec";
const MAX_FLUSH_MS = 1000;
const AUDIT_FORMAT = "%FILTER_STATE(wasm.claude_gateway:PLAIN)%";
const AUDIT_MATCH = "'wasm.claude_gateway' in filter_state";

// Why a flag list does not flush within MAX_FLUSH_MS, or null.
function flushArgProblem(args) {
  const a = arr(args);
  const i = a.indexOf(FLUSH_FLAG);
  if (i < 0) return `no ${FLUSH_FLAG} (Envoy's default is 10 s)`;
  const ms = /^\d+$/.test(String(a[i + 1])) ? Number(a[i + 1]) : NaN;
  if (!(ms >= 1 && ms <= MAX_FLUSH_MS)) return `${FLUSH_FLAG} ${a[i + 1]} is not 1 to ${MAX_FLUSH_MS} ms`;
  return null;
}

// Milliseconds of a protobuf JSON duration ("1s", "0.500s"), or NaN.
const durationMs = (d) => (/^\d+(\.\d+)?s$/.test(String(d)) ? Number(String(d).slice(0, -1)) * 1000 : NaN);

function flushProblems(docs) {
  const out = [];
  // Istio: pilot-agent starts Envoy with --file-flush-interval-msec from the ProxyConfig's
  // fileFlushInterval (Istio 1.29 on; before, a fixed 1 s).
  for (const w of workloads(docs).filter((d) => d.spec?.template?.metadata?.annotations?.["inject.istio.io/templates"])) {
    const text = w.spec.template.metadata.annotations["proxy.istio.io/config"];
    let config = {};
    try {
      config = YAML.parse(text ?? "{}") ?? {};
    } catch (e) {
      out.push(`${w.metadata.name}: proxy.istio.io/config does not parse: ${e.message}`);
      continue;
    }
    const ms = durationMs(config.fileFlushInterval);
    if (!(ms > 0 && ms <= MAX_FLUSH_MS)) {
      out.push(`${w.metadata.name}: proxy.istio.io/config fileFlushInterval ${config.fileFlushInterval} is not a duration up to ${MAX_FLUSH_MS / 1000}s`);
    }
  }
  // Envoy Gateway runs the Envoy itself: its EnvoyProxy passes the flag and prints the record.
  if (docs.some((d) => d.kind === "EnvoyExtensionPolicy")) {
    const proxies = docs.filter((d) => d.kind === "EnvoyProxy");
    if (!proxies.length) out.push("Envoy Gateway without an EnvoyProxy (the audit log and its flush interval)");
    for (const p of proxies) {
      const why = flushArgProblem(p.spec?.extraArgs);
      if (why) out.push(`EnvoyProxy/${p.metadata.name}: extraArgs: ${why}`);
      const settings = arr(p.spec?.telemetry?.accessLog?.settings);
      const audit = settings.some((s) => String(s.format?.text ?? "").includes(AUDIT_FORMAT)
        && arr(s.matches).includes(AUDIT_MATCH) && arr(s.sinks).some((k) => k.type === "File"));
      if (!audit) out.push(`EnvoyProxy/${p.metadata.name}: no access log printing ${AUDIT_FORMAT} for ${AUDIT_MATCH}`);
    }
  }
  return out;
}

// ---- Kubernetes: Envoy replicas, the rate-limit service, Redis. ----

const workloads = (docs) => docs.filter((d) => ["Deployment", "StatefulSet"].includes(d.kind));
const containersOf = (w) => arr(w.spec?.template?.spec?.containers);
const argAfter = (c, flag) => { const a = arr(c.args); const i = a.indexOf(flag); return i >= 0 ? a[i + 1] : undefined; };
const selects = (selector, labels) => Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

// The content a container sees at `file`: a ConfigMap key through one of its volume mounts.
function mountedFile(docs, workload, container, file) {
  for (const m of arr(container.volumeMounts)) {
    const inside = m.subPath ? file === m.mountPath : file.startsWith(m.mountPath + "/");
    if (!inside) continue;
    const volume = arr(workload.spec.template.spec.volumes).find((v) => v.name === m.name);
    const cm = docs.find((d) => d.kind === "ConfigMap" && ns(d) === ns(workload) && d.metadata.name === volume?.configMap?.name);
    const keyName = m.subPath ?? file.slice(m.mountPath.length + 1);
    return cm?.data?.[keyName];
  }
  return undefined;
}

// `<name>.<namespace>.svc.cluster.local:<port>`: the Service and its port, or why not.
function serviceProblem(docs, host, port, headless) {
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(host);
  if (!m) return `${host} is not a Service's cluster name`;
  const svc = docs.find((d) => d.kind === "Service" && d.metadata.name === m[1] && ns(d) === m[2]);
  if (!svc) return `no Service ${m[2]}/${m[1]} for ${host}`;
  if (!arr(svc.spec.ports).some((p) => p.port === port)) return `Service ${m[2]}/${m[1]} has no port ${port}`;
  if (headless && svc.spec.clusterIP !== "None") return `Service ${m[2]}/${m[1]} must be headless (clusterIP: None) for a STRICT_DNS cluster`;
  return null;
}

function kubernetesProblems(docs) {
  const out = [];
  for (const svc of docs.filter((d) => d.kind === "Service")) {
    const pods = workloads(docs).filter((w) => ns(w) === ns(svc) && selects(svc.spec.selector, w.spec.template.metadata?.labels));
    if (!pods.length) { out.push(`Service ${svc.metadata.name} selects no pods`); continue; }
    for (const p of arr(svc.spec.ports)) {
      if (typeof p.targetPort === "string" && !pods.some((w) => containersOf(w).some((c) => arr(c.ports).some((cp) => cp.name === p.targetPort))))
        out.push(`Service ${svc.metadata.name}: no container port named ${p.targetPort}`);
    }
  }
  const envoys = workloads(docs).flatMap((w) => containersOf(w).filter((c) => argAfter(c, "-c")).map((c) => ({ w, c })));
  if (!envoys.length) out.push("no Envoy container (args -c <bootstrap>)");
  const bootstraps = [];
  for (const { w, c } of envoys) {
    const flush = flushArgProblem(c.args);
    if (flush) out.push(`${w.metadata.name}: ${c.name}: ${flush}`);
    const text = mountedFile(docs, w, c, argAfter(c, "-c"));
    if (!text) { out.push(`${w.metadata.name}: its bootstrap ${argAfter(c, "-c")} is in no ConfigMap it mounts`); continue; }
    const bootstrap = YAML.parse(text);
    bootstraps.push({ name: `kubernetes-${w.metadata.name}`, bootstrap });
    const wasm = [];
    const walk = (v) => {
      if (v && typeof v === "object") {
        if (v["@type"] === WASM_TYPE) wasm.push(v.config);
        Object.values(v).forEach(walk);
      }
    };
    walk(bootstrap);
    if (!wasm.length) out.push(`${w.metadata.name}: the bootstrap has no wasm filter`);
    const imageMounts = arr(c.volumeMounts).filter((m) => arr(w.spec.template.spec.volumes).find((v) => v.name === m.name)?.image);
    for (const config of wasm) {
      const file = config.vm_config?.code?.local?.filename ?? "";
      if (!imageMounts.some((m) => file === `${m.mountPath}/plugin.wasm`)) out.push(`${w.metadata.name}: ${file} is not plugin.wasm of a mounted image volume`);
      const keys = arr(config.vm_config?.environment_variables?.host_env_keys);
      const fromEnv = new Set(arr(c.env).map((e) => e.name));
      if (keys.some((k) => !fromEnv.has(k)) && !arr(c.envFrom).some((e) => e.secretRef?.name)) out.push(`${w.metadata.name}: ${keys.join(", ")} come from no env entry or Secret`);
    }
    const ports = arr(c.ports).map((p) => p.containerPort);
    for (const l of arr(bootstrap.static_resources?.listeners)) {
      const a = l.address?.socket_address;
      if (a && (a.address !== "0.0.0.0" || !ports.includes(a.port_value))) out.push(`${w.metadata.name}: listener ${l.name} on ${a.address}:${a.port_value} is not a container port on every address`);
    }
    for (const cl of arr(bootstrap.static_resources?.clusters)) {
      for (const e of arr(cl.load_assignment?.endpoints).flatMap((x) => arr(x.lb_endpoints))) {
        const a = e.endpoint?.address?.socket_address;
        if (a?.address?.endsWith(".svc.cluster.local")) {
          const why = serviceProblem(docs, a.address, a.port_value, cl.type === "STRICT_DNS");
          if (why) out.push(`${w.metadata.name}: cluster ${cl.name}: ${why}`);
        }
      }
    }
    // The rate-limit service counts what the filter's plugin configuration limits.
    const filterConfig = pluginConfigOf(wasm[0] ?? {});
    const services = workloads(docs).flatMap((x) => containersOf(x).filter((k) => argAfter(k, "--redis")).map((k) => ({ x, k })));
    if (filterConfig.global_limits?.enabled && !services.length) out.push("global limits on, but no rate-limit service (args --redis)");
    for (const { x, k } of services) {
      const config = mountedFile(docs, x, k, argAfter(k, "--config"));
      if (!config) out.push(`${x.metadata.name}: its --config is in no ConfigMap it mounts`);
      else if (!isDeepStrictEqual(YAML.parse(config), filterConfig)) out.push(`${x.metadata.name}: its configuration is not the filter's plugin configuration`);
      const url = /^redis:\/\/([^:/]+):(\d+)$/.exec(argAfter(k, "--redis") ?? "");
      const why = url ? serviceProblem(docs, url[1], Number(url[2]), false) : "--redis is not redis://<host>:<port>";
      if (why) out.push(`${x.metadata.name}: ${why}`);
    }
  }
  return { problems: out, bootstraps };
}

// ---- Bootstraps for `envoy --mode validate`. ----

// Istio's MERGE (pkg/proto/merge): messages merge, lists append, map entries and Any values
// are replaced whole.
const MAP_FIELDS = new Set(["typed_extension_protocol_options", "typed_filter_metadata", "filter_metadata", "typed_per_filter_config"]);
function istioMerge(dst, src) {
  for (const [k, v] of Object.entries(src)) {
    if (Array.isArray(v)) dst[k] = [...arr(dst[k]), ...structuredClone(v)];
    else if (v && typeof v === "object" && !("@type" in v)) {
      if (!dst[k] || typeof dst[k] !== "object") dst[k] = {};
      if (MAP_FIELDS.has(k)) for (const [mk, mv] of Object.entries(v)) dst[k][mk] = structuredClone(mv);
      else istioMerge(dst[k], v);
    } else dst[k] = structuredClone(v);
  }
  return dst;
}

// The cluster Istio builds for a ServiceEntry host and port (and its DestinationRule).
function istioCluster(docs, host, port) {
  const name = `outbound|${port}||${host}`;
  const cluster = {
    name,
    type: "STRICT_DNS",
    connect_timeout: "10s",
    dns_lookup_family: "V4_ONLY",
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
    },
    metadata: { filter_metadata: { istio: { services: [{ host, name: host }] } } },
  };
  const found = destinationRuleTls(docs, host, port);
  const policy = found?.dr.spec.trafficPolicy ?? {};
  if (found?.tls.mode === "SIMPLE") {
    cluster.transport_socket = {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": TLS_TYPE,
        sni: found.tls.sni ?? host,
        common_tls_context: {
          validation_context: {
            trusted_ca: { filename: SYSTEM_CA },
            match_typed_subject_alt_names: arr(found.tls.subjectAltNames).map((s) => ({ san_type: "DNS", matcher: { exact: s } })),
          },
        },
      },
    };
  }
  if (policy.connectionPool?.http?.idleTimeout) {
    cluster.typed_extension_protocol_options = {
      [PROTOCOL_OPTIONS]: {
        "@type": `type.googleapis.com/${PROTOCOL_OPTIONS}`,
        common_http_protocol_options: { idle_timeout: policy.connectionPool.http.idleTimeout },
        explicit_http_config: { http_protocol_options: {} },
      },
    };
  }
  const od = policy.outlierDetection;
  if (od) {
    cluster.outlier_detection = {
      consecutive_5xx: od.consecutive5xxErrors, interval: od.interval,
      base_ejection_time: od.baseEjectionTime, max_ejection_percent: od.maxEjectionPercent,
    };
  }
  return cluster;
}

// The Envoy route Istio builds for a gateway VirtualService route.
function istioRoute(route) {
  const m = arr(route.match)[0] ?? {};
  const d = arr(route.route)[0].destination;
  return {
    name: route.name,
    match: {
      prefix: m.uri?.prefix ?? "/",
      headers: Object.entries(m.headers ?? {}).map(([name, v]) => ({ name, string_match: { exact: v.exact } })),
    },
    request_headers_to_remove: arr(route.headers?.request?.remove),
    route: {
      cluster: `outbound|${d.port.number}||${d.host}`,
      ...(route.rewrite?.authority ? { host_rewrite_literal: route.rewrite.authority } : {}),
      ...(route.timeout ? { timeout: route.timeout } : {}),
      ...(route.retries ? { retry_policy: { retry_on: route.retries.retryOn, num_retries: route.retries.attempts } } : {}),
    },
  };
}

// Points the SDS files of the copy at placeholders (Envoy opens them when it validates).
function localSecrets(value) {
  if (!value || typeof value !== "object") return;
  const sds = value.sds_config?.path_config_source;
  if (sds?.path?.startsWith(SECRETS_DIR + "/")) {
    const dir = path.resolve(OUT, "secrets");
    fs.mkdirSync(dir, { recursive: true });
    sds.path = path.join(dir, path.basename(sds.path));
    if (sds.watched_directory) sds.watched_directory.path = dir;
    fs.writeFileSync(sds.path, YAML.stringify({
      resources: [{ "@type": SECRET_TYPE, name: value.name, generic_secret: { secret: { inline_string: "validate-only" } } }],
    }));
  }
  for (const v of Object.values(value)) localSecrets(v);
}

// What Istio would add to the gateway for this EnvoyFilter: filters before the router,
// the VirtualService's routes to other hosts, the clusters patched or referred to.
function applyIstio(bootstrap, ef, docs) {
  const hcm = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const routes = hcm.route_config.virtual_hosts[0].routes;
  const clusters = bootstrap.static_resources.clusters;
  const clusterFor = (host, port) => {
    const name = `outbound|${port}||${host}`;
    let c = clusters.find((x) => x.name === name);
    if (!c) clusters.push((c = istioCluster(docs, host, port)));
    return c;
  };
  // An Istio proxy always has a node identity (SDS files need one).
  bootstrap.node ??= { id: "claude-gateway", cluster: "claude-gateway" };
  const known = new Set(routes.map((r) => r.name));
  const added = gatewayRoutes(docs).filter(({ route }) => !known.has(route.name)).map(({ route }) => istioRoute(route));
  routes.splice(routes.findIndex((r) => r.name === "messages"), 0, ...added);
  for (const r of added) {
    const [, port, host] = /^outbound\|(\d+)\|\|(.+)$/.exec(r.route.cluster);
    clusterFor(host, Number(port));
  }
  for (const p of arr(ef.spec.configPatches)) {
    const value = structuredClone(p.patch?.value ?? {});
    for (const ref of outboundRefs(value)) clusterFor(ref.host, ref.port);
    localSecrets(value);
    if (p.applyTo === "HTTP_FILTER" && value.typed_config && p.patch.operation === "INSERT_BEFORE"
      && p.match?.listener?.filterChain?.filter?.subFilter?.name === ROUTER) {
      hcm.http_filters.splice(hcm.http_filters.findIndex((f) => f.name === ROUTER), 0, value);
    }
    if (p.applyTo === "HTTP_ROUTE" && p.patch.operation === "MERGE") {
      const r = routes.find((x) => x.name === p.match.routeConfiguration.vhost.route.name);
      if (r) istioMerge(r, value);
    }
    if (p.applyTo === "CLUSTER" && p.patch.operation === "MERGE" && p.match?.cluster?.service) {
      istioMerge(clusterFor(p.match.cluster.service, p.match.cluster.portNumber), value);
    }
  }
}

// The base configuration of the filter (envoy/envoy.yaml's).
function baseWasmConfig() {
  const envoy = YAML.parse(fs.readFileSync("envoy/envoy.yaml", "utf8"));
  const filters = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
  return filters.find((f) => f.typed_config["@type"] === WASM_TYPE).typed_config.config;
}

// WasmPlugin and EnvoyExtensionPolicy: Istio and Envoy Gateway build the filter themselves,
// without allow_on_headers_stop_iteration; only the plugin config is ours. As Istio hands a
// WasmPlugin's YAML pluginConfig to Envoy: JSON text in a google.protobuf.StringValue
// (envoy.yaml's own is a Struct; the filter reads both). Envoy Gateway does the same.
function generatedConfig(pluginConfig) {
  const config = structuredClone(baseWasmConfig());
  delete config.allow_on_headers_stop_iteration;
  config.configuration = {
    "@type": "type.googleapis.com/google.protobuf.StringValue",
    value: JSON.stringify(pluginConfig ?? {}),
  };
  return config;
}

// Each wasm filter configuration from the world's objects (from `files` only), as a copy of
// envoy/envoy.yaml with that filter (and, for an EnvoyFilter, its patches).
function bootstraps(world, files) {
  const docs = world.entries.map((e) => e.doc);
  const out = [];
  const base = () => YAML.parse(fs.readFileSync("envoy/envoy.yaml", "utf8"));
  const named = (file, doc) => `${path.basename(file, ".yaml")}-${doc.metadata.name}`;
  const { patched } = patchedEgConfigs(docs, (f) => generatedConfig(f.wasm.config));
  for (const { file, doc } of world.entries.filter((e) => files.includes(e.file))) {
    if (doc.kind === "EnvoyFilter" && wasmPatch(doc)) {
      const bootstrap = base();
      applyIstio(bootstrap, doc, docs);
      out.push({ name: named(file, doc), bootstrap, config: structuredClone(wasmPatch(doc).patch.value.typed_config.config) });
    }
    if (doc.kind === "WasmPlugin") out.push({ name: named(file, doc), bootstrap: base(), config: generatedConfig(doc.spec.pluginConfig) });
    if (doc.kind === "EnvoyExtensionPolicy") {
      arr(doc.spec.wasm).forEach((w, i) => {
        const config = structuredClone(patched.get(egWasmFilterName(doc, i)) ?? generatedConfig(w.config));
        out.push({ name: `${named(file, doc)}-${i}`, bootstrap: base(), config });
      });
    }
  }
  return out;
}

// Writes each bootstrap with its wasm filter's config; the module is local for the check
// (`render bootstrap --wasm` points it at the build).
function writeBootstraps(items) {
  for (const { name, bootstrap, config } of items) {
    const filters = bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
    config.vm_config.code = { local: { filename: "/etc/envoy/claude_gateway.wasm" } };
    filters.find((f) => f.typed_config?.["@type"] === WASM_TYPE).typed_config.config = config;
    fs.writeFileSync(path.join(OUT, `${name}.yaml`), YAML.stringify(bootstrap, { lineWidth: 0 }));
  }
}

// The problems of every world (references, Istio, Envoy Gateway), each named by its world.
function worldProblems(entries) {
  const { worlds: all, failures } = worlds(entries);
  const k8s = kubernetesProblems(entries.filter(inKubernetes).map((e) => e.doc));
  failures.push(...k8s.problems.map((p) => `[kubernetes] ${p}`));
  for (const w of all) {
    const docs = w.entries.map((e) => e.doc);
    const eg = patchedEgConfigs(docs, (f) => generatedConfig(f.wasm.config));
    const found = [...istioProblems(docs), ...eg.problems, ...egProblems(docs, eg.patched), ...flushProblems(docs)];
    failures.push(...found.map((p) => `[${w.name}] ${p}`));
  }
  return { worlds: all, failures: [...new Set(failures)], kubernetes: k8s.bootstraps };
}

// ---- Negative checks: broken copies must be rejected. ----

// Schema: each broken copy of one object, alone in a file.
const BREAKS = [
  ["WasmPlugin", "an unknown failStrategy", (d) => { d.spec.failStrategy = "FAIL_SOMETIMES"; }],
  ["EnvoyFilter", "an unknown applyTo", (d) => { d.spec.configPatches[0].applyTo = "LISTENER_OF_DOOM"; }],
  ["EnvoyFilter", "a patch without operation", (d) => { d.spec.configPatches[1].patch.operation = 7; }],
  ["ServiceEntry", "a port number as text", (d) => { d.spec.ports[0].number = "eighty"; }],
  ["VirtualService", "hosts as a string", (d) => { d.spec.hosts = "api.anthropic.com"; }],
  ["DestinationRule", "an unknown TLS mode", (d) => { d.spec.trafficPolicy = { tls: { mode: "MAYBE" } }; }],
  ["Deployment", "no selector", (d) => { delete d.spec.selector; }],
  ["Service", "a port without number", (d) => { delete d.spec.ports[0].port; }],
  ["EnvoyExtensionPolicy", "an unknown code source type", (d) => { d.spec.wasm[0].code.type = "FTP"; }],
  ["HTTPRoute", "a timeout that is not a duration", (d) => { d.spec.rules[0].timeouts.request = "forever"; }],
  ["Telemetry", "providers as a string", (d) => { d.spec.accessLogging[0].providers = "audit"; }],
  ["EnvoyPatchPolicy", "an unknown patch type", (d) => { d.spec.type = "StrategicMerge"; }],
  ["EnvoyPatchPolicy", "an unknown JSON patch op", (d) => { d.spec.jsonPatches[0].operation.op = "upsert"; }],
  ["EnvoyPatchPolicy", "an add without a value", (d) => { delete d.spec.jsonPatches[0].operation.value; }],
  ["EnvoyPatchPolicy", "a JSONPath it cannot read", (d) => { d.spec.jsonPatches[0].operation.jsonPath = "..http_filters[?(@.name~'x')]"; }],
  ["BackendTrafficPolicy", "a buffer limit that is not a quantity", (d) => { d.spec.requestBuffer.limit = "lots"; }],
  ["HTTPRouteFilter", "overwrite as text", (d) => { d.spec.credentialInjection.overwrite = "yes"; }],
  ["EnvoyProxy", "extraArgs as a string", (d) => { d.spec.extraArgs = "--file-flush-interval-msec 1000"; }],
];

// References: each change to one object of the manifests, checked with all the others.
const find = (entries, file, kind, name) => entries.find((e) => e.file === file && e.doc.kind === kind
  && (!name || e.doc.metadata.name === name))?.doc;
const CLOUDS = "deploy/istio/clouds.yaml";
const PATCHES = "deploy/envoy-gateway/patch-policy.yaml";
const K8S = "deploy/kubernetes/replicas.yaml";
const REFERENCE_BREAKS = [
  ["the rate-limit service reading other limits than the filter", K8S, "ConfigMap",
    (d) => { d.data["plugin-config.yaml"] = d.data["plugin-config.yaml"].replace("requests_per_minute: 30", "requests_per_minute: 31"); }, "claude-gateway-limits"],
  ["the rate-limit Service not headless", K8S, "Service", (d) => { delete d.spec.clusterIP; }, "ratelimit"],
  ["the filter's image mounted elsewhere", K8S, "Deployment",
    (d) => { d.spec.template.spec.containers[0].volumeMounts[1].mountPath = "/wasm"; }, "claude-gateway"],
  ["the service's Redis not a Service", K8S, "Deployment",
    (d) => { const a = d.spec.template.spec.containers[0].args; a[a.indexOf("--redis") + 1] = "redis://cache.claude-gateway.svc.cluster.local:6379"; }, "ratelimit"],
  ["a Service selecting no pods", K8S, "Service", (d) => { d.spec.selector = { app: "redis-old" }; }, "redis"],
  ["a cloud route gone from clouds.yaml's VirtualService", CLOUDS, "VirtualService",
    (d) => { d.spec.http = d.spec.http.filter((r) => r.name !== "vertex"); }],
  ["clouds.yaml's VirtualService without egress-routing.yaml's passthrough route", CLOUDS, "VirtualService",
    (d) => { d.spec.http = d.spec.http.filter((r) => r.name !== "passthrough"); }],
  ["clouds.yaml's EnvoyFilter without one of envoyfilter.yaml's patches", CLOUDS, "EnvoyFilter",
    (d) => { d.spec.configPatches = d.spec.configPatches.filter((p) => p.applyTo !== "HTTP_ROUTE" || p.match.routeConfiguration.vhost.route.name !== "messages"); }],
  ["a CLUSTER patch for a host no ServiceEntry has", CLOUDS, "EnvoyFilter",
    (d) => { d.spec.configPatches.find((p) => p.applyTo === "CLUSTER").match.cluster.service = "bedrock-runtime.eu-west-1.amazonaws.com"; }],
  ["gcp_authn's cluster without its ServiceEntry", CLOUDS, "ServiceEntry",
    (d) => { if (d.spec.hosts[0] === "metadata.google.internal") d.spec.hosts = ["metadata.example.internal"]; }, "gcp-metadata"],
  ["a vendor host without TLS origination", CLOUDS, "DestinationRule",
    (d) => { d.spec.trafficPolicy.portLevelSettings[0].tls.mode = "DISABLE"; }, "foundry"],
  ["a gateway route without the buffer limit", "deploy/istio/envoyfilter.yaml", "EnvoyFilter",
    (d) => { d.spec.configPatches = d.spec.configPatches.filter((p) => p.match?.routeConfiguration?.vhost?.route?.name !== "passthrough"); }],
  ["an EnvoyPatchPolicy naming another wasm filter", PATCHES, "EnvoyPatchPolicy",
    (d) => { d.spec.jsonPatches[0].operation.jsonPath = d.spec.jsonPatches[0].operation.jsonPath.replace("/wasm/0", "/wasm/1"); }],
  ["an EnvoyPatchPolicy on another Gateway's listener", PATCHES, "EnvoyPatchPolicy",
    (d) => { d.spec.jsonPatches[0].name = "claude-gateway/other/http"; }],
  ["held headers under Envoy Gateway without the patch", PATCHES, "EnvoyPatchPolicy",
    (d) => { d.spec.targetRef.name = "other"; }],
  ["held headers under Envoy Gateway without the buffer policy", PATCHES, "BackendTrafficPolicy",
    (d) => { d.spec.targetRefs[0].name = "other"; }],
  ["the Envoy container flushing its access log every 10 s", K8S, "Deployment",
    (d) => { const a = d.spec.template.spec.containers[0].args; a.splice(a.indexOf("--file-flush-interval-msec"), 2); }, "claude-gateway"],
  ["the Istio egress gateway flushing its access log every 10 s", "deploy/istio/egress-gateway.yaml", "Deployment",
    (d) => { const a = d.spec.template.metadata.annotations; a["proxy.istio.io/config"] = a["proxy.istio.io/config"].replace('"fileFlushInterval":"1s"', '"fileFlushInterval":"10s"'); }],
  ["the EnvoyProxy flushing its access log every 10 s", "deploy/envoy-gateway/claude-gateway.yaml", "EnvoyProxy",
    (d) => { d.spec.extraArgs = ["--file-flush-interval-msec", "10000"]; }],
  ["the EnvoyProxy without the audit log", "deploy/envoy-gateway/claude-gateway.yaml", "EnvoyProxy",
    (d) => { d.spec.telemetry.accessLog.settings.shift(); }],
  ["a plugin route whose cluster no HTTPRoute rule matches", PATCHES, "HTTPRoute",
    (d) => { d.spec.rules[1].matches[0].headers[0].value = "azure"; }],
];

function selfCheck(entries) {
  const all = entries.map((e) => e.doc);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "manifests-"));
  const failures = [];
  try {
    for (const [kind, what, breakIt] of BREAKS) {
      const doc = all.find((d) => d.kind === kind);
      if (!doc) {
        failures.push(`self-check: no ${kind} to break`);
        continue;
      }
      const broken = structuredClone(doc);
      breakIt(broken);
      const file = path.join(tmp, `${kind}.yaml`);
      fs.writeFileSync(file, YAML.stringify(broken));
      if (problems(file).length === 0) failures.push(`self-check: a ${kind} with ${what} was accepted`);
      else console.log(`  rejected as it should be: ${kind} with ${what}`);
    }
    const garbled = path.join(tmp, "garbled.yaml");
    fs.writeFileSync(garbled, "kind: [unclosed\n");
    if (problems(garbled).length === 0) failures.push("self-check: unparsable YAML was accepted");
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  for (const [what, file, kind, breakIt, name] of REFERENCE_BREAKS) {
    const copy = structuredClone(entries);
    const doc = find(copy, file, kind, name);
    if (!doc) {
      failures.push(`self-check: no ${kind} in ${file} to break`);
      continue;
    }
    breakIt(doc);
    if (worldProblems(copy).failures.length === 0) failures.push(`self-check: ${what} was accepted`);
    else console.log(`  rejected as it should be: ${what}`);
  }
  return failures;
}

function main() {
  const files = DIRS.flatMap(yamlFiles);
  const failures = [];
  const entries = [];
  for (const file of files) {
    const p = problems(file);
    failures.push(...p);
    if (p.length === 0) {
      const docs = documents(file);
      entries.push(...docs.map((doc) => ({ file, doc })));
      console.log(`valid: ${file} (${docs.map((d) => d.kind).join(", ")})`);
    }
  }
  for (const v of VARIANT_FILES) if (!files.includes(v)) failures.push(`no ${v}`);
  const all = entries.map((e) => e.doc);
  failures.push(...checkStatsTags(all));
  const checked = worldProblems(entries);
  failures.push(...checked.failures);
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const items = [];
  for (const w of checked.worlds) {
    items.push(...bootstraps(w, w.variant ? [w.variant] : files.filter((f) => !VARIANT_FILES.includes(f))));
  }
  // One per EnvoyFilter with the filter, WasmPlugin and EnvoyExtensionPolicy wasm entry.
  const expected = all.filter((d) => (d.kind === "EnvoyFilter" && wasmPatch(d)) || d.kind === "WasmPlugin").length
    + all.filter((d) => d.kind === "EnvoyExtensionPolicy").reduce((n, d) => n + arr(d.spec.wasm).length, 0);
  if (items.length !== expected || expected < 5) failures.push(`expected ${expected} wasm configurations (at least 5), found ${items.length}`);
  writeBootstraps(items);
  // The Kubernetes manifests carry whole bootstraps: checked as they are.
  for (const { name, bootstrap } of checked.kubernetes) fs.writeFileSync(path.join(OUT, `${name}.yaml`), YAML.stringify(bootstrap, { lineWidth: 0 }));
  if (!checked.kubernetes.length) failures.push(`no bootstrap in ${KUBERNETES_DIR}`);
  failures.push(...selfCheck(entries));
  if (failures.length) {
    for (const f of failures) console.error(`INVALID: ${f}`);
    process.exit(1);
  }
  console.log(`${all.length} objects valid, their references checked in ${checked.worlds.length} sets applied together; `
    + `${items.length} wasm configurations for envoy --mode validate in ${OUT}/`);
}

main();
