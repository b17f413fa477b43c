// Playwright globalSetup of the packaging tests: `npm pack` the built package (dist/ from
// `cargo xtask sdk`), then make a fresh app per fixture in apps/ and install the TARBALL into it the
// way a consumer does (`npm install ./consentry-x.tgz`: a real copy in node_modules, not a link).
//
// The apps live outside the repository (no ancestor package.json or lockfile for npm, Vite or
// Next to pick up), in $CONSENTRY_PACKAGING_DIR or <tmp>/consentry-packaging-<hash of this
// checkout>. node_modules is reused while the fixture's package.json, the tarball and Node are
// unchanged; a changed tarball reinstalls only `consentry`; a changed package.json starts over.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PACKAGE_DIR } from '../support/server.mjs';

const APPS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'apps');
export const APPS = ['vite', 'next'];
const STAMP = '.consentry-packaging.json';
/** Left in place between runs; everything else in an app dir is copied anew from the fixture. */
const KEEP = new Set(['node_modules', 'package.json', 'package-lock.json', STAMP]);

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

export function workDir() {
  return process.env.CONSENTRY_PACKAGING_DIR
    || path.join(tmpdir(), `consentry-packaging-${sha256(PACKAGE_DIR).slice(0, 10)}`);
}

function npm(args, { cwd, capture = false }) {
  const r = spawnSync('npm', args, {
    cwd,
    stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    encoding: 'utf8',
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' },
  });
  if (r.error || r.status !== 0) {
    throw new Error(`\`npm ${args.join(' ')}\` in ${cwd} failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  return r.stdout;
}

/** Every file the package.json `exports` map points at (not the `./wasm/*` pattern). */
function exportedFiles(manifest) {
  const out = new Set();
  const walk = (v) => {
    if (typeof v === 'string') {
      if (!v.includes('*')) out.add(v.replace(/^\.\//, ''));
    } else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(manifest.exports);
  return [...out];
}

/** npm pack into <work>/tarballs/consentry-<hash>.tgz (a new name whenever the content changes). */
function pack(work) {
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
  const missing = exportedFiles(manifest).filter((f) => !existsSync(path.join(PACKAGE_DIR, f)));
  if (missing.length) {
    throw new Error(`the package is not built (missing ${missing.join(', ')}): run \`cargo xtask sdk\` first`);
  }
  const staging = path.join(work, 'pack');
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const [info] = JSON.parse(npm(['pack', '--json', '--pack-destination', staging], { cwd: PACKAGE_DIR, capture: true }));
  const packed = info.files.map((f) => f.path);
  const unpacked = exportedFiles(manifest).filter((f) => !packed.includes(f));
  if (unpacked.length) {
    throw new Error(`package.json exports files that npm pack leaves out (add them to "files"): ${unpacked.join(', ')}`);
  }
  const bytes = readFileSync(path.join(staging, info.filename));
  const hash = sha256(bytes).slice(0, 16);
  const tarballs = path.join(work, 'tarballs');
  mkdirSync(tarballs, { recursive: true });
  const name = `consentry-${info.version}-${hash}.tgz`;
  writeFileSync(path.join(tarballs, name), bytes);
  rmSync(staging, { recursive: true, force: true });
  console.log(`packed ${info.name}@${info.version}: ${info.filename}, ${bytes.length} bytes, ${packed.length} files (${packed.join(', ')})`);
  lint(path.join(tarballs, name));
  return { name, path: path.join(tarballs, name), files: packed };
}

/**
 * The tarball through publint (strict: warnings fail) and Are the Types Wrong. attw's profile
 * `esm-only`: the package is ESM only on purpose, so node10 and CommonJS-from-node16 resolutions
 * are not checked (attw's TypeScript predates require(esm); Node's require(esm) itself is tested
 * in tests/standalone).
 */
function lint(tarball) {
  const bin = (name) => path.join(PACKAGE_DIR, 'node_modules', '.bin', name);
  for (const [name, args] of [
    ['publint', ['run', '--strict', tarball]],
    ['attw', ['--profile', 'esm-only', '--format', 'table-flipped', '--no-color', '--no-emoji', tarball]],
  ]) {
    const r = spawnSync(bin(name), args, { stdio: 'inherit' });
    if (r.error || r.status !== 0) {
      throw new Error(`${name} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
    }
  }
}

/** require(esm) of consentry/react, where React is installed (Node >= 20.19). */
function requireReact(dir) {
  const r = spawnSync(process.execPath, ['-e', "if (typeof require('consentry/react').IdentityProvider !== 'function') process.exit(1)"], { cwd: dir, stdio: 'inherit' });
  if (r.error || r.status !== 0) throw new Error(`require('consentry/react') failed in ${dir}`);
}

function prepareApp(work, app, tarball) {
  const fixture = path.join(APPS_DIR, app);
  const dir = path.join(work, app);
  const fixtureManifest = readFileSync(path.join(fixture, 'package.json'));
  const want = { fixture: sha256(fixtureManifest), node: process.version, tarball: tarball.name };
  let have = {};
  try {
    have = JSON.parse(readFileSync(path.join(dir, STAMP), 'utf8'));
  } catch {
    // a fresh app
  }
  const reuse = have.fixture === want.fixture && have.node === want.node
    && existsSync(path.join(dir, 'node_modules', '.package-lock.json'));
  if (!reuse) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const entry of readdirSync(dir)) {
    if (!KEEP.has(entry)) rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
  cpSync(fixture, dir, { recursive: true, filter: (src) => path.relative(fixture, src) !== 'package.json' });

  const spec = path.relative(dir, tarball.path);
  if (!reuse) {
    console.log(`${app}: fresh install of ${path.relative(APPS_DIR, fixture)}/package.json + ${tarball.name} in ${dir}`);
    writeFileSync(path.join(dir, 'package.json'), fixtureManifest);
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', spec], { cwd: dir });
  } else if (have.tarball !== want.tarball) {
    console.log(`${app}: dependencies reused, installing the new ${tarball.name}`);
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', spec], { cwd: dir });
  } else {
    console.log(`${app}: dependencies and ${tarball.name} already installed in ${dir}`);
  }

  // What a consumer gets: a copy of exactly the packed files, not a link to the workspace.
  const installed = path.join(dir, 'node_modules', 'consentry');
  if (lstatSync(installed).isSymbolicLink()) throw new Error(`${installed} is a link, not the installed tarball`);
  for (const f of tarball.files) {
    if (!statSync(path.join(installed, f)).isFile()) throw new Error(`${installed}/${f} is missing`);
  }
  if (existsSync(path.join(installed, 'src'))) throw new Error(`${installed} has src/: not the packed package`);
  writeFileSync(path.join(dir, STAMP), JSON.stringify(want, null, 2));
}

/** Is `pid` a live process? (EPERM: alive, someone else's.) */
function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** One run at a time per work dir (engineers share machines): a lock file holding our pid. */
async function lock(work) {
  const file = path.join(work, '.lock');
  for (let waited = 0; ; waited += 1) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => rmSync(file, { force: true });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let holder = null;
    try {
      holder = Number.parseInt(readFileSync(file, 'utf8'), 10);
    } catch {
      continue; // released meanwhile
    }
    // No pid yet (being written), or a live holder: wait. A dead holder's lock is stale.
    const stale = Number.isInteger(holder) && holder > 0 ? !isAlive(holder) : waited > 10;
    if (stale) {
      rmSync(file, { force: true });
      continue;
    }
    if (waited % 30 === 0) console.log(`waiting for another packaging run (pid ${holder}) to finish with ${work}`);
    if (waited > 1800) throw new Error(`${file} held by pid ${holder} for 30 minutes`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export default async function globalSetup() {
  // Vite 8 needs Node ^20.19 || >=22.12, Next 16 >=20.9.
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19) || (major === 22 && minor < 12)) {
    throw new Error(`Node ${process.versions.node} is too old for Vite 8 and Next 16: install Node 20.19+ or 22.12+`);
  }
  const work = workDir();
  mkdirSync(work, { recursive: true });
  const unlock = await lock(work);
  try {
    const tarball = pack(work);
    for (const app of APPS) prepareApp(work, app, tarball);
    requireReact(path.join(work, 'vite'));
    for (const old of readdirSync(path.join(work, 'tarballs'))) {
      if (old !== tarball.name) rmSync(path.join(work, 'tarballs', old), { force: true });
    }
  } catch (e) {
    unlock();
    throw e;
  }
  process.env.CONSENTRY_PACKAGING_DIR = work;
  // Playwright's globalSetup may return its teardown.
  return unlock;
}
