// Who is online, as the web app shows it: the open workspace's header lists the members whose
// app stream is open right now, live, once per user however many browsers they have open,
// and nobody outside the workspace hears of it.
//
// - Alice (owner) and Bob (member) share a workspace; Carol has a workspace of her own.
// - Bob signs in: Alice's page shows him online; a second browser of Bob's adds no entry.
// - Bob closes one browser: still online; he closes the other: Alice's page shows him gone,
//   and her stream carried one arrival and one departure of his, not one per browser.
// - Carol's stream never carries a presence event of their workspace, and her REST read of
//   its presence is refused like any read of a workspace she is not in (404).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { apiLogin, launchBrowser, startHerald } from './harness.mjs';

const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
const ALICE = { email: 'alice@example.com', name: 'Alice Martin', password: 'alice-password-1' };
const BOB = { email: 'bob@example.com', name: 'Bob Stone', password: 'bob-password-12' };
const CAROL = { email: 'carol@example.com', name: 'Carol Diaz', password: 'carol-password-1' };
const WORKSPACE = 'Launch team';
const ENV = { HERALD_ADMIN_EMAIL: ADMIN.email, HERALD_ADMIN_PASSWORD: ADMIN.password };
/** How long a UI step may take (a click, an element showing up). */
const STEP_MS = 10_000;

let herald;
let browser;
let admin;
let workspace;
const contexts = [];

before(async () => {
  herald = await startHerald({ env: ENV });
  admin = await apiLogin(herald.url, ADMIN.email, ADMIN.password);
  for (const person of [ALICE, BOB, CAROL]) {
    const res = await admin.request('POST', '/api/users', { ...person, role: 'member' });
    assert.equal(res.status, 201, `creating ${person.email}: ${JSON.stringify(res.body)}`);
    person.id = res.body.id;
    person.api = await apiLogin(herald.url, person.email, person.password);
  }
  const ws = await ALICE.api.request('POST', '/api/workspaces', { name: WORKSPACE });
  assert.equal(ws.status, 201, JSON.stringify(ws.body));
  workspace = ws.body;
  const member = await ALICE.api.request('POST', `/api/workspaces/${workspace.id}/members`, { userId: BOB.id, role: 'member' });
  assert.equal(member.status, 201, JSON.stringify(member.body));
  const own = await CAROL.api.request('POST', '/api/workspaces', { name: 'Carol’s own' });
  assert.equal(own.status, 201, JSON.stringify(own.body));
  browser = await launchBrowser();
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  await herald?.stop();
});

/** A new browser context signed in as `person` through the form, on `wsName` if given. */
async function signIn(person, wsName) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  contexts.push(context);
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  await page.goto(herald.url + '/');
  await page.getByTestId('login-email').fill(person.email);
  await page.getByTestId('login-password').fill(person.password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('user-name').filter({ hasText: person.name }).waitFor();
  if (wsName) {
    await page.getByTestId('workspace-item').filter({ hasText: wsName }).click();
    await page.getByTestId('workspace-name').filter({ hasText: wsName }).waitFor();
  }
  return { context, page };
}

/** The user ids Alice's page shows online, in order. */
const onlineIds = (page) =>
  page.getByTestId('online-user').evaluateAll((spans) => spans.map((span) => span.dataset.userId));

/**
 * Opens a second, raw app stream on `page` that records what it carries in `window.__raw`:
 * its presence events, and whether a notification came.
 */
async function openRawStream(page) {
  await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const es = new EventSource('/api/events?presence=true');
        window.__raw = { es, presence: [], notified: false };
        es.addEventListener('presence', (e) => window.__raw.presence.push(JSON.parse(e.data)));
        es.addEventListener('notification', () => (window.__raw.notified = true));
        es.addEventListener('connected', () => resolve(), { once: true });
        setTimeout(() => reject(new Error('the raw stream did not connect')), 5_000);
      }),
  );
}

/** Waits until `page` shows exactly `ids` online (sorted by name: Alice, then Bob). */
async function waitOnline(page, ids) {
  await page.waitForFunction(
    (expected) =>
      JSON.stringify([...document.querySelectorAll('[data-testid="online-user"]')].map((s) => s.dataset.userId)) ===
      JSON.stringify(expected),
    ids,
    { timeout: STEP_MS },
  );
}

test('members come and go live on each other’s page, once per user, and outsiders hear nothing', { timeout: 90_000 }, async () => {
  // Carol's raw stream (her page's own EventSource, her cookie) records every presence event.
  const carol = await signIn(CAROL);
  await openRawStream(carol.page);

  const alice = await signIn(ALICE, WORKSPACE);
  await waitOnline(alice.page, [ALICE.id]);
  // Alice's page also keeps a raw stream, to count the announcements it carries.
  await openRawStream(alice.page);

  const bob = await signIn(BOB, WORKSPACE);
  await waitOnline(alice.page, [ALICE.id, BOB.id]);
  await waitOnline(bob.page, [ALICE.id, BOB.id]);

  // A second browser of Bob's: two streams, still one Bob.
  const bobAgain = await signIn(BOB, WORKSPACE);
  const listed = await BOB.api.request('GET', `/api/workspaces/${workspace.id}/presence`);
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  const bobs = listed.body.items.filter((u) => u.userId === BOB.id);
  assert.equal(bobs.length, 1, JSON.stringify(listed.body));
  assert.equal(bobs[0].name, BOB.name);
  // One node gives all of a user's streams one subscriber id.
  assert.equal(bobs[0].subscribers.length, 1, JSON.stringify(listed.body));
  assert.deepEqual(await onlineIds(alice.page), [ALICE.id, BOB.id]);

  await bobAgain.context.close();
  assert.deepEqual(await onlineIds(alice.page), [ALICE.id, BOB.id]);
  await bob.context.close();
  await waitOnline(alice.page, [ALICE.id]);

  // Bob came with two browsers and left with both: Alice's raw stream, up to a notification
  // sent after all of that, carried one arrival and one departure of his, not two of each.
  const ping = await admin.request('POST', '/api/notify', { userId: ALICE.id, data: { message: 'sentinel' } });
  assert.equal(ping.status, 202, JSON.stringify(ping.body));
  await alice.page.waitForFunction(() => window.__raw.notified, null, { timeout: STEP_MS });
  const bobsComings = (await alice.page.evaluate(() => window.__raw.presence))
    .filter((e) => e.payload?.userId === BOB.id)
    .map((e) => e.active);
  assert.deepEqual(bobsComings, [true, false]);

  // Carol: her read is refused like any read of a workspace she is not in, and her stream,
  // up to a notification sent after all of the above, carried nothing of the workspace.
  const refused = await CAROL.api.request('GET', `/api/workspaces/${workspace.id}/presence`);
  assert.equal(refused.status, 404, JSON.stringify(refused.body));
  const sent = await admin.request('POST', '/api/notify', { userId: CAROL.id, data: { message: 'sentinel' } });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  await carol.page.waitForFunction(() => window.__raw.notified, null, { timeout: STEP_MS });
  // Her stream was live to the end (the sentinel came), and a stream like it carries
  // presence (Alice's raw stream above heard Bob come and go): that none reached Carol is
  // the workspace's doing. Her own arrival may not reach it either: her page's stream,
  // opened first, announced it.
  const heard = await carol.page.evaluate(() => window.__raw.presence);
  assert.deepEqual(
    heard.filter((e) => JSON.stringify(e).includes(workspace.id) || e.payload?.userId !== CAROL.id),
    [],
    'Carol’s stream carried presence of a workspace she is not in',
  );
});
