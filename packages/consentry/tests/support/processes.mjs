// Child processes in process groups of their own (detached = setsid), so that stopping one also
// stops what it started (`next start` leaves `next-server` running when only it is killed).
import { spawn } from 'node:child_process';

const groups = new Set();

/** Keep the last `limit` characters of a stream, to show when something fails. */
function tail(stream, limit = 20_000) {
  const buf = { text: '' };
  stream?.setEncoding('utf8');
  stream?.on('data', (d) => {
    buf.text = (buf.text + d).slice(-limit);
  });
  return buf;
}

/** Start `command` in its own process group. `.stop()` ends the group; `.output()` is its tail. */
export function startGroup(command, args, { cwd, env = {} } = {}) {
  const child = spawn(command, args, {
    cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const out = tail(child.stdout);
  const err = tail(child.stderr);
  let running = true;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  }).then((r) => {
    running = false;
    return r;
  });
  const proc = {
    describe: `${command} ${args.join(' ')}`,
    exited,
    get running() {
      return running;
    },
    output: () => `--- stdout of ${command} ${args.join(' ')}\n${out.text}\n--- stderr\n${err.text}`,
    async stop() {
      groups.delete(proc);
      if (child.pid !== undefined) {
        signalGroup(child.pid, 'SIGTERM');
        const done = await Promise.race([exited, new Promise((r) => setTimeout(() => r(null), 5_000))]);
        // The group leader may be gone while a child of it is not: always sweep the group.
        signalGroup(child.pid, 'SIGKILL');
        if (done === null) await exited;
      }
    },
  };
  groups.add(proc);
  return proc;
}

function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

/** Run to completion in a group of its own; reject with its output if it fails. */
export async function runGroup(command, args, options) {
  const proc = startGroup(command, args, options);
  const { code, signal, error } = await proc.exited;
  await proc.stop();
  if (error || code !== 0) {
    throw new Error(`\`${proc.describe}\` failed (${error?.message ?? `exit ${code ?? signal}`})\n${proc.output()}`);
  }
  return proc.output();
}

/** Stop every group still running (after a failed or timed-out test). */
export async function stopAllGroups() {
  await Promise.all([...groups].map((p) => p.stop()));
}
