// examples/leptos-app for real, on loopback: `consentry dev` (SQLite; its TAT keypair is the
// product's), the example MCP server binary (consentry-resource), and the Leptos app's backend
// (axum: login, sessions, TAT minting) serving the app's wasm build. `cargo xtask leptos-test`
// builds both and passes LEPTOS_APP_BIN and LEPTOS_APP_DIST.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startGroup } from '../../packages/consentry/tests/support/processes.mjs';
import { CONSENTRY_BIN, MCP_SERVER_BIN, REPO_ROOT, freePort, waitFor } from './stack.mjs';

export const LEPTOS_APP_BIN = process.env.LEPTOS_APP_BIN || path.join(REPO_ROOT, 'target/debug/consentry-example-leptos-app');
export const LEPTOS_APP_DIST = process.env.LEPTOS_APP_DIST || path.join(REPO_ROOT, 'target/leptos-app/dist');

export async function startLeptosStack() {
  for (const f of [LEPTOS_APP_BIN, path.join(LEPTOS_APP_DIST, 'app_bg.wasm')]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`cargo xtask leptos-app\` first`);
  }
  const [consentryPort, mcpPort, appPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), 'consentry-e2e-leptos-'));
  const origin = `http://127.0.0.1:${appPort}`;
  const consentryUrl = `http://127.0.0.1:${consentryPort}`;
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  const procs = [];
  const stop = async () => {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const devArgs = ['dev', '--dir', dir, '--port', String(consentryPort), '--app-origin', origin, '--resource', mcpUrl];
    const consentry = startGroup(CONSENTRY_BIN, devArgs, { env: { CONSENTRY_LOG: 'warn' } });
    procs.push(consentry);
    await waitFor(`${consentryUrl}/healthz`, consentry);
    const introspectionSecret = readFileSync(path.join(dir, 'introspection_secret'), 'utf8').trim();

    const mcp = startGroup(MCP_SERVER_BIN, ['--listen', `127.0.0.1:${mcpPort}`, '--issuer', consentryUrl, '--resource', mcpUrl,
      `--introspection-secret=${introspectionSecret}`], { env: { MCP_LOG: 'warn' } });
    procs.push(mcp);
    await waitFor(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`, mcp);

    const app = startGroup(LEPTOS_APP_BIN, ['--listen', `127.0.0.1:${appPort}`, '--dist', LEPTOS_APP_DIST], {
      env: {
        APP_LOG: 'warn',
        CONSENTRY_URL: consentryUrl,
        CONSENTRY_TAT_PRIVATE_KEY_FILE: path.join(dir, 'tat_private.pem'),
      },
    });
    procs.push(app);
    await waitFor(`${origin}/login`, app);
  } catch (e) {
    const output = procs.map((p) => p.output()).join('\n');
    await stop();
    throw new Error(`${e.message}\n${output}`);
  }
  return {
    dir, origin, consentryUrl, mcpUrl,
    output: () => procs.map((p) => p.output()).join('\n'),
    stop,
  };
}
