// Snapshot, then stream, in the web app: the UI loads, then opens its stream after the
// position its load answered with (`Herald-Position`, `/api/events?after=`), so a change made
// between the load and the subscription shows, once, with no second load.
//
// - The UI's stream request is held (playwright's page.route) until the UI's reads are done and
//   another client has added a todo; the page then shows that todo exactly once, and loaded
//   the todos once.
// - A second tab that joins the first tab's stream after its own load (the shared stream was
//   already running and cannot replay to it) reloads, and shows a rename made in between.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiLogin, launchBrowser, startHerald } from './harness.mjs';

const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
const ALICE = { email: 'alice@example.com', name: 'Alice Martin', password: 'alice-password-1' };
const ENV = { HERALD_ADMIN_EMAIL: ADMIN.email, HERALD_ADMIN_PASSWORD: ADMIN.password };
/** How long a UI step may take (a click, an element showing up). */
const STEP_MS = 10_000;

let herald;
let browser;
let alice; // API client, signed in
let workspace;

before(async () => {
  herald = await startHerald({ env: ENV });
  const admin = await apiLogin(herald.url, ADMIN.email, ADMIN.password);
  const res = await admin.request('POST', '/api/users', { ...ALICE, role: 'member' });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  alice = await apiLogin(herald.url, ALICE.email, ALICE.password);
  const ws = await alice.request('POST', '/api/workspaces', { name: 'Snapshot' });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  workspace = ws.body;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await herald?.stop();
});

/** Adds a todo through the API as Alice and returns it. */
async function apiTodo(title) {
  const res = await alice.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

const todoItem = (page, title) =>
  page.getByTestId('todo-item').filter({ has: page.getByTestId('todo-title').getByText(title, { exact: true }) });

async function waitStatus(page, word) {
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="status"]')?.textContent.trim() === expected,
    word,
    { timeout: STEP_MS },
  );
}

/**
 * Collects a page's errors; not the browser's own line for a failed request (the 401 of
 * `/api/me` before signing in).
 */
function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) errors.push(`console: ${msg.text()}`);
  });
  return errors;
}

async function signIn(page) {
  await page.goto(herald.url + '/');
  await page.getByTestId('login-email').fill(ALICE.email);
  await page.getByTestId('login-password').fill(ALICE.password);
  await page.getByTestId('login-submit').click();
}

test('a todo added between the UI’s load and its subscription shows once, with no second load', { timeout: 60_000 }, async () => {
  const before = await apiTodo('Made before the load');
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const errors = watchErrors(page);
  const todosPath = `/api/workspaces/${workspace.id}/todos`;
  let todoLoads = 0;
  page.on('request', (req) => {
    if (req.method() === 'GET' && new URL(req.url()).pathname === todosPath) todoLoads += 1;
  });

  // Hold the stream's first request until the UI's todos are loaded and another client has
  // added one more.
  const eventUrls = [];
  let release;
  const released = new Promise((resolve) => (release = resolve));
  await page.route(
    (url) => url.pathname === '/api/events',
    async (route) => {
      eventUrls.push(route.request().url());
      await released;
      await route.continue();
    },
  );
  const todosLoaded = page.waitForResponse((res) => new URL(res.url()).pathname === todosPath && res.ok());
  await signIn(page);
  await todosLoaded;
  await todoItem(page, before.title).waitFor();
  const between = await apiTodo('Made between the load and the stream');
  release();

  await waitStatus(page, 'connected');
  await todoItem(page, between.title).waitFor();
  assert.equal(eventUrls.length >= 1, true);
  const position = new URL(eventUrls[0]).searchParams.get('after');
  assert.match(position ?? '', /^[0-9]+$/, `the stream starts after a position: ${eventUrls[0]}`);

  // Live from here on; each todo shown once.
  const live = await apiTodo('Made once the stream is live');
  await todoItem(page, live.title).waitFor();
  for (const todo of [before, between, live]) {
    assert.equal(await todoItem(page, todo.title).count(), 1, `one copy of “${todo.title}”`);
  }
  assert.equal(todoLoads, 1, 'the todos were loaded once: the stream caught up, not a reload');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a tab that joins a running shared stream after its load reloads, and misses nothing', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  const first = await context.newPage();
  const errors = watchErrors(first);
  await signIn(first);
  await waitStatus(first, 'connected');
  await first.getByTestId('workspace-name').filter({ hasText: workspace.name }).waitFor();

  // The second tab loads the workspace list; before it gets the answer (and joins the first
  // tab's stream), the workspace is renamed, and the first tab's stream delivers that.
  const second = await context.newPage();
  errors.push(...watchErrors(second));
  const renamed = 'Snapshot (renamed)';
  let held = true;
  await second.route(
    (url) => url.pathname === '/api/workspaces',
    async (route) => {
      if (!held || route.request().method() !== 'GET') return route.continue();
      held = false;
      const response = await route.fetch();
      const res = await alice.request('PATCH', `/api/workspaces/${workspace.id}`, { name: renamed });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await first.getByTestId('workspace-name').filter({ hasText: renamed }).waitFor();
      await route.fulfill({ response });
    },
  );
  await second.goto(herald.url + '/');
  await waitStatus(second, 'connected');
  assert.equal(held, false, 'the second tab loaded the list through the held route');
  await second.getByTestId('workspace-name').filter({ hasText: renamed }).waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});
