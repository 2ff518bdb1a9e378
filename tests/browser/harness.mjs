// Helpers shared by the browser tests: start the real Herald binary, launch Debian's Chromium,
// and mint the JWTs the hub accepts.
//
// The binary comes from HERALD_BIN (an absolute path; `cargo xtask test` sets it after building).
// Every process and temporary directory made here is also cleaned up when the test file's
// process exits, so a failed `after()` hook cannot leak a server or a data directory.

import { execFile, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import https from 'node:https';
import { promisify } from 'node:util';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

/** The HS256 key every Herald started here uses (HERALD_JWT_KEY); 32+ characters. */
export const TEST_JWT_KEY = 'herald-browser-tests-hs256-key-0123456789abcdef';

/** Debian's Chromium; the tests never download a browser. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** How long a starting server may take to answer GET /healthz with 200. */
const STARTUP_TIMEOUT_MS = 15_000;
/** How often GET /healthz is tried while the server starts. */
const HEALTH_POLL_MS = 50;
/** How long stop() waits after SIGTERM before it sends SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** Children still running and temp dirs still present, for the exit-time safety net. */
const liveChildren = new Set();
const tempDirs = new Set();

process.on('exit', () => {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const dir of tempDirs) {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Makes a temporary directory that is removed when this process exits. */
export async function makeTempDir(prefix = 'herald-test-') {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by makeTempDir now rather than at exit. */
export async function removeTempDir(dir) {
  tempDirs.delete(dir);
  await rm(dir, { recursive: true, force: true });
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, made with openssl in a temporary
 * directory: `{ cert, key }`, the paths of the PEM files.
 */
export async function selfSignedCert() {
  const dir = await makeTempDir('herald-tls-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', key, '-out', cert,
  ]);
  return { cert, key };
}

/** GET `url` and resolve with its status; over HTTPS any certificate is accepted. */
function getStatus(url) {
  if (!url.startsWith('https:')) {
    return fetch(url, { signal: AbortSignal.timeout(1_000) }).then(async (res) => {
      await res.arrayBuffer();
      return res.status;
    });
  }
  return new Promise((resolve, reject) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 1_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * Starts `$HERALD_BIN serve --listen 127.0.0.1:<port> --data-dir <dir> ...args` and waits until
 * GET /healthz answers 200.
 *
 * Pass `dataDir` to reuse the directory of a server stopped earlier (for restart and crash
 * tests); otherwise a fresh temporary one is made. Pass `port` to listen on that port (a
 * restart on the port of the server it replaces, so clients reconnect to the same URL);
 * otherwise a free one is picked. `env` is merged over the inherited
 * environment, after HERALD_JWT_KEY, so a test can override the key. `tls` (`{ cert, key }`,
 * see selfSignedCert) serves HTTPS: `url` is then `https://…`.
 *
 * Returns `{ url, port, dataDir, proc, stdout, stderr, stop(), kill9() }`; `stdout` and
 * `stderr` are getters over everything the process printed so far.
 */
export async function startHerald({ args = [], env = {}, dataDir, port: requestedPort, tls } = {}) {
  const bin = process.env.HERALD_BIN;
  if (!bin) {
    throw new Error(
      'HERALD_BIN is not set: run the browser tests with `cargo xtask test`, ' +
        'or set HERALD_BIN to the absolute path of a built herald binary',
    );
  }
  const port = requestedPort ?? (await freePort());
  const dir = dataDir ?? (await makeTempDir('herald-data-'));
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : [];
  const argv = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, ...tlsArgs, ...args];

  const proc = spawn(bin, argv, {
    env: { ...process.env, HERALD_JWT_KEY: TEST_JWT_KEY, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(proc);

  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));

  let exitInfo = null;
  let spawnError = null;
  const exited = new Promise((resolve) => {
    proc.on('error', (err) => {
      spawnError = err;
      liveChildren.delete(proc);
      resolve();
    });
    proc.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      liveChildren.delete(proc);
      resolve();
    });
  });
  const describe = () =>
    `herald ${argv.join(' ')}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (spawnError) {
      throw new Error(`could not spawn ${bin}: ${spawnError.message}`);
    }
    if (exitInfo) {
      const how = exitInfo.signal ? `signal ${exitInfo.signal}` : `code ${exitInfo.code}`;
      throw new Error(`herald exited with ${how} before /healthz answered\n${describe()}`);
    }
    try {
      if ((await getStatus(`${url}/healthz`)) === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(
        `herald did not answer 200 on ${url}/healthz within ${STARTUP_TIMEOUT_MS} ms\n${describe()}`,
      );
    }
    await sleep(HEALTH_POLL_MS);
  }

  const running = () => exitInfo === null && spawnError === null;
  return {
    url,
    port,
    dataDir: dir,
    proc,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    /** SIGTERM, then SIGKILL after 5 s; resolves with `{ code, signal }` once it exited. */
    async stop() {
      if (running()) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      return exitInfo;
    },
    /** SIGKILL (a crash); resolves once it exited. The data dir is kept for a restart. */
    async kill9() {
      if (running()) {
        proc.kill('SIGKILL');
        await exited;
      }
      return exitInfo;
    },
  };
}

/** Launches Debian's headless Chromium with nothing that reaches the network by itself. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-gpu',
      '--disable-quic',
      '--disable-sync',
    ],
  });
}

const base64url = (value) => Buffer.from(value).toString('base64url');

/**
 * An HS256 JWT with the Mercure claims `{ mercure: { publish, subscribe }, exp }`, signed with
 * `key` (TEST_JWT_KEY by default). `expiresInSec` may be negative for an expired token.
 */
export function mintToken({ publish = [], subscribe = [], key = TEST_JWT_KEY, expiresInSec = 3600 } = {}) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(
    JSON.stringify({
      mercure: { publish, subscribe },
      exp: Math.floor(Date.now() / 1000) + expiresInSec,
    }),
  );
  const signature = createHmac('sha256', key).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/**
 * A client of the app's JSON API signed in as one user: `POST /api/login` with `email` and
 * `password`, then every request carries the `herald_session` cookie it set.
 *
 * Returns `{ user, cookie, request(method, path, body?) }`; `request` resolves with
 * `{ status, body }` (`body` parsed from JSON when it is JSON) and never throws on a status.
 * Throws when the login itself is not answered with 200 and a cookie.
 */
export async function apiLogin(baseUrl, email, password) {
  const request = async (method, path, body, cookie) => {
    const headers = { accept: 'application/json' };
    if (cookie) headers.cookie = cookie;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: keep the text.
    }
    return { status: res.status, body: parsed, setCookie: res.headers.getSetCookie() };
  };

  const login = await request('POST', '/api/login', { email, password });
  const session = login.setCookie.map((c) => c.split(';')[0]).find((c) => c.startsWith('herald_session='));
  if (login.status !== 200 || !session) {
    throw new Error(`login as ${email} answered ${login.status} ${JSON.stringify(login.body)} (cookie: ${session ?? 'none'})`);
  }
  const client = {
    user: login.body,
    cookie: session,
    async request(method, path, body) {
      const { status, body: answer } = await request(method, path, body, client.cookie);
      return { status, body: answer };
    },
  };
  return client;
}
