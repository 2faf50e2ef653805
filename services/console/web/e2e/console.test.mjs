// The console's end-to-end test: a real `passerelle serve` (started by
// scripts/console.sh), headless Chromium through playwright-core, a paho
// MQTT device and a hub client (the Go helper in services/console/e2e).
// Every step is a user's: sign in, create, bind, set a config, watch states,
// send a command, block; then a viewer's console, the 100,000-device list,
// and screenshots of every page in light and dark.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFileSync, mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { join } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run scripts/console.sh`);
  return v;
};
const BASE = env('CONSOLE_URL'); // http://127.0.0.1:port/console/
const ORIGIN = new URL(BASE).origin;
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const VIEWER_TOKEN = env('VIEWER_TOKEN');
const HELPER = env('HELPER');
const WORK = env('WORK');
const ARTIFACTS = env('ARTIFACTS');
const SEEDED = env('SEEDED_REGISTRY');
const SEEDED_DEVICES = Number(env('SEEDED_DEVICES'));
const PROJECT = 'console-e2e';
const LOCATION = 'us-central1';
const PARENT = `projects/${PROJECT}/locations/${LOCATION}`;
const REG = `${PARENT}/registries/reg-e2e`;
const url = (name, suffix = '') => BASE + name + (suffix ? '/' + suffix : '');
const T = 20_000; // the longest a step waits for the page

mkdirSync(ARTIFACTS, { recursive: true });
let stepNo = 0;
const step = (s) => console.log(`console-e2e: ${++stepNo}. ${s}`);

// --- the Go helper's processes ---
const children = [];
function helper(args) {
  const p = spawn(HELPER, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(p);
  const lines = [];
  const waiters = [];
  createInterface({ input: p.stdout }).on('line', (l) => {
    const m = JSON.parse(l);
    lines.push(m);
    for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(m); }
  });
  const exited = new Promise((r) => p.on('exit', r));
  return {
    proc: p,
    lines,
    exited,
    send: (l) => p.stdin.write(l + '\n'),
    wait: (pred, what, ms = 60_000) => {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`the helper did not report ${what} in ${ms} ms; it reported ${JSON.stringify(lines)}`)), ms).unref();
      });
    },
  };
}
function runHelper(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(HELPER, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`helper ${args[0]} exited with ${c}`))));
  });
}

// --- the browser ---
const browser = await chromium.launch({ executablePath: env('CHROMIUM'), args: ['--no-sandbox'], headless: true });
const dialogs = [];
const foreign = [];
const leakedTokens = [];
const pageErrors = [];
async function newPage(opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', ...opts });
  const page = await ctx.newPage();
  page.setDefaultTimeout(T);
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => {
    pageErrors.push(e.message);
    console.log('console-e2e: page error:', e.message);
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== ORIGIN) foreign.push(r.url());
    if (u.search.includes('psl_')) leakedTokens.push(r.url());
  });
  return page;
}

async function signIn(page, token) {
  await page.goto(BASE);
  await page.getByLabel('Admin token').fill(token);
  await page.getByLabel('Project').fill(PROJECT);
  await page.getByLabel('Location').fill(LOCATION);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Registries' }).waitFor();
}

const shots = [];
async function shoot(page, name, ready) {
  for (const theme of ['light', 'dark']) {
    await page.evaluate((t) => localStorage.setItem('passerelle.theme', t), theme);
    await page.reload();
    await page.locator(`html[data-theme="${theme}"]`).waitFor({ state: 'attached' });
    if (ready) await ready();
    await page.waitForLoadState('networkidle').catch(() => {});
    const file = join(ARTIFACTS, `${name}-${theme}.png`);
    await page.screenshot({ path: file });
    shots.push(file);
  }
  await page.evaluate(() => localStorage.removeItem('passerelle.theme'));
}

let failed = false;
try {
  const page = await newPage();

  step('a wrong token is refused with the API message where the user signed in');
  await page.goto(BASE);
  await shoot(page, '01-sign-in');
  await page.getByLabel('Admin token').fill('psl_not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'invalid token' }).waitFor();

  step('sign in with the admin token, with the keyboard only');
  await page.getByLabel('Admin token').fill('');
  await page.getByLabel('Admin token').focus();
  await page.keyboard.type(ADMIN_TOKEN);
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused field shows no focus ring');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(PROJECT);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(LOCATION);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Registries' }).waitFor();
  assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => localStorage.getItem(k).includes('psl_')).length), 0, 'a token in localStorage');
  assert.ok(await page.evaluate(() => sessionStorage.getItem('passerelle.token')?.startsWith('psl_')), 'the token is not in sessionStorage');

  step('create a registry with event and state topics');
  await page.getByRole('link', { name: 'Create registry' }).click();
  await page.getByLabel('Registry ID').fill('reg-e2e');
  await page.getByLabel('Event topic 1').fill(`projects/${PROJECT}/topics/reg-e2e-events`);
  await page.getByLabel('State topic').fill(`projects/${PROJECT}/topics/reg-e2e-state`);
  await page.getByLabel('HTTP enabled').uncheck();
  await shoot(page, '03-registry-form', async () => {});
  // The screenshot reloaded the form: fill it again.
  await page.getByLabel('Registry ID').fill('reg-e2e');
  await page.getByLabel('Event topic 1').fill(`projects/${PROJECT}/topics/reg-e2e-events`);
  await page.getByLabel('State topic').fill(`projects/${PROJECT}/topics/reg-e2e-state`);
  await page.getByLabel('HTTP enabled').uncheck();
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Registry reg-e2e' }).waitFor();

  step('edit the registry: turn HTTP back on');
  await page.getByRole('link', { name: 'Edit registry' }).click();
  await page.getByLabel('HTTP enabled').check();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByRole('heading', { name: 'Registry reg-e2e' }).waitFor();
  await page.goto(url(PARENT + '/registries'));
  const regRow = page.locator('tr', { has: page.getByRole('link', { name: 'reg-e2e', exact: true }) });
  await regRow.locator('td').nth(4).filter({ hasText: 'on' }).waitFor();

  step('create a registry with a CA certificate, then delete it');
  await runHelper(['cacert', WORK]);
  await page.getByRole('link', { name: 'Create registry' }).click();
  await page.getByLabel('Registry ID').fill('reg-gone');
  await page.getByLabel('Add a CA certificate (PEM)').fill(readFileSync(join(WORK, 'ca-cert.pem'), 'utf8'));
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Registry reg-gone' }).waitFor();
  await page.goto(url(PARENT + '/registries'));
  const goneRow = page.locator('tr', { has: page.getByRole('link', { name: 'reg-gone', exact: true }) });
  await goneRow.locator('td').nth(5).filter({ hasText: /^1$/ }).waitFor();
  await goneRow.getByRole('button', { name: 'Delete' }).click();
  await goneRow.getByRole('button', { name: 'Yes, delete' }).click();
  await page.getByRole('link', { name: 'reg-gone', exact: true }).waitFor({ state: 'detached' });

  step('a second create of the same registry shows the API error in the form');
  await page.goto(url(PARENT + '/registries/-new'));
  await page.getByLabel('Registry ID').fill('reg-e2e');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: /already exists/i }).waitFor();

  step('create a gateway and a device (ES256 key, metadata with <script>)');
  await runHelper(['keygen', WORK]);
  const pub = readFileSync(join(WORK, 'device.pub'), 'utf8');
  const evil = '<script>window.__pwned=true</script><img src=x onerror="window.__pwned=true">';
  await page.goto(url(REG, 'devices/-new'));
  await page.getByLabel('Device ID').fill('gw1');
  await page.getByLabel('This device is a gateway').check();
  await page.getByLabel('Gateway authentication method').selectOption('ASSOCIATION_ONLY');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Gateway gw1' }).waitFor();
  await page.goto(url(REG, 'devices/-new'));
  await page.getByLabel('Device ID').fill('dev1');
  await page.getByLabel('Public key (PEM)').fill(pub);
  await page.getByLabel('Metadata').fill(`note=${evil}\nsite=lab`);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Device dev1' }).waitFor();
  await page.locator('#metadata pre').filter({ hasText: '<script>window.__pwned=true</script>' }).waitFor();

  step('bind the device to the gateway');
  await page.goto(url(REG + '/devices/gw1'));
  await page.getByLabel('Device ID to bind').fill('dev1');
  await page.getByRole('button', { name: 'Bind', exact: true }).click();
  await page.locator('#bound').getByRole('link', { name: 'dev1' }).waitFor();
  await page.goto(url(REG + '/devices/dev1'));
  await page.getByRole('region', { name: 'Gateways it is bound to' }).getByRole('link', { name: 'gw1' }).waitFor();

  step('a paho device connects; the console shows it connected');
  const dev = helper(['device', '-addr', env('MQTT_ADDR'), '-ca', env('CA_FILE'), '-name', REG + '/devices/dev1', '-key', join(WORK, 'device.key')]);
  await dev.wait((m) => m.event === 'connected', 'its connection');
  await page.locator('.badge', { hasText: /^connected$/ }).waitFor();

  step('set a config; the device receives and acknowledges it; the page shows the ack');
  await page.getByRole('link', { name: 'Configuration' }).click();
  await page.getByLabel('Configuration data').fill('{"fan":"on"}');
  await page.getByLabel('Version to update (optional)').fill('1');
  await page.getByRole('button', { name: 'Update configuration' }).click();
  await page.getByRole('status').filter({ hasText: 'Config version 2 saved' }).waitFor();
  await dev.wait((m) => m.event === 'config' && m.data === '{"fan":"on"}', 'the config');
  await page.locator('#configs tbody tr').first().locator('td.ack time').waitFor();
  step('a stale version-to-update is refused with the API message');
  await page.getByLabel('Configuration data').fill('stale');
  await page.getByLabel('Version to update (optional)').fill('1');
  await page.getByRole('button', { name: 'Update configuration' }).click();
  await page.getByRole('alert').filter({ hasText: /version/i }).waitFor();

  step('send a command; the device receives it');
  await page.getByRole('link', { name: 'Commands' }).click();
  await page.getByLabel('Command data').fill('reboot');
  await page.getByRole('button', { name: 'Send command' }).click();
  await page.getByRole('status').filter({ hasText: 'Command delivered' }).waitFor();
  await dev.wait((m) => m.event === 'command' && m.data === 'reboot', 'the command');

  step('live: an event the device publishes appears with its attributes');
  const live = await newPage();
  await signIn(live, ADMIN_TOKEN);
  await live.goto(url(REG, 'live'));
  await live.getByText('Listening for new messages').waitFor();
  dev.send('event temperature=21.5');
  await live.locator('#events li').filter({ hasText: 'temperature=21.5' }).filter({ hasText: 'deviceRegistryId=reg-e2e' }).waitFor();

  step('a device state with <script> is shown as text');
  dev.send('state <script>window.__pwned=true</script>');
  await dev.wait((m) => m.event === 'published' && m.kind === 'state', 'the state publish');
  await page.getByRole('link', { name: 'State' }).click();
  await page.locator('#states pre').filter({ hasText: '<script>window.__pwned=true</script>' }).waitFor();

  step('15 states through the hub appear live and in the state history');
  await live.getByLabel('Topic').selectOption(`projects/${PROJECT}/topics/reg-e2e-state`);
  await live.getByRole('status').filter({ hasText: `Listening for new messages on projects/${PROJECT}/topics/reg-e2e-state` }).waitFor();
  const states = helper(['states', '-hub', env('HUB_ADDR'), '-token', ADMIN_TOKEN, '-registry', REG, '-gateway', 'hubgw', '-device', 'dev2', '-n', '15']);
  await states.wait((m) => m.event === 'published', '15 states', 120_000);
  await live.locator('#events li').filter({ hasText: 'dev2' }).first().waitFor();
  await live.waitForFunction(() => document.querySelectorAll('#events li').length >= 15, null, { timeout: 30_000 });
  const liveStates = await live.locator('#events li pre').allTextContents();
  for (let i = 1; i <= 15; i++) assert.ok(liveStates.some((t) => t.includes(`"n":${i},`)), `state ${i} is not on the live page`);
  await page.goto(url(REG + '/devices/dev2', 'state'));
  await page.locator('#states tbody tr').first().filter({ hasText: '"n":15' }).waitFor();
  await page.getByLabel('Show states as').selectOption('json');
  await page.locator('#states tbody tr').first().filter({ hasText: '"n": 15' }).waitFor();
  await page.getByLabel('Show states as').selectOption('hex');
  await page.locator('#states tbody tr').first().filter({ hasText: '000000  7b 22 6e 22' }).waitFor();

  step('the hub pool shows the hub gateway with dev2 attached');
  await page.goto(url('pool'));
  await page.locator('#pool tr').filter({ hasText: 'hubgw' }).filter({ hasText: 'dev2' }).filter({ hasText: 'connected' }).waitFor();
  await shoot(page, '11-hub-pool', () => page.locator('#pool tr').filter({ hasText: 'dev2' }).waitFor());
  await page.goto(url(REG + '/devices/hubgw'));
  await page.getByRole('region', { name: 'Attached right now' }).getByRole('link', { name: 'dev2' }).waitFor();
  await shoot(page, '08-gateway-hub', () => page.getByRole('region', { name: 'Attached right now' }).getByRole('link', { name: 'dev2' }).waitFor());

  step('screenshots of the live page');
  await live.screenshot({ path: join(ARTIFACTS, '10-live-light.png') });
  shots.push(join(ARTIFACTS, '10-live-light.png'));
  await live.evaluate(() => { document.documentElement.dataset.theme = 'dark'; });
  await live.screenshot({ path: join(ARTIFACTS, '10-live-dark.png') });
  shots.push(join(ARTIFACTS, '10-live-dark.png'));
  await live.context().close();
  states.proc.stdin.end();
  await states.exited;

  step('screenshots of the device pages');
  await page.goto(url(REG + '/devices/dev1'));
  await shoot(page, '05-device', () => page.locator('#metadata').waitFor());
  await page.goto(url(REG + '/devices/dev1', 'config'));
  await shoot(page, '06-device-config', () => page.locator('#configs tbody tr').first().waitFor());
  await page.goto(url(REG + '/devices/dev1', 'state'));
  await shoot(page, '07-device-state', () => page.locator('#states tbody tr').first().waitFor());
  await page.goto(url(REG + '/devices/dev1', 'commands'));
  await shoot(page, '09-device-commands', () => page.getByLabel('Command data').waitFor());
  await page.goto(url(REG + '/devices/gw1'));
  await shoot(page, '08-gateway', () => page.locator('#bound').getByRole('link', { name: 'dev1' }).waitFor());

  step('block the device: the bridge disconnects it and the console shows it');
  await page.goto(url(REG + '/devices/dev1'));
  await page.getByRole('button', { name: 'Block', exact: true }).click();
  await dev.wait((m) => m.event === 'lost', 'the disconnection');
  await page.getByRole('button', { name: 'Unblock' }).waitFor();
  await page.locator('.badge', { hasText: 'not connected' }).first().waitFor();
  await page.locator('#last-error').filter({ hasText: 'blocked' }).waitFor({ timeout: 30_000 });
  await dev.exited;

  step('credentials: expire one now, then remove it');
  await page.getByRole('button', { name: 'Expire credential 1 now' }).click();
  await page.locator('#credentials').getByText('expired').waitFor();
  await page.getByRole('button', { name: 'Remove credential 1' }).click();
  await page.getByRole('button', { name: 'Yes, remove credential 1' }).click();
  await page.getByText('No credentials: the device cannot connect on its own.').waitFor();

  step('unbind the device from the gateway');
  await page.goto(url(REG + '/devices/gw1'));
  await page.getByRole('button', { name: 'Unbind dev1' }).click();
  await page.getByText('No device is bound.').waitFor();
  await page.getByLabel('Device ID to bind').fill('dev1');
  await page.getByRole('button', { name: 'Bind', exact: true }).click();
  await page.locator('#bound').getByRole('link', { name: 'dev1' }).waitFor();

  step('the device list filters: blocked only, gateways only, bound to a gateway');
  await page.goto(url(REG));
  const listIDs = async () => (await page.locator('#devices tbody tr td:first-child').allTextContents()).sort().join(',');
  await page.getByLabel('Blocked only').check();
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#list-status').filter({ hasText: 'searched' }).waitFor();
  assert.equal(await listIDs(), 'dev1');
  await page.getByLabel('Blocked only').uncheck();
  await page.getByLabel('Type').selectOption('GATEWAY');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#list-status').filter({ hasText: /^2 devices/ }).waitFor();
  assert.equal(await listIDs(), 'gw1,hubgw');
  await page.getByLabel('Type').selectOption('');
  await page.getByLabel('Bound to gateway').fill('hubgw');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('#list-status').filter({ hasText: /^1 device on/ }).waitFor();
  assert.equal(await listIDs(), 'dev2');
  await page.locator('#devices time[title$=" UTC"]').first().waitFor();

  step("ids with '+' and '~' open their page; a malformed or dot-segment address is a page not found, not a crash");
  const errorsBefore = pageErrors.length;
  await page.goto(url(REG, 'devices/-new'));
  await page.getByLabel('Device ID').fill('dev+1~x');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name: 'Device dev+1~x' }).waitFor();
  await page.goto(url(REG));
  await page.locator('#devices').getByRole('link', { name: 'dev+1~x' }).click();
  await page.getByRole('heading', { name: 'Device dev+1~x' }).waitFor();
  assert.ok(page.url().endsWith('/devices/dev%2B1~x'), `the device's address: ${page.url()}`);
  await page.getByRole('link', { name: 'Configuration' }).click();
  await page.locator('#configs tbody tr').first().waitFor();
  // Inside the app, as a link would (the Go server itself answers 400 to a
  // malformed escape when the page is loaded).
  for (const bad of ['devices/a%zz', 'devices/%2E%2E%2F%2E%2E%2Fregistries', 'devices/a%2Fb']) {
    await page.evaluate((u) => {
      history.pushState(null, '', u);
      dispatchEvent(new Event('console:navigate'));
    }, url(REG, bad));
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  }
  await page.goto(url(REG, 'devices/%2E%2E%2F%2E%2E%2Fregistries'));
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  assert.deepEqual(pageErrors.slice(errorsBefore), [], 'the page threw');

  step('200% zoom: the device page reflows without sideways scrolling');
  const zoomed = await newPage({ viewport: { width: 640, height: 400 }, deviceScaleFactor: 2 });
  await signIn(zoomed, ADMIN_TOKEN);
  await zoomed.goto(url(REG + '/devices/dev1'));
  await zoomed.locator('#metadata').waitFor();
  const overflow = await zoomed.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px at 200%`);
  await zoomed.screenshot({ path: join(ARTIFACTS, '12-device-200pc.png'), fullPage: false });
  await zoomed.context().close();

  step('the theme toggle switches light and dark');
  const before = await page.evaluate(() => document.documentElement.dataset.theme);
  await page.getByRole('button', { name: /Dark theme/ }).click();
  await page.waitForFunction((b) => document.documentElement.dataset.theme !== b, before);
  assert.equal(await page.getByRole('button', { name: /Dark theme/ }).getAttribute('aria-pressed'), String(before === 'light'));
  await page.getByRole('button', { name: /Dark theme/ }).click();
  await page.waitForFunction((b) => document.documentElement.dataset.theme === b, before);

  step('a viewer token sees no write buttons, and a forced write fails with the API message');
  const viewer = await newPage();
  await signIn(viewer, VIEWER_TOKEN);
  await viewer.getByText('read-only token').waitFor();
  assert.equal(await viewer.getByRole('link', { name: 'Create registry' }).count(), 0, 'a viewer sees Create registry');
  await viewer.getByRole('link', { name: 'reg-e2e' }).waitFor();
  assert.equal(await viewer.getByRole('button', { name: /Delete/ }).count(), 0, 'a viewer sees Delete');
  await viewer.goto(url(REG));
  await viewer.locator('#devices').getByRole('link', { name: 'dev1' }).waitFor();
  assert.equal(await viewer.getByRole('link', { name: 'Create device' }).count(), 0, 'a viewer sees Create device');
  assert.equal(await viewer.getByRole('link', { name: 'Edit registry' }).count(), 0, 'a viewer sees Edit registry');
  await viewer.goto(url(REG + '/devices/dev1'));
  await viewer.locator('#metadata').waitFor();
  for (const name of ['Unblock', 'Block', 'Edit metadata', 'Add credential']) {
    assert.equal(await viewer.getByRole('button', { name, exact: true }).count(), 0, `a viewer sees ${name}`);
  }
  await viewer.goto(url(REG + '/devices/dev1', 'config'));
  await viewer.locator('#configs tbody tr').first().waitFor();
  assert.equal(await viewer.getByRole('button', { name: 'Update configuration' }).count(), 0, 'a viewer sees Update configuration');
  await viewer.goto(url(REG + '/devices/gw1'));
  await viewer.locator('#bound').getByRole('link', { name: 'dev1' }).waitFor();
  assert.equal(await viewer.getByRole('button', { name: /^(Bind|Unbind)/ }).count(), 0, 'a viewer sees Bind/Unbind');
  // A write forced through the form's address.
  await viewer.goto(url(PARENT + '/registries/-new'));
  await viewer.getByLabel('Registry ID').fill('forced');
  await viewer.getByRole('button', { name: 'Create', exact: true }).click();
  await viewer.getByRole('alert').filter({ hasText: /requires role editor/ }).waitFor();
  await viewer.getByRole('alert').filter({ hasText: /PERMISSION_DENIED/ }).waitFor();
  await viewer.context().close();

  step(`the ${SEEDED_DEVICES}-device registry: the first page of the list`);
  const big = await newPage();
  await signIn(big, ADMIN_TOKEN);
  const t0 = Date.now();
  await big.goto(url(SEEDED));
  await big.locator('#devices tbody tr').first().waitFor();
  const navMs = Date.now() - t0;
  const rows = await big.locator('#devices tbody tr').count();
  const shownText = await big.locator('#list-status').textContent();
  const appMs = Number(/shown in (\d+) ms/.exec(shownText)?.[1]);
  const within = appMs < 1000 ? 'within' : 'OVER';
  console.log(`console-e2e: FIGURE first page of ${SEEDED_DEVICES} devices: ${rows} rows, list call + render ${appMs} ms (the page's own measure; ${within} the issue's 1 s), navigation to first row ${navMs} ms`);
  assert.equal(rows, 50);
  // A figure, not a test (timing depends on the machine): CONSOLE_ENFORCE_BUDGET=1 makes it one.
  if (process.env.CONSOLE_ENFORCE_BUDGET === '1') assert.ok(appMs < 1000, `the first page took ${appMs} ms, over 1 s`);
  await shoot(big, '04-devices-100k', () => big.locator('#devices tbody tr').first().waitFor());
  step('paging and searching the big registry');
  await big.getByRole('button', { name: 'Next →' }).click();
  await big.locator('#list-status').filter({ hasText: 'page 2' }).waitFor();
  await big.getByRole('button', { name: '← Previous' }).click();
  await big.locator('#list-status').filter({ hasText: 'page 1' }).waitFor();
  // The last ten devices (the list is by numeric id: the search reads every page).
  const lastID = 'device-' + String(SEEDED_DEVICES - 1).padStart(6, '0');
  const prefix = lastID.slice(0, -1);
  const s0 = Date.now();
  await big.getByLabel('ID starts with').fill(prefix);
  await big.getByRole('button', { name: 'Search' }).click();
  await big.locator('#devices').getByRole('link', { name: lastID }).waitFor({ timeout: 120_000 });
  const found = await big.locator('#devices tbody tr').count();
  console.log(`console-e2e: FIGURE id-prefix search through ${SEEDED_DEVICES} devices: ${Date.now() - s0} ms`);
  assert.equal(found, 10, `prefix ${prefix} matches ${found} devices, want 10`);
  await big.getByLabel('ID starts with').fill('');
  await big.getByLabel('Type').selectOption('GATEWAY');
  await big.getByRole('button', { name: 'Search' }).click();
  await big.getByText('No devices match.').waitFor();
  await big.context().close();

  step('screenshots of the registry pages');
  await page.goto(url(PARENT + '/registries'));
  await shoot(page, '02-registries', () => page.getByRole('link', { name: 'reg-e2e' }).waitFor());
  await page.goto(url(REG));
  await shoot(page, '04-devices', () => page.locator('#devices').getByRole('link', { name: 'dev1' }).waitFor());

  step('no script ran, no request left the origin, no token in a URL');
  assert.deepEqual(dialogs, [], 'a dialog opened');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'injected script ran');
  assert.deepEqual(foreign, [], 'requests to other origins');
  assert.deepEqual(leakedTokens, [], 'a token in a URL');
  assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  console.log(`console-e2e: ok, ${shots.length + 3} screenshots in ${ARTIFACTS}`);
} catch (e) {
  failed = true;
  console.error('console-e2e: FAILED at step', stepNo, e);
  for (const ctx of browser.contexts()) {
    for (const p of ctx.pages()) {
      await p.screenshot({ path: join(ARTIFACTS, `failure-${ctx.pages().indexOf(p)}-${Date.now()}.png`) }).catch(() => {});
      console.error('console-e2e: page', p.url());
    }
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await browser.close();
}
process.exit(failed ? 1 : 0);
