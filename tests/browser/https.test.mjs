// The app over HTTPS in Chromium: a certificate made by the test (openssl, self-signed for
// 127.0.0.1), `herald serve --tls-cert --tls-key`, and a browser that accepts it.
//
// - the page and its requests go over HTTP/2 (ALPN), so streams no longer count against
//   HTTP/1.1's six connections per host: ten independent herald.js streams and REST calls
//   all work at once from one page;
// - the session cookie is `Secure`;
// - a change made through the API reaches every stream and the app's own view.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, selfSignedCert, startHerald } from './harness.mjs';

const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
const ENV = { HERALD_ADMIN_EMAIL: ADMIN.email, HERALD_ADMIN_PASSWORD: ADMIN.password };
const STEP_MS = 10_000;
/** More streams than HTTP/1.1 allows connections to one host. */
const STREAMS = 10;

let herald;
let browser;

before(async () => {
  const cert = await selfSignedCert();
  herald = await startHerald({ env: ENV, tls: cert });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await herald?.stop();
});

test('over HTTPS the app speaks HTTP/2, its cookie is Secure, and many streams share one connection', { timeout: 60_000 }, async () => {
  assert.ok(herald.url.startsWith('https://'), herald.url);
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));

  await page.goto(herald.url + '/');
  await page.getByTestId('login-email').fill(ADMIN.email);
  await page.getByTestId('login-password').fill(ADMIN.password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('user-name').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent.trim() === 'connected');

  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2', 'the page came over HTTP/2');
  const session = (await context.cookies()).find((c) => c.name === 'herald_session');
  assert.ok(session, 'signed in');
  assert.equal(session.secure, true, 'the session cookie is Secure over HTTPS');

  // STREAMS streams of this page's own (not shared), each on its own URL, plus the app's.
  await page.evaluate(async (count) => {
    const { connect } = await import('/herald.js');
    window.__streams = [];
    for (let i = 0; i < count; i++) {
      const t = { events: [], stream: null };
      t.stream = connect(`/api/events?types=workspaces&n=${i}`, { share: false });
      t.stream.on('workspaces:created', (envelope) => t.events.push(envelope.data.name));
      window.__streams.push(t);
    }
  }, STREAMS);
  await page.waitForFunction(() => window.__streams.every((t) => t.stream.status === 'connected'));
  // REST still answers at once from the same page.
  const answered = await page.evaluate(async () => {
    const started = performance.now();
    const res = await fetch('/api/workspaces');
    await res.json();
    return { status: res.status, ms: performance.now() - started };
  });
  assert.equal(answered.status, 200);
  // Over HTTP/1.1, with eleven streams holding six connections, it would wait for one to end.
  assert.ok(answered.ms < 5_000, `GET /api/workspaces took ${answered.ms} ms`);

  // A change, made from the page: a POST with the session cookie, over HTTP/2 too.
  const made = await page.evaluate(async () => {
    const res = await fetch('/api/workspaces', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Over HTTP/2' }),
    });
    return { status: res.status, body: await res.text() };
  });
  assert.equal(made.status, 201, made.body);
  await page.waitForFunction(() => window.__streams.every((t) => t.events.includes('Over HTTP/2')));
  await page.getByTestId('workspace-item').filter({ hasText: 'Over HTTP/2' }).waitFor();

  const resources = await page.evaluate(() =>
    performance.getEntriesByType('resource').map((r) => r.nextHopProtocol).filter(Boolean),
  );
  assert.ok(resources.length > 0 && resources.every((p) => p === 'h2'), JSON.stringify(resources));
  assert.deepEqual(errors, []);
  await context.close();
});
