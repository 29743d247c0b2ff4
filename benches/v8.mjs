// Runs a wasm32-wasip1 benchmark binary under node's V8 (the engine Envoy embeds), so the core's
// throughput can be measured in the runtime it ships in: `node benches/v8.mjs <file.wasm>`.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv } from 'node:process';
const wasi = new WASI({ version: 'preview1', args: [argv[2]], env: {}, preopens: {} });
const wasm = await WebAssembly.compile(await readFile(argv[2]));
const imports = wasi.getImportObject();
// Host functions of the proxy-wasm ABI: never called by the benchmark.
imports.env = Object.fromEntries(WebAssembly.Module.imports(wasm)
  .filter(i => i.module === 'env').map(i => [i.name, () => 0]));
const instance = await WebAssembly.instantiate(wasm, imports);
// The library exports the proxy-wasm _initialize; run the benchmark as a command.
const exports = Object.assign({}, instance.exports);
delete exports._initialize;
wasi.start({ exports });
