// The web app as its users see it: two people, Alice (owner of a workspace) and Bob (a member),
// each signed in through the UI in their own browser context, and everything they do reaching
// the other live over ONE event stream per page (`/herald.js` on `/api/events`):
//
// - a todo Alice adds shows on Bob's page within 1 s, with no reload; toggles, renames and
//   deletions travel the same way, both ways;
// - a channel deleted while Bob has it selected moves Bob to #general;
// - Alice's private note never reaches Bob's page, nor a raw stream Bob opens himself;
// - a notification sent to Bob shows a toast on Bob's page only;
// - the server restarts (same port, same data directory) while both pages are open, a todo is
//   added right away, and both pages show it: herald.js reconnects and resumes by id;
// - the page is usable at a phone's width (375 px) without horizontal scrolling;
// - Bob is removed from the workspace: his page says so, and what Alice adds afterwards never
//   reaches it.
//
// The tests share one server and one pair of pages, in this order (the last one removes Bob).
// Screenshots of the signed-in app are saved to tests/browser/artifacts/app.png (desktop) and
// app-mobile.png (375 px).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { apiLogin, launchBrowser, startHerald } from './harness.mjs';

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
const ALICE = { email: 'alice@example.com', name: 'Alice Martin', password: 'alice-password-1' };
const BOB = { email: 'bob@example.com', name: 'Bob Stone', password: 'bob-password-12' };
const WORKSPACE = 'Launch team';
const ENV = { HERALD_ADMIN_EMAIL: ADMIN.email, HERALD_ADMIN_PASSWORD: ADMIN.password };
/** How long a UI step may take (a click, an element showing up). */
const STEP_MS = 10_000;
/** The "live" budget: a change made by one user shows on the other's page within this. */
const LIVE_MS = 1_000;

let herald;
let browser;
let admin; // API clients, signed in
let alice;
let bob;
let workspace;
const pages = {}; // { alice: { context, page, errors }, bob: ... }

before(async () => {
  herald = await startHerald({ env: ENV });
  admin = await apiLogin(herald.url, ADMIN.email, ADMIN.password);
  for (const person of [ALICE, BOB]) {
    const res = await admin.request('POST', '/api/users', { ...person, role: 'member' });
    assert.equal(res.status, 201, `creating ${person.email}: ${JSON.stringify(res.body)}`);
    person.id = res.body.id;
  }
  alice = await apiLogin(herald.url, ALICE.email, ALICE.password);
  bob = await apiLogin(herald.url, BOB.email, BOB.password);
  const ws = await alice.request('POST', '/api/workspaces', { name: WORKSPACE });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  workspace = ws.body;
  const member = await alice.request('POST', `/api/workspaces/${workspace.id}/members`, { userId: BOB.id, role: 'member' });
  assert.equal(member.status, 201, JSON.stringify(member.body));

  browser = await launchBrowser();
  pages.alice = await signIn(ALICE);
  pages.bob = await signIn(BOB);
});

let screenshotSaved = false;

/** Saves Alice's page (signed in, on the todos tab) to artifacts/app.png. */
async function saveScreenshot() {
  const page = pages.alice?.page;
  if (!page || page.isClosed()) return;
  await mkdir(ARTIFACTS, { recursive: true });
  await page.getByTestId('tab-todos').click({ timeout: 2_000 }).catch(() => {});
  await page.screenshot({ path: `${ARTIFACTS}app.png`, fullPage: true });
  screenshotSaved = true;
}

after(async () => {
  try {
    // Normally saved by the restart test, with todos on the page; otherwise whatever is there.
    if (!screenshotSaved) await saveScreenshot();
  } finally {
    for (const { context } of Object.values(pages)) await context?.close().catch(() => {});
    await browser?.close();
    await herald?.stop();
  }
});

/** A new browser context signed in as `person` through the sign-in form, on WORKSPACE. */
async function signIn(person, { viewport = { width: 1280, height: 800 }, workspace: wsName = WORKSPACE } = {}) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  await page.goto(herald.url + '/');
  await page.getByTestId('login-email').fill(person.email);
  await page.getByTestId('login-password').fill(person.password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('user-name').filter({ hasText: person.name }).waitFor();
  await waitStatus(page, 'connected');
  // On a narrow screen the workspace list is in the off-canvas sidebar: open it first.
  if (await page.getByTestId('sidebar-toggle').isVisible()) await page.getByTestId('sidebar-toggle').click();
  await page.getByTestId('workspace-item').filter({ hasText: wsName }).click();
  await page.getByTestId('workspace-name').filter({ hasText: wsName }).waitFor();
  // A marker that a reload would wipe out.
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  return { context, page, errors };
}

async function waitStatus(page, word, timeout = STEP_MS) {
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="status"]')?.textContent.trim() === expected,
    word,
    { timeout },
  );
}

const todoItem = (page, title) =>
  page.getByTestId('todo-item').filter({ has: page.getByTestId('todo-title').getByText(title, { exact: true }) });

/** Whether `text` occurs anywhere in the page's DOM, shown or hidden. */
const pageHasText = (page, text) => page.evaluate((t) => document.body.textContent.includes(t), text);

async function assertNotReloaded(page) {
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, 'the page was reloaded');
}

const unique = (what) => `${what} ${Math.random().toString(36).slice(2, 8)}`;

/** Adds a todo through the API as Alice and returns it. */
async function apiTodo(title) {
  const res = await alice.request('POST', `/api/workspaces/${workspace.id}/todos`, { title });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

test('a todo added by Alice shows on Bob’s page within 1 s, and changes travel both ways', { timeout: 60_000 }, async (t) => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await a.getByTestId('tab-todos').click();
  await b.getByTestId('tab-todos').click();

  const title = unique('Write the launch post');
  await a.getByTestId('todo-input').fill(title);
  const started = Date.now();
  await a.getByTestId('todo-add').click();
  await todoItem(b, title).waitFor({ timeout: LIVE_MS * 3 });
  const elapsed = Date.now() - started;
  t.diagnostic(`Bob saw Alice's todo ${elapsed} ms after her click`);
  assert.ok(elapsed <= LIVE_MS, `Bob saw the todo after ${elapsed} ms (budget ${LIVE_MS} ms)`);
  await todoItem(a, title).waitFor();
  assert.equal(await todoItem(b, title).count(), 1, 'exactly one copy on Bob’s page');

  // Bob ticks it: Alice sees it done.
  await todoItem(b, title).getByTestId('todo-toggle').check();
  await a.waitForFunction(
    (t) =>
      [...document.querySelectorAll('[data-testid="todo-item"]')].some(
        (li) => li.querySelector('[data-testid="todo-title"]').textContent === t && li.querySelector('[data-testid="todo-toggle"]').checked,
      ),
    title,
  );

  // Alice renames it inline: Bob sees the new title.
  const renamed = `${title} (final)`;
  await todoItem(a, title).getByTestId('todo-edit').click();
  const input = a.getByTestId('todo-edit-input');
  await input.fill(renamed);
  await input.press('Enter');
  await todoItem(b, renamed).waitFor();
  assert.equal(await todoItem(b, title).count(), 0);

  // A second todo, then Bob deletes the first: Alice's page drops it.
  const second = unique('Book the venue');
  await a.getByTestId('todo-input').fill(second);
  await a.getByTestId('todo-add').click();
  await todoItem(b, second).waitFor();
  await todoItem(b, renamed).getByTestId('todo-delete').click();
  await todoItem(a, renamed).waitFor({ state: 'detached' });
  await todoItem(a, second).waitFor();

  // A third for the screenshot; Bob's page was never reloaded.
  await a.getByTestId('todo-input').fill('Send the press kit');
  await a.getByTestId('todo-add').click();
  await todoItem(b, 'Send the press kit').waitFor();
  await assertNotReloaded(b);
  await assertNotReloaded(a);
});

test('a channel deleted while Bob has it selected moves Bob to #general', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await a.getByTestId('tab-channels').click();
  await b.getByTestId('tab-channels').click();
  await b.getByTestId('channel-item').filter({ hasText: 'general' }).waitFor();

  const name = `random-${Math.random().toString(36).slice(2, 6)}`;
  await a.getByTestId('channel-input').fill(name);
  await a.getByTestId('channel-add').click();
  const bobsItem = b.getByTestId('channel-item').filter({ hasText: name });
  await bobsItem.waitFor();
  await bobsItem.getByRole('button').click();
  await b.getByTestId('selected-channel').filter({ hasText: name }).waitFor();

  // Alice renames it; Bob's selection follows the new name.
  const renamed = `${name}-2`;
  await a.getByTestId('channel-item').filter({ hasText: name }).getByRole('button').click();
  await a.getByTestId('channel-rename').click();
  await a.getByTestId('channel-rename-input').fill(renamed);
  await a.getByTestId('channel-rename-save').click();
  await b.getByTestId('selected-channel').filter({ hasText: renamed }).waitFor();

  // Alice deletes it (two clicks: the button asks to confirm).
  await a.getByTestId('channel-delete').click();
  await a.getByTestId('channel-delete').click();
  await b.getByTestId('channel-item').filter({ hasText: renamed }).waitFor({ state: 'detached' });
  await b.waitForFunction(() => document.querySelector('[data-testid="selected-channel"]')?.textContent === 'general');
  await a.waitForFunction(() => document.querySelector('[data-testid="selected-channel"]')?.textContent === 'general');
  await assertNotReloaded(b);
});

test('Alice’s private note never reaches Bob’s page nor Bob’s own stream', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;

  // Bob's raw stream, opened with the page's own EventSource (his cookie): it records the type
  // of every event it gets.
  await b.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const types = ['todos:created', 'notes:created', 'notes:updated', 'notes:deleted', 'message'];
        const es = new EventSource('/api/events');
        window.__raw = { es, seen: [] };
        for (const type of types) es.addEventListener(type, (e) => window.__raw.seen.push({ type, data: e.data }));
        es.addEventListener('connected', () => resolve(), { once: true });
        setTimeout(() => reject(new Error('Bob’s raw stream did not connect')), 5_000);
      }),
  );

  const secret = unique('Alice’s secret: the launch date is moving');
  await a.getByTestId('tab-notes').click();
  await a.getByTestId('note-input').fill(secret);
  await a.getByTestId('note-add').click();
  await a.getByTestId('note-item').filter({ hasText: secret }).waitFor();
  // Bob's own notes tab shows nothing of it, even when he looks.
  await b.getByTestId('tab-notes').click();

  // A todo added after the note: once Bob's page and his raw stream have it, the note would
  // have arrived too if it were ever going to (one ordered log).
  const sentinel = unique('After the note');
  await apiTodo(sentinel);
  await b.waitForFunction((t) => window.__raw.seen.some((e) => e.type === 'todos:created' && e.data.includes(t)), sentinel, {
    timeout: 5_000,
  });
  await todoItem(b, sentinel).waitFor({ state: 'attached' });

  const seen = await b.evaluate(() => {
    window.__raw.es.close();
    return window.__raw.seen;
  });
  assert.deepEqual(
    seen.filter((e) => e.type.startsWith('notes:') || e.data.includes(secret)),
    [],
    'Bob’s raw stream carried Alice’s note',
  );
  assert.equal(await b.getByTestId('note-item').count(), 0, 'Bob’s page lists a note');
  assert.equal(await pageHasText(b, secret), false, 'Bob’s page contains Alice’s note');
  // And Bob cannot read it through the API either.
  const list = await bob.request('GET', `/api/workspaces/${workspace.id}/notes`);
  assert.equal(list.status, 200);
  assert.equal(list.body.items.length, 0);

  // Alice edits her note, then deletes a second one.
  const note = a.getByTestId('note-item').filter({ hasText: secret });
  await note.getByTestId('note-edit').click();
  await a.getByTestId('note-edit-input').fill(`${secret}\n(to Friday)`);
  await a.getByTestId('note-edit-input').press('Control+Enter');
  await note.getByTestId('note-content').filter({ hasText: '(to Friday)' }).waitFor();
  await a.getByTestId('note-input').fill('scratch');
  await a.getByTestId('note-add').click();
  const scratch = a.getByTestId('note-item').filter({ hasText: 'scratch' });
  // The page removes the note at once and deletes it in the background: wait for the answer.
  const deleted = a.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/notes/'));
  await scratch.getByTestId('note-delete').click();
  await scratch.waitFor({ state: 'detached' });
  assert.equal((await deleted).status(), 204);
  const mine = await alice.request('GET', `/api/workspaces/${workspace.id}/notes`);
  assert.deepEqual(
    mine.body.items.map((n) => n.content),
    [`${secret}\n(to Friday)`],
  );
});

test('a notification sent to Bob shows a toast on Bob’s page only', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  const res = await admin.request('POST', '/api/notify', { userId: BOB.id, data: { message: 'hello B' } });
  assert.equal(res.status, 202, JSON.stringify(res.body));

  await b.getByTestId('toast').filter({ hasText: 'hello B' }).waitFor({ timeout: 5_000 });

  // A todo after the notification: once Alice's page shows it, a toast for her would be there.
  const sentinel = unique('After the notification');
  await apiTodo(sentinel);
  await todoItem(a, sentinel).waitFor({ state: 'attached' });
  assert.equal(await a.getByTestId('toast').count(), 0, 'Alice got a toast');
  assert.equal(await pageHasText(a, 'hello B'), false);
});

test('after a server restart both pages reconnect and show a todo added right after', { timeout: 90_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await a.getByTestId('tab-todos').click();
  await b.getByTestId('tab-todos').click();
  await waitStatus(a, 'connected');
  await waitStatus(b, 'connected');

  const { port, dataDir } = herald;
  const exit = await herald.stop();
  assert.equal(exit.code, 0, `herald did not stop cleanly: ${JSON.stringify(exit)}\n${herald.stderr}`);
  // While the server is down the pages say so.
  await waitStatus(a, 'reconnecting', 15_000).catch(() => waitStatus(a, 'offline', 1));

  herald = await startHerald({ env: ENV, port, dataDir });
  const title = unique('Added right after the restart');
  await apiTodo(title);

  await todoItem(a, title).waitFor({ timeout: 30_000 });
  await todoItem(b, title).waitFor({ timeout: 30_000 });
  await waitStatus(a, 'connected', 15_000);
  await waitStatus(b, 'connected', 15_000);
  assert.equal(await todoItem(a, title).count(), 1);
  assert.equal(await todoItem(b, title).count(), 1);
  await assertNotReloaded(a);
  await assertNotReloaded(b);

  // Still live afterwards.
  const later = unique('Live again');
  await a.getByTestId('todo-input').fill(later);
  await a.getByTestId('todo-add').click();
  await todoItem(b, later).waitFor({ timeout: 5_000 });
  await saveScreenshot();
});

test('the app is usable at a phone’s width (375 px)', { timeout: 60_000 }, async () => {
  const phone = await signIn(ALICE, { viewport: { width: 375, height: 740 } });
  pages.phone = phone;
  const p = phone.page;
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
  // The sidebar is off-canvas (choosing a workspace closed it) and opens with the menu button.
  const item = p.getByTestId('workspace-item').filter({ hasText: WORKSPACE });
  const onScreen = async () => {
    const box = await item.boundingBox();
    return box !== null && box.x >= 0 && box.x + box.width <= 375;
  };
  // Choosing the workspace slides the sidebar out; give the transition its time.
  const hidden = Date.now() + 2_000;
  while ((await onScreen()) && Date.now() < hidden) await p.waitForTimeout(100);
  assert.equal(await onScreen(), false, 'the sidebar covers the page after choosing a workspace');
  await p.getByTestId('sidebar-toggle').click();
  await p.waitForFunction(() => document.body.classList.contains('sidebar-open'));
  await p.waitForTimeout(400); // the slide-in transition
  assert.equal(await onScreen(), true, 'the menu button did not open the sidebar');
  await mkdir(ARTIFACTS, { recursive: true });
  await p.screenshot({ path: `${ARTIFACTS}app-mobile-sidebar.png` });
  await item.click();
  await p.waitForFunction(() => !document.body.classList.contains('sidebar-open'));
  await p.getByTestId('todo-input').waitFor({ state: 'visible' });
  await p.getByTestId('todo-list').waitFor({ state: 'visible' });
  await p.waitForTimeout(400); // the slide-out transition, for the screenshot
  assert.equal(await p.getByTestId('status').textContent(), 'connected');
  await mkdir(ARTIFACTS, { recursive: true });
  await p.screenshot({ path: `${ARTIFACTS}app-mobile.png`, fullPage: true });

  // The phone loses its network: the pill says so, and recovers when it is back.
  await phone.context.setOffline(true);
  await waitStatus(p, 'offline', 5_000);
  await phone.context.setOffline(false);
  await waitStatus(p, 'connected', 20_000);
  await phone.context.close();
  delete pages.phone;
});

test('Bob removed from the workspace: his page says why and gets nothing more from it', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await a.getByTestId('tab-members').click();
  const bobRow = a.getByTestId('member-item').filter({ hasText: BOB.email });
  await bobRow.waitFor();
  // Two clicks: the button asks to confirm.
  await bobRow.getByTestId('member-remove').click();
  await bobRow.getByTestId('member-remove').click();
  await bobRow.waitFor({ state: 'detached' });

  const notice = b.getByTestId('notice');
  await notice.waitFor({ state: 'visible', timeout: 5_000 });
  const text = await notice.textContent();
  assert.match(text, /removed/i);
  assert.ok(text.includes(WORKSPACE), `the notice does not name the workspace: ${text}`);
  await b.getByTestId('workspace-item').filter({ hasText: WORKSPACE }).waitFor({ state: 'detached' });

  // Alice adds a todo; then a notification to Bob, which he does get. Once it shows, the todo
  // would have reached Bob's page already if it were ever going to (one ordered log, replayed
  // in order on reconnect).
  await a.getByTestId('tab-todos').click();
  const title = unique('Not for Bob any more');
  await a.getByTestId('todo-input').fill(title);
  await a.getByTestId('todo-add').click();
  await todoItem(a, title).waitFor();
  const res = await admin.request('POST', '/api/notify', { userId: BOB.id, data: { message: 'after removal' } });
  assert.equal(res.status, 202);
  await b.getByTestId('toast').filter({ hasText: 'after removal' }).waitFor({ timeout: 10_000 });
  assert.equal(await pageHasText(b, title), false, 'Bob’s page shows a todo added after his removal');
  assert.equal(await b.getByTestId('todo-item').count(), 0);
  await waitStatus(b, 'connected');
  await assertNotReloaded(b);
});

test('Alice adds Bob back: the workspace appears on his page and is live again', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await b.getByTestId('notice').getByRole('button').click();
  await b.getByTestId('notice').waitFor({ state: 'hidden' });

  await a.getByTestId('tab-members').click();
  await a.getByTestId('member-user-select').selectOption(BOB.id);
  await a.getByTestId('member-role-select').selectOption('member');
  await a.getByTestId('member-add').click();
  await a.getByTestId('member-item').filter({ hasText: BOB.email }).waitFor();

  const item = b.getByTestId('workspace-item').filter({ hasText: WORKSPACE });
  await item.waitFor({ timeout: 5_000 });
  await item.click();
  await b.getByTestId('tab-todos').click();
  // What was added while he was out is there (loaded), and new todos arrive live.
  await b.getByTestId('todo-title').filter({ hasText: 'Not for Bob any more' }).waitFor();
  await waitStatus(b, 'connected');
  const title = unique('Welcome back, Bob');
  await apiTodo(title);
  await todoItem(b, title).waitFor({ timeout: 5_000 });
  await assertNotReloaded(b);
});

test('Bob creates his own workspace; its todos are live on his page', { timeout: 60_000 }, async () => {
  const { page: b } = pages.bob;
  const name = `Bob’s corner <b>${Math.random().toString(36).slice(2, 6)}</b>`;
  await b.getByTestId('workspace-create-input').fill(name);
  await b.getByTestId('workspace-create').click();
  await b.getByTestId('workspace-name').filter({ hasText: name }).waitFor();
  // Text is text: the markup in the name was not parsed.
  assert.equal(await b.locator('[data-testid="workspace-list"] b').count(), 0);
  assert.equal(await b.getByTestId('workspace-item').count(), 2);

  const created = (await bob.request('GET', '/api/workspaces')).body.items.find((w) => w.name === name);
  assert.ok(created, 'the workspace exists');
  assert.equal(created.role, 'owner');
  // The server ends the stream after workspaces:created so the next one covers it.
  await waitStatus(b, 'connected');
  const res = await bob.request('POST', `/api/workspaces/${created.id}/todos`, { title: 'First in my corner' });
  assert.equal(res.status, 201);
  await todoItem(b, 'First in my corner').waitFor({ timeout: 5_000 });
  // Alice's page never hears of it.
  assert.equal(await pages.alice.page.getByTestId('workspace-item').count(), 1);
});

test('Alice renames, then deletes the workspace: Bob’s page follows live', { timeout: 60_000 }, async () => {
  const { page: a } = pages.alice;
  const { page: b } = pages.bob;
  await b.getByTestId('workspace-item').filter({ hasText: WORKSPACE }).click();
  await b.getByTestId('workspace-name').filter({ hasText: WORKSPACE }).waitFor();

  const renamed = `${WORKSPACE} (v2)`;
  await a.getByTestId('workspace-rename').click();
  await a.getByTestId('workspace-rename-input').fill(renamed);
  await a.getByTestId('workspace-rename-input').press('Enter');
  await b.getByTestId('workspace-name').filter({ hasText: renamed }).waitFor({ timeout: 5_000 });
  await b.getByTestId('workspace-item').filter({ hasText: renamed }).waitFor();

  // Deleting asks to confirm (a second click).
  await a.getByTestId('workspace-delete').click();
  await a.getByTestId('workspace-delete').click();
  const notice = b.getByTestId('notice');
  await notice.waitFor({ state: 'visible', timeout: 5_000 });
  assert.match(await notice.textContent(), /deleted/);
  assert.ok((await notice.textContent()).includes(renamed));
  await b.getByTestId('workspace-item').filter({ hasText: renamed }).waitFor({ state: 'detached' });
  // Bob is moved to the workspace he still has; Alice, who has none left, sees the empty state.
  await b.getByTestId('workspace-name').filter({ hasText: 'Bob’s corner' }).waitFor();
  await todoItem(b, 'First in my corner').waitFor();
  await a.locator('#empty-state').waitFor({ state: 'visible' });
  assert.equal(await a.getByTestId('workspace-item').count(), 0);
  await waitStatus(b, 'connected');
  await assertNotReloaded(a);
  await assertNotReloaded(b);
});

test('a wrong password is refused with a message; signing out returns to the sign-in form', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_MS);
  try {
    const page = await context.newPage();
    await page.goto(herald.url + '/');
    await page.getByTestId('login-email').fill(ALICE.email);
    await page.getByTestId('login-password').fill('not-the-password');
    await page.getByTestId('login-submit').click();
    const error = page.getByTestId('login-error');
    await error.waitFor({ state: 'visible' });
    assert.match(await error.textContent(), /wrong email or password/i);
  } finally {
    await context.close();
  }

  const { page: b } = pages.bob;
  await b.getByTestId('logout').click();
  await b.getByTestId('login-submit').waitFor({ state: 'visible' });
  await b.reload();
  await b.getByTestId('login-submit').waitFor({ state: 'visible' });
  assert.equal(await b.getByTestId('user-name').isVisible(), false);
});

test('herald.js: when the EventSource gives up it retries with backoff and resumes from the last id', { timeout: 90_000 }, async () => {
  const CAROL = { email: 'carol@example.com', name: 'Carol Diaz', password: 'carol-password-1' };
  const created = await admin.request('POST', '/api/users', { ...CAROL, role: 'member' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const carol = await apiLogin(herald.url, CAROL.email, CAROL.password);
  const lab = (await carol.request('POST', '/api/workspaces', { name: 'Carol’s lab' })).body;
  pages.carol = await signIn(CAROL, { workspace: 'Carol’s lab' });
  const { page } = pages.carol;
  const addTodo = async (title) => {
    const res = await carol.request('POST', `/api/workspaces/${lab.id}/todos`, { title });
    assert.equal(res.status, 201);
  };

  // A second stream made with herald.js itself, recording its statuses and todo events.
  await page.evaluate(async () => {
    const { connect } = await import('/herald.js');
    const t = { statuses: [], events: [] };
    window.__t = t;
    t.stream = connect('/api/events?types=todos', { onStatus: (s) => t.statuses.push(s) });
    t.stream.on('todos:created', (event, raw) => t.events.push({ id: raw.lastEventId, title: event.data.title }));
    const started = Date.now();
    while (t.stream.status !== 'connected') {
      if (Date.now() - started > 5_000) throw new Error(`not connected: ${t.statuses}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
  await addTodo('before the outage');
  await page.waitForFunction(() => window.__t.events.length === 1);
  const seenId = await page.evaluate(() => window.__t.stream.lastEventId);
  assert.ok(seenId, 'herald.js knows the last event id');

  // From now on every stream request is answered 503 (a proxy in front of a restarting
  // server): herald.js retries with backoff.
  const attempts = [];
  let failing = true;
  await page.route('**/api/events?types=todos*', (route) => {
    attempts.push({ url: route.request().url(), at: Date.now(), failed: failing });
    return failing ? route.fulfill({ status: 503, contentType: 'text/plain', body: 'unavailable' }) : route.continue();
  });
  // Carol joins a workspace: the server ends her streams so the new ones include it.
  const other = await carol.request('POST', '/api/workspaces', { name: 'Carol’s second lab' });
  assert.equal(other.status, 201);
  await addTodo('during the outage');
  // Every reconnect carries `lastEventId`.
  const deadline = Date.now() + 30_000;
  while (attempts.filter((a) => a.url.includes('lastEventId=')).length < 3 && Date.now() < deadline) {
    await page.waitForTimeout(100);
  }
  const retries = attempts.filter((a) => a.url.includes('lastEventId='));
  assert.ok(retries.length >= 3, `herald.js retried ${retries.length} times: ${JSON.stringify(attempts)}`);
  // The last id the stream carried: the todo's, or a later one (the event that ended the
  // stream has an id of its own). Ids are UUIDv7: later ones sort after.
  const resumeId = await page.evaluate(() => window.__t.stream.lastEventId);
  assert.ok(resumeId >= seenId, `herald.js resumes from ${resumeId}, before ${seenId}`);
  for (const retry of retries) {
    assert.equal(new URL(retry.url).searchParams.get('lastEventId'), resumeId);
  }
  // Full jitter under a doubling cap: the n-th wait is below 500 ms * 2^n (plus slack).
  for (let i = 1; i < retries.length; i++) {
    const waited = retries[i].at - retries[i - 1].at;
    assert.ok(waited < 500 * 2 ** i + 500, `retry ${i} waited ${waited} ms`);
  }
  assert.equal(await page.evaluate(() => window.__t.stream.status), 'reconnecting');

  failing = false;
  await page.waitForFunction(() => window.__t.stream.status === 'connected', null, { timeout: 40_000 });
  await page.waitForFunction(() => window.__t.events.some((e) => e.title === 'during the outage'));
  await addTodo('after the outage');
  await page.waitForFunction(() => window.__t.events.some((e) => e.title === 'after the outage'));
  const { statuses, events } = await page.evaluate(() => {
    window.__t.stream.close();
    return { statuses: window.__t.statuses, events: window.__t.events };
  });
  assert.deepEqual(
    events.map((e) => e.title),
    ['before the outage', 'during the outage', 'after the outage'],
    'every todo exactly once, in order',
  );
  assert.deepEqual(statuses.slice(0, 2), ['connecting', 'connected']);
  assert.ok(statuses.includes('reconnecting'));
  assert.equal(statuses.at(-1), 'offline', 'close() reports offline');
  // The app's own stream went through the same outage and is live again.
  await page.unroute('**/api/events?types=todos*');
  await waitStatus(page, 'connected', 40_000);
  await todoItem(page, 'after the outage').waitFor();
  await pages.carol.context.close();
});

test('no page threw or logged an error', () => {
  for (const [who, { errors }] of Object.entries(pages)) {
    // A failed stream request while the server was down is the browser's own log line.
    const real = errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource|EventSource/.test(e));
    assert.deepEqual(real, [], `${who}'s page`);
  }
});
