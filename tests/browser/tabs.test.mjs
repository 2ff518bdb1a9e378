// herald.js across many tabs and behind a proxy that buffers, against the real server:
//
// - 12 tabs of the app (one browser context, one user, plain HTTP/1.1, where a browser keeps
//   at most six connections per host) share ONE stream: the server holds one, every tab sees
//   what any other does, REST works in all of them; when the leader tab closes while changes
//   are made, every other tab still gets every change exactly once, in order;
// - 8 tabs without `navigator.locks` (as over plain HTTP from a LAN address) share ONE stream
//   through herald.js's SharedWorker: every tab sees what any other does, REST works in all,
//   closing tabs (the first included) loses nothing for the others, and a stream no tab uses
//   any more is closed;
// - a page without `navigator.locks` and without `SharedWorker` keeps a stream of its own
//   and works;
// - a follower tab knows the leader's resume point before any event (a Mercure stream's
//   `Last-Event-ID` header), so an update published while the leader hands over is not lost;
// - a tab back from the back/forward cache that did not hold the stream (a follower, a tab of
//   the worker whose stream moved on) dispatches `reset` and goes on;
// - behind a proxy that holds every response until it ends, herald.js long-polls (and the
//   page is live), and goes back to streaming once the proxy stops buffering.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiLogin, launchBrowser, mintToken, startHerald } from './harness.mjs';

const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
const DANA = { email: 'dana@example.com', name: 'Dana Reyes', password: 'dana-password-12' };
const ENV = { HERALD_ADMIN_EMAIL: ADMIN.email, HERALD_ADMIN_PASSWORD: ADMIN.password };
const TABS = 12;
/** How long a UI step may take. */
const STEP_MS = 15_000;

let herald;
let browser;
let dana;
let workspace;
const errors = [];

before(async () => {
  herald = await startHerald({ env: ENV });
  const admin = await apiLogin(herald.url, ADMIN.email, ADMIN.password);
  const res = await admin.request('POST', '/api/users', { ...DANA, role: 'member' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  dana = await apiLogin(herald.url, DANA.email, DANA.password);
  const ws = await dana.request('POST', '/api/workspaces', { name: 'Many tabs' });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  workspace = ws.body;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await herald?.stop();
});

/** Opens a page that records its errors. */
async function newPage(context) {
  const page = await context.newPage();
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  return page;
}

/** Signs in through the form on `page` (at `base`) and waits until the app is live. */
async function signInForm(page, base) {
  await page.goto(base + '/');
  await page.getByTestId('login-email').fill(DANA.email);
  await page.getByTestId('login-password').fill(DANA.password);
  await page.getByTestId('login-submit').click();
  await appReady(page);
}

async function appReady(page) {
  await page.getByTestId('user-name').filter({ hasText: DANA.name }).waitFor();
  await page.getByTestId('todo-input').waitFor({ state: 'visible' });
  await waitPill(page, 'connected');
}

const waitPill = (page, word, timeout = STEP_MS) =>
  page.waitForFunction((w) => document.querySelector('[data-testid="status"]')?.textContent.trim() === w, word, { timeout });

const todoItem = (page, title) =>
  page.getByTestId('todo-item').filter({ has: page.getByTestId('todo-title').getByText(title, { exact: true }) });

/** The value of `herald_streams_open` on the server's /metrics. */
async function streamsOpen() {
  const text = await (await fetch(`${herald.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('herald_streams_open '));
  assert.ok(line, `no herald_streams_open in /metrics:\n${text}`);
  return Number(line.split(' ')[1]);
}

/** Polls `probe` until it returns true or `timeout` ms passed; returns its last answer. */
async function eventually(probe, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const ok = await probe();
    if (ok || Date.now() > deadline) return ok;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts recording the titles of `todos:created` in `page`, over herald.js with `options`. */
async function record(page, url, options = {}) {
  await page.evaluate(
    async ([streamUrl, opts]) => {
      const { connect } = await import('/herald.js');
      const r = { titles: [], statuses: [], connected: 0 };
      window.__r = r;
      r.stream = connect(streamUrl, { ...opts, onStatus: (s) => r.statuses.push(s) });
      r.stream.on('todos:created', (event) => r.titles.push(event.data.title));
      r.stream.on('connected', () => r.connected++);
    },
    [url, options],
  );
}

const recorded = (page) =>
  page.evaluate(() => ({
    titles: window.__r.titles,
    connected: window.__r.connected,
    transport: window.__r.stream.transport,
    status: window.__r.stream.status,
  }));


/** Each page adds a todo through the form (so REST works in every tab); every page then
 * shows every one of them exactly once. */
async function everyTabAddsATodo(pages, prefix) {
  const titles = [];
  for (const [i, page] of pages.entries()) {
    const title = `${prefix} ${i + 1} todo`;
    titles.push(title);
    await page.getByTestId('todo-input').fill(title);
    await page.getByTestId('todo-add').click();
  }
  for (const page of pages) {
    for (const title of titles) await todoItem(page, title).waitFor();
  }
  for (const page of pages) {
    for (const title of titles) assert.equal(await todoItem(page, title).count(), 1, `${title} twice`);
  }
}
test('12 tabs of one user share one stream; closing the leader loses nothing', { timeout: 240_000 }, async (t) => {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  try {
    const pages = [await newPage(context)];
    await signInForm(pages[0], herald.url);
    for (let i = 1; i < TABS; i++) {
      const page = await newPage(context);
      await page.goto(herald.url + '/');
      pages.push(page);
    }
    // Every tab loads (a seventh tab would not if each held a stream).
    for (const page of pages) await appReady(page);

    assert.equal(await eventually(async () => (await streamsOpen()) === 1), true, `the server holds ${await streamsOpen()} streams`);
    const roles = await Promise.all(pages.map((p) => p.getByTestId('status').getAttribute('data-role')));
    assert.equal(roles.filter((r) => r === 'leader').length, 1, `roles: ${roles}`);
    assert.equal(roles.filter((r) => r === 'follower').length, TABS - 1, `roles: ${roles}`);

    // Each tab adds a todo through the form (REST works in every tab); every tab shows all 12.
    await everyTabAddsATodo(pages, 'Tab');
    assert.equal(await streamsOpen(), 1);

    // A recorder of herald.js's own in every tab, on the same URL: it joins the shared stream.
    for (const page of pages) await record(page, '/api/events?presence=true');
    for (const page of pages) await page.waitForFunction(() => window.__r.stream.status === 'connected');
    assert.equal(await streamsOpen(), 1, 'the recorders opened streams of their own');

    // Changes through the API; the leader tab closes in the middle of them.
    const leaderIndex = roles.indexOf('leader');
    const leader = pages[leaderIndex];
    const rest = pages.filter((p) => p !== leader);
    // The writer goes on until ten changes were made after the leader closed.
    const changes = [];
    let leaderClosed = false;
    const writer = (async () => {
      for (let after = 0; after < 10; ) {
        const title = `Change ${String(changes.length + 1).padStart(3, '0')}`;
        if (changes.length > 300) throw new Error('the leader tab never closed');
        changes.push(title);
        const res = await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        if (leaderClosed) after++;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await rest[0].waitForFunction(() => window.__r.titles.length >= 5);
    await leader.close();
    leaderClosed = true;
    await writer;

    for (const page of rest) {
      await page.waitForFunction((n) => window.__r.titles.length >= n, changes.length, { timeout: 30_000 });
    }
    // Anything late or doubled would show up now.
    await rest[0].waitForTimeout(500);
    for (const [i, page] of rest.entries()) {
      const r = await recorded(page);
      assert.deepEqual(r.titles, changes, `tab ${i}: every change exactly once, in order`);
      assert.equal(r.status, 'connected');
      for (const title of changes) assert.equal(await todoItem(page, title).count(), 1, `tab ${i}: ${title}`);
    }
    const newRoles = await Promise.all(rest.map((p) => p.getByTestId('status').getAttribute('data-role')));
    assert.equal(newRoles.filter((r) => r === 'leader').length, 1, `roles after the leader closed: ${newRoles}`);
    assert.equal(await eventually(async () => (await streamsOpen()) === 1), true, `the server holds ${await streamsOpen()} streams`);
    t.diagnostic(`tab ${leaderIndex + 1} led; ${changes.length} changes, the last 10 after it closed; one of the other ${rest.length} took over`);

    // A page without navigator.locks and without SharedWorker keeps a stream of its own, and
    // it works.
    const lonely = await newPage(context);
    await lonely.addInitScript(() => {
      delete Navigator.prototype.locks;
      delete globalThis.SharedWorker;
    });
    await lonely.goto(herald.url + '/');
    await appReady(lonely);
    assert.equal(await lonely.getByTestId('status').getAttribute('data-role'), 'own');
    assert.equal(await eventually(async () => (await streamsOpen()) === 2), true, `the server holds ${await streamsOpen()} streams`);
    const title = 'Seen by the tab without locks or SharedWorker';
    const res = await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
    assert.equal(res.status, 201);
    await todoItem(lonely, title).waitFor();
    await todoItem(rest[0], title).waitFor();
  } finally {
    await context.close();
  }
});

test('8 tabs without navigator.locks share one stream through a SharedWorker; closing tabs loses nothing', { timeout: 240_000 }, async (t) => {
  const WORKER_TABS = 8;
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  // Every page of this context lacks Web Locks, as a page served over plain HTTP from a LAN
  // address does. (page.route does not see a SharedWorker's requests: nothing here uses it.)
  await context.addInitScript(() => {
    delete Navigator.prototype.locks;
  });
  try {
    // Whatever the previous test left open is gone first.
    assert.equal(await eventually(async () => (await streamsOpen()) === 0), true, `the server holds ${await streamsOpen()} streams`);
    const pages = [await newPage(context)];
    await signInForm(pages[0], herald.url);
    for (let i = 1; i < WORKER_TABS; i++) {
      const page = await newPage(context);
      await page.goto(herald.url + '/');
      pages.push(page);
    }
    // Every tab loads (a seventh would not if each held a stream over HTTP/1.1).
    for (const page of pages) await appReady(page);
    assert.equal(await pages[0].evaluate(() => 'locks' in navigator), false);

    assert.equal(await eventually(async () => (await streamsOpen()) === 1), true, `the server holds ${await streamsOpen()} streams`);
    const roles = await Promise.all(pages.map((p) => p.getByTestId('status').getAttribute('data-role')));
    assert.deepEqual(roles, Array(WORKER_TABS).fill('worker'));

    // Each tab adds a todo through the form (REST works in every tab); every tab shows all.
    await everyTabAddsATodo(pages, 'Worker tab');
    assert.equal(await streamsOpen(), 1);

    // A recorder in every tab on the app's URL joins the worker's stream.
    for (const page of pages) await record(page, '/api/events?presence=true');
    for (const page of pages) await page.waitForFunction(() => window.__r.stream.status === 'connected');
    assert.equal(await streamsOpen(), 1, 'the recorders opened streams of their own');
    assert.equal(await pages[1].evaluate(() => window.__r.stream.role), 'worker');

    // Another URL is another stream in the worker, closed once its only tab closes it.
    await pages[1].evaluate(async () => {
      const { connect } = await import('/herald.js');
      window.__other = connect('/api/events?types=todos');
    });
    await pages[1].waitForFunction(() => window.__other.status === 'connected');
    assert.equal(await eventually(async () => (await streamsOpen()) === 2), true, `the server holds ${await streamsOpen()} streams`);
    await pages[1].evaluate(() => window.__other.close());
    assert.equal(await eventually(async () => (await streamsOpen()) === 1), true, `the server holds ${await streamsOpen()} streams`);

    // Changes through the API; the first tab (which started the worker) and another close in
    // the middle of them.
    const closing = [pages[0], pages[3]];
    const rest = pages.filter((p) => !closing.includes(p));
    const changes = [];
    let closed = false;
    const writer = (async () => {
      for (let after = 0; after < 10; ) {
        const title = `Worker change ${String(changes.length + 1).padStart(3, '0')}`;
        if (changes.length > 300) throw new Error('the tabs never closed');
        changes.push(title);
        const res = await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        if (closed) after++;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await rest[0].waitForFunction(() => window.__r.titles.length >= 5);
    for (const page of closing) await page.close();
    closed = true;
    await writer;

    for (const page of rest) {
      await page.waitForFunction((n) => window.__r.titles.length >= n, changes.length, { timeout: 30_000 });
    }
    // Anything late or doubled would show up now.
    await rest[0].waitForTimeout(500);
    for (const [i, page] of rest.entries()) {
      const r = await recorded(page);
      assert.deepEqual(r.titles, changes, `tab ${i}: every change exactly once, in order`);
      assert.equal(r.status, 'connected');
      for (const title of changes) assert.equal(await todoItem(page, title).count(), 1, `tab ${i}: ${title}`);
    }
    assert.equal(await streamsOpen(), 1);
    t.diagnostic(`${changes.length} changes, the last 10 after 2 of ${WORKER_TABS} tabs closed; ${rest.length} tabs got all`);
  } finally {
    await context.close();
  }
});

const HUB_TOPIC = 'https://example.com/tabs/handover';

/** Publishes `data` on HUB_TOPIC; returns the update's id. */
async function publish(data) {
  const res = await fetch(`${herald.url}/.well-known/mercure`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${mintToken({ publish: [HUB_TOPIC] })}` },
    body: new URLSearchParams({ topic: HUB_TOPIC, data }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.text();
}

/** Opens a page of the server's origin with herald.js connected to HUB_TOPIC as `window.__h`. */
async function hubTab(context) {
  const page = await newPage(context);
  await page.goto(`${herald.url}/healthz`);
  await connectHub(page);
  return page;
}

/** The one URL of HUB_TOPIC (tabs share a stream per URL), made on first use. */
let hubUrl = null;

async function connectHub(page) {
  hubUrl ??= `/.well-known/mercure?topic=${encodeURIComponent(HUB_TOPIC)}&authorization=${mintToken({ subscribe: [HUB_TOPIC] })}`;
  const url = hubUrl;
  await page.evaluate(async (streamUrl) => {
    const { connect } = await import('/herald.js');
    const h = { got: [], resets: [] };
    window.__h = h;
    h.stream = connect(streamUrl);
    h.stream.on('message', (data, event) => h.got.push(event.data));
    h.stream.on('reset', (data) => h.resets.push(data));
  }, url);
}

const hub = (page) =>
  page.evaluate(() => ({
    got: window.__h.got,
    resets: window.__h.resets,
    role: window.__h.stream.role,
    status: window.__h.stream.status,
    lastEventId: window.__h.stream.lastEventId,
  }));

/** Waits until `page` received `data` over HUB_TOPIC. */
const hubGot = (page, data) => page.waitForFunction((d) => window.__h.got.includes(d), data);

/** What the page does when the browser puts it in the back/forward cache and restores it. */
const frozen = (page) => page.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true })));
const restored = (page) => page.evaluate(() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true })));

test('a follower knows the leader’s position before any event; back from the cache it reloads', { timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  try {
    const a = await hubTab(context);
    await a.waitForFunction(() => window.__h.stream.role === 'leader' && window.__h.stream.lastEventId !== null);
    const head = (await hub(a)).lastEventId;
    // The next leader's stream request is held back, so an update published during the
    // handover is in the log before it subscribes: only its resume id can bring it.
    const b = await newPage(context);
    await b.route('**/.well-known/mercure?**', async (route) => {
      await sleep(1_000);
      await route.continue();
    });
    await b.goto(`${herald.url}/healthz`);
    await connectHub(b);
    await b.waitForFunction((id) => window.__h.stream.role === 'follower' && window.__h.stream.lastEventId === id, head);

    await a.evaluate(() => window.__h.stream.close());
    await publish('during the handover');
    await hubGot(b, 'during the handover');
    assert.equal((await hub(b)).role, 'leader');

    // A follower back from the back/forward cache missed broadcasts: it reloads, then goes on.
    await connectHub(a);
    await a.waitForFunction(() => window.__h.stream.role === 'follower' && window.__h.stream.status === 'connected');
    await restored(a);
    await publish('after the cache');
    await hubGot(a, 'after the cache');
    const back = await hub(a);
    assert.deepEqual(back.resets, [{ reason: 'resumed-from-cache' }]);
    assert.deepEqual(back.got, ['after the cache']);
    assert.equal(back.role, 'follower');
    assert.equal(back.lastEventId, (await hub(b)).lastEventId);
  } finally {
    await context.close();
  }
});

test('a tab of the worker back from the cache reloads if the stream moved on, and only then', { timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  await context.addInitScript(() => {
    delete Navigator.prototype.locks;
  });
  try {
    const a = await hubTab(context);
    const b = await hubTab(context);
    for (const page of [a, b]) await page.waitForFunction(() => window.__h.stream.role === 'worker' && window.__h.stream.status === 'connected');
    await publish('one');
    for (const page of [a, b]) await hubGot(page, 'one');

    // Frozen and restored with nothing published meanwhile: nothing to reload.
    await frozen(b);
    await restored(b);
    await publish('two');
    await hubGot(b, 'two');
    assert.deepEqual((await hub(b)).resets, []);

    // Frozen while an update goes by: restored, it reloads and takes the worker's position.
    await frozen(b);
    const three = await publish('three');
    await hubGot(a, 'three');
    await restored(b);
    await b.waitForFunction(() => window.__h.resets.length > 0);
    assert.equal((await hub(b)).lastEventId, three, 'the worker’s position');
    await publish('four');
    await hubGot(b, 'four');
    const back = await hub(b);
    assert.deepEqual(back.resets, [{ reason: 'resumed-from-cache' }]);
    assert.deepEqual(back.got, ['one', 'two', 'four']);
    assert.deepEqual((await hub(a)).got, ['one', 'two', 'three', 'four']);
  } finally {
    await context.close();
  }
});

/**
 * A proxy in front of herald that, while `buffering`, passes each response's head at once and
 * holds its body until the upstream response ends, as nginx with `proxy_buffering` does: REST
 * works, a stream delivers nothing. Otherwise it passes bytes through as they come. (A proxy
 * that holds the head too is in transport.test.mjs.)
 */
async function startBufferingProxy(upstream) {
  const target = new URL(upstream);
  const proxy = { buffering: true, server: null, url: null };
  const sockets = new Set();
  proxy.server = http.createServer((req, res) => {
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (!proxy.buffering) {
          res.writeHead(upRes.statusCode, upRes.headers);
          upRes.pipe(res);
          return;
        }
        // The head at once, as nginx sends it; the body when it is complete.
        res.writeHead(upRes.statusCode, upRes.headers);
        res.flushHeaders();
        const chunks = [];
        upRes.on('data', (chunk) => chunks.push(chunk));
        upRes.on('end', () => res.end(Buffer.concat(chunks)));
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  proxy.server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  proxy.server.listen(0, '127.0.0.1');
  await once(proxy.server, 'listening');
  proxy.url = `http://127.0.0.1:${proxy.server.address().port}`;
  proxy.close = async () => {
    for (const socket of sockets) socket.destroy();
    proxy.server.close();
  };
  return proxy;
}

test('behind a buffering proxy herald.js long-polls, and streams again once it can', { timeout: 180_000 }, async () => {
  const proxy = await startBufferingProxy(herald.url);
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  try {
    const page = await newPage(context);
    await page.goto(proxy.url + '/');
    await page.getByTestId('login-email').fill(DANA.email);
    await page.getByTestId('login-password').fill(DANA.password);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('user-name').filter({ hasText: DANA.name }).waitFor();

    // herald.js with short timeouts, on a stream of the page's own; and the app's own stream
    // (8 s to the first byte by default). Both fall back to polling.
    await record(page, '/api/events?types=todos', { share: false, firstByteTimeout: 1_000, streamRetryInterval: 3_000 });
    await page.waitForFunction(() => window.__r.stream.transport === 'poll', null, { timeout: 10_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.dataset.transport === 'poll', null, { timeout: 20_000 });

    // A poll waits for an event (up to 25 s): a change answers both at once.
    const title = 'Through the buffering proxy';
    const res = await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
    assert.equal(res.status, 201);
    await page.waitForFunction((t) => window.__r.titles.includes(t), title);
    await todoItem(page, title).waitFor();
    await waitPill(page, 'connected');
    // Every poll answer starts with `connected`; it is dispatched once, when polls began to
    // succeed, not with every answer.
    const second = 'Polled again';
    assert.equal((await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title: second })).status, 201);
    await page.waitForFunction((t) => window.__r.titles.includes(t), second);
    const polled = await recorded(page);
    assert.equal(polled.transport, 'poll');
    assert.equal(polled.status, 'connected');
    assert.equal(polled.connected, 1, 'connected dispatched with every poll answer');

    // The proxy stops buffering: the next try of the stream delivers, and herald.js keeps it.
    proxy.buffering = false;
    await page.waitForFunction(() => window.__r.stream.transport === 'stream', null, { timeout: 20_000 });
    const after = 'Streamed again';
    const res2 = await dana.request('POST', `/api/workspaces/${workspace.id}/todos`, { title: after });
    assert.equal(res2.status, 201);
    await page.waitForFunction((t) => window.__r.titles.includes(t), after);
    const r = await recorded(page);
    assert.deepEqual(r.titles, [title, second, after], 'each once, in order');
    assert.equal(r.status, 'connected');
  } finally {
    await context.close();
    await proxy.close();
  }
});

test('no page threw or logged an error', () => {
  const real = errors.filter((e) => !/Failed to load resource/.test(e));
  assert.deepEqual(real, []);
});
