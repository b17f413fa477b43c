// `npm pack` / `npm publish` run this first: refuse to pack a package whose dist/ is missing or
// incomplete (an unbuilt checkout would otherwise pack a tarball of nothing but package.json).
// Build first with `cargo xtask sdk` (or `cargo xtask dist` for the release artifacts).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const manifest = JSON.parse(readFileSync(path.join(pkg, 'package.json'), 'utf8'));

// Every file the exports map names (wildcards stand for the wasm builds listed in "files"),
// plus the license.
const wanted = new Set(['LICENSE']);
const walk = (v) => {
  if (typeof v === 'string') {
    if (!v.includes('*')) wanted.add(v.replace(/^\.\//, ''));
  } else if (v && typeof v === 'object') Object.values(v).forEach(walk);
};
walk(manifest.exports);
for (const f of manifest.files) if (!f.includes('*')) wanted.add(f);

const missing = [...wanted].filter((f) => !existsSync(path.join(pkg, f)));
if (missing.length) {
  console.error(`consentry: refusing to pack, the package is not built (missing ${missing.join(', ')}).`);
  console.error('Run `cargo xtask sdk` (or `cargo xtask dist`) in the repository first.');
  process.exit(1);
}
