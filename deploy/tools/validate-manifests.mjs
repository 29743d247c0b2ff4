// Validates every manifest under deploy/ (istio/, envoy-gateway/) against the published schemas
// of its kind: Istio's CRDs (@kubernetes-models/istio), Envoy Gateway's and the Gateway API's,
// and the Kubernetes core API (kubernetes-models). Then:
//   - the stats tags in the Istio bootstrap override must equal envoy/envoy.yaml's;
//   - every wasm filter configuration in the manifests is written into a copy of
//     envoy/envoy.yaml under target/manifests/, which `make manifests` then runs through
//     `envoy --mode validate` (Envoy's own proto check, and the filter's check of its plugin
//     configuration);
//   - broken copies of the manifests, written to a temporary directory, must be rejected, so a
//     validator that accepts anything is caught.
// usage: node deploy/tools/validate-manifests.mjs   (from the repository root; `make manifests`)

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";

import { Namespace } from "kubernetes-models/v1/Namespace";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { EnvoyFilter } from "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter";
import { ServiceEntry } from "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry";
import { Gateway as IstioGateway } from "@kubernetes-models/istio/networking.istio.io/v1/Gateway";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { VirtualService } from "@kubernetes-models/istio/networking.istio.io/v1/VirtualService";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { Telemetry } from "@kubernetes-models/istio/telemetry.istio.io/v1/Telemetry";
import { IstioOperator } from "@kubernetes-models/istio/install.istio.io/v1alpha1/IstioOperator";
import { EnvoyExtensionPolicy } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy";
import { Backend } from "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io/v1alpha1/Backend";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";

const MODELS = [
  Namespace, Service, ServiceAccount, ConfigMap, Deployment,
  EnvoyFilter, ServiceEntry, IstioGateway, DestinationRule, VirtualService, WasmPlugin,
  Telemetry, IstioOperator, EnvoyExtensionPolicy, Backend, HTTPRoute,
];
const DIRS = ["deploy/istio", "deploy/envoy-gateway"];
const WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
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

// Each wasm filter configuration from the manifests, as the `config` of a Wasm filter.
function wasmConfigs(all, base) {
  const out = [];
  for (const d of all) {
    if (d.kind === "EnvoyFilter") {
      for (const p of d.spec.configPatches) {
        const tc = p.patch?.value?.typed_config;
        if (p.applyTo === "EXTENSION_CONFIG" && tc?.["@type"] === WASM_TYPE) {
          out.push({ name: `envoyfilter-${d.metadata.name}`, config: structuredClone(tc.config) });
        }
      }
    }
    // WasmPlugin and EnvoyExtensionPolicy: Istio and Envoy Gateway build the filter
    // themselves, without allow_on_headers_stop_iteration; only the plugin config is ours.
    const withPluginConfig = (name, pluginConfig) => {
      const config = structuredClone(base);
      delete config.allow_on_headers_stop_iteration;
      // As Istio hands a WasmPlugin's YAML pluginConfig to Envoy: JSON text in a
      // google.protobuf.StringValue (envoy.yaml's own is a Struct; the filter reads both).
      // Envoy Gateway's config is checked the same way.
      config.configuration = {
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        value: JSON.stringify(pluginConfig ?? {}),
      };
      out.push({ name, config });
    };
    if (d.kind === "WasmPlugin") withPluginConfig(`wasmplugin-${d.metadata.name}`, d.spec.pluginConfig);
    if (d.kind === "EnvoyExtensionPolicy") {
      for (const w of d.spec.wasm ?? []) withPluginConfig(`envoyextensionpolicy-${d.metadata.name}`, w.config);
    }
  }
  return out;
}

// Writes envoy/envoy.yaml with its wasm filter's config replaced, one file per configuration.
function writeBootstraps(configs) {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  for (const { name, config } of configs) {
    const doc = YAML.parseDocument(fs.readFileSync("envoy/envoy.yaml", "utf8"));
    const filters = doc.getIn(["static_resources", "listeners", 0, "filter_chains", 0, "filters", 0,
      "typed_config", "http_filters"]);
    const wasm = filters.items.find((f) => f.getIn(["typed_config", "@type"]) === WASM_TYPE);
    // The module is local for the check (`render bootstrap --wasm` points it at the build).
    config.vm_config.code = { local: { filename: "/etc/envoy/claude_gateway.wasm" } };
    wasm.setIn(["typed_config", "config"], doc.createNode(config));
    fs.writeFileSync(path.join(OUT, `${name}.yaml`), doc.toString());
  }
}

function baseWasmConfig() {
  const envoy = YAML.parse(fs.readFileSync("envoy/envoy.yaml", "utf8"));
  const filters = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters;
  return filters.find((f) => f.typed_config["@type"] === WASM_TYPE).typed_config.config;
}

// Broken copies, each of which must be rejected.
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
];

function selfCheck(all) {
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
  return failures;
}

function main() {
  const files = DIRS.flatMap(yamlFiles);
  const failures = [];
  const all = [];
  for (const file of files) {
    const p = problems(file);
    failures.push(...p);
    if (p.length === 0) {
      const docs = documents(file);
      all.push(...docs);
      console.log(`valid: ${file} (${docs.map((d) => d.kind).join(", ")})`);
    }
  }
  failures.push(...checkStatsTags(all));
  const configs = wasmConfigs(all, baseWasmConfig());
  if (configs.length < 3) failures.push(`expected 3 wasm configurations, found ${configs.length}`);
  writeBootstraps(configs);
  failures.push(...selfCheck(all));
  if (failures.length) {
    for (const f of failures) console.error(`INVALID: ${f}`);
    process.exit(1);
  }
  console.log(`${all.length} objects valid; wasm configurations for envoy --mode validate in ${OUT}/`);
}

main();
