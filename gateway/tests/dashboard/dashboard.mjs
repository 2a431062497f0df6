// Drives the admin dashboard in headless Chromium for the gateway's end-to-end test
// (gateway/tests/dashboard.rs), which starts the gateway and reads what this prints.
//
// Usage: node dashboard.mjs ADMIN_URL EXPECTED_JSON   (the admin token in LOCKSTEP_ADMIN_TOKEN)
//
// 1. Opens the page without a token: the token form must show. A wrong token must be refused,
//    then the right one is entered.
// 2. Waits until the page shows EXPECTED_JSON ({"primary", "last_seq", "backends": [{"name",
//    "role", "state", "implementation", "acked_seq"}]}) with the event stream live, reloads it
//    (the token is kept for the tab) and waits again, then prints `READY {what the page shows}`.
// 3. Reads one line from stdin, {"primary", "last_seq"}, after the test changed the primary and
//    wrote; waits until the page shows that primary, a primary-changed event for it, that last
//    seq and every backend having acked it, prints `RESULT {what the page shows}` and exits 0.
//
// Any wait that times out prints what the page showed and exits 1.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const WAIT_MS = 30_000;

const [adminUrl, expectedJson] = process.argv.slice(2);
const token = process.env.LOCKSTEP_ADMIN_TOKEN ?? '';
if (!adminUrl || !expectedJson || !token) {
  console.error('usage: LOCKSTEP_ADMIN_TOKEN=TOKEN node dashboard.mjs ADMIN_URL EXPECTED_JSON');
  process.exit(2);
}
const expected = JSON.parse(expectedJson);

class Timeout extends Error {}

// What the page shows, read from the DOM.
function snapshot(page) {
  return page.evaluate(() => {
    const text = (sel) => document.querySelector(sel)?.textContent.trim() ?? null;
    const cell = (row, field) => row.querySelector(`[data-field="${field}"]`)?.textContent.trim() ?? null;
    return {
      primary: text('#primary'),
      epoch: text('#epoch'),
      last_seq: text('#last-seq'),
      committed_seq: text('#committed-seq'),
      health: document.querySelector('#health')?.dataset.health ?? null,
      health_detail: text('#health-detail'),
      connection: text('#connection'),
      connection_state: document.querySelector('#connection')?.dataset.state ?? null,
      token_form_visible: !document.querySelector('#token-form')?.hidden,
      token_message: text('#token-message'),
      error: document.querySelector('#error')?.hidden ? null : text('#error'),
      backends: [...document.querySelectorAll('#backend-rows tr[data-backend]')].map((row) => ({
        name: row.dataset.backend,
        role: cell(row, 'role'),
        state: cell(row, 'state'),
        implementation: cell(row, 'implementation'),
        acked_seq: cell(row, 'acked_seq'),
        lag: cell(row, 'lag'),
        url: cell(row, 'url'),
      })),
      joins: [...document.querySelectorAll('#join-rows tr[data-join]')].map((row) => ({
        backend: row.dataset.join,
        phase: row.dataset.phase,
      })),
      events: [...document.querySelectorAll('#events li[data-event]')].map((li) => ({
        event: li.dataset.event,
        backend: li.dataset.backend ?? null,
        detail: cell(li, 'detail'),
      })),
    };
  });
}

// Waits until `check(snapshot)` holds; on timeout throws with the last snapshot.
async function waitUntil(page, what, check) {
  const deadline = Date.now() + WAIT_MS;
  let last = null;
  for (;;) {
    last = await snapshot(page);
    if (check(last)) return last;
    if (Date.now() > deadline) {
      throw new Timeout(`timed out after ${WAIT_MS / 1000} s waiting until ${what}; the page shows ${JSON.stringify(last)}`);
    }
    // Re-read when the page changes (or after a short while if it does not).
    await page
      .waitForFunction(
        (before) => document.querySelector('main').innerText !== before,
        await page.evaluate(() => document.querySelector('main').innerText),
        { timeout: 250, polling: 'mutation' },
      )
      .catch(() => {});
  }
}

function showsExpected(s, want) {
  if (s.primary !== want.primary || s.last_seq !== String(want.last_seq)) return false;
  if (s.connection_state !== 'live' || s.token_form_visible) return false;
  if (s.backends.length !== want.backends.length) return false;
  return want.backends.every((b, i) => {
    const row = s.backends[i];
    return (
      row.name === b.name &&
      row.role === b.role &&
      row.state === b.state &&
      row.implementation === b.implementation &&
      row.acked_seq === String(b.acked_seq) &&
      row.lag === String(want.last_seq - b.acked_seq)
    );
  });
}

// The test's next line on stdin; it comes once the test has made its change.
async function readLine() {
  const lines = createInterface({ input: process.stdin });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Timeout('the test said nothing on stdin for 120 s')), 120_000);
  });
  const next = (async () => {
    for await (const line of lines) return line;
    throw new Error('stdin closed before the test said what changed');
  })();
  try {
    return await Promise.race([next, timeout]);
  } finally {
    clearTimeout(timer);
    lines.close();
  }
}

async function main() {
  const userDataDir = await mkdtemp(join(tmpdir(), 'lockstep-dashboard-'));
  const pageErrors = [];
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) pageErrors.push(m.text());
    });
    // Requests anywhere but the admin listener (the page must need nothing else).
    const outside = [];
    const origin = new URL(adminUrl).origin;
    page.on('request', (r) => {
      if (new URL(r.url()).origin !== origin) outside.push(r.url());
    });

    await page.goto(`${adminUrl}/`, { timeout: WAIT_MS });

    // No token yet: the page asks for it.
    const asked = await waitUntil(page, 'the token form shows', (s) => s.token_form_visible && s.connection_state === 'token');
    await page.fill('#token-input', `not-${token}`);
    await page.click('#token-submit');
    const refused = await waitUntil(
      page,
      'a wrong token is refused',
      (s) => s.token_form_visible && /refused/.test(s.token_message ?? ''),
    );
    await page.fill('#token-input', token);
    await page.click('#token-submit');
    await waitUntil(page, 'the page shows the expected status', (s) => showsExpected(s, expected));

    // The token is kept for the tab: a reload needs no form.
    const stored = await page.evaluate(() => sessionStorage.getItem('lockstep.adminToken'));
    await page.reload({ timeout: WAIT_MS });
    const ready = await waitUntil(page, 'the reloaded page shows the expected status', (s) => showsExpected(s, expected));
    console.log(`READY ${JSON.stringify(ready)}`);

    const change = JSON.parse(await readLine());
    const seen = await waitUntil(
      page,
      `the page shows ${change.primary} as the primary, its primary-changed event and last seq ${change.last_seq} acked by every backend`,
      (s) =>
        s.primary === change.primary &&
        s.last_seq === String(change.last_seq) &&
        s.committed_seq === String(change.last_seq) &&
        s.backends.every((b) => b.acked_seq === String(change.last_seq) && b.lag === '0') &&
        s.connection_state === 'live' &&
        s.backends.some((b) => b.name === change.primary && b.role === 'primary') &&
        s.backends.filter((b) => b.role === 'primary').length === 1 &&
        s.events.some((e) => e.event === 'primary-changed' && e.backend === change.primary),
    );
    const result = {
      ...seen,
      token_form_shown: asked.token_form_visible,
      wrong_token_message: refused.token_message,
      token_kept: stored === token,
      ready_epoch: ready.epoch,
      page_errors: pageErrors,
      outside_requests: outside,
    };
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`dashboard test: ${e instanceof Timeout ? e.message : e.stack || e}`);
    process.exit(1);
  },
);
