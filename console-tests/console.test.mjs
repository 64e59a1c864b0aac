// End-to-end test of the web console in a real (headless) Chromium.
// Run by crates/wb-server/tests/alone/console_browser.rs, which starts a
// server and passes its address in WB_URL. Every page visited is checked
// with axe-core; any CSP violation or script error fails the run.
//
//   WB_URL=https://127.0.0.1:PORT node console-tests/console.test.mjs
//   (screenshots in $WB_SCREENSHOTS, default console-tests/screenshots)

import assert from 'node:assert/strict';
import {
  assertNoBrowserErrors, checkAccessibility, launchBrowser, newContext, screenshot, step,
  totp,
} from './lib.mjs';

const base = process.env.WB_URL;
if (!base) {
  console.error('WB_URL is not set');
  process.exit(2);
}
const PASSPHRASE = 'quasar marmot plinth 47 ferrous kettle';
const stamp = Date.now();
const ownerEmail = `owner${stamp}@example.com`;
const memberEmail = `member${stamp}@example.com`;
const company = `Lindqvist Bakery ${stamp}`;

/**
 * Forgets the browser's log lines for answers the test provoked on purpose
 * (a wrong passphrase's 401, a refusal's 403 ...): only those lines, so any
 * other error, a CSP violation above all, still fails the run.
 */
function expectAnswered(context, ...statuses) {
  const re = new RegExp(`status of (${statuses.join('|')})\\b`);
  const kept = context.browserErrors.filter((e) => !(e.kind === 'console.error' && re.test(e.text)));
  context.browserErrors.splice(0, context.browserErrors.length, ...kept);
}

async function visit(page, name) {
  await checkAccessibility(page, name);
  await screenshot(page, name);
}

async function heading(page) {
  return (await page.locator('main h1').textContent()).trim();
}

const browser = await launchBrowser();
let failed = false;
try {
  const owner = await newContext(browser);
  const page = await owner.newPage();
  let companyPath;
  let totpSecret;
  let entryId;

  await step('login page renders under the CSP and passes axe', async () => {
    const response = await page.goto(`${base}/login`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(response.headers()['cache-control'], 'no-store');
    assert.equal(await heading(page), 'Log in');
    await visit(page, 'login');
  });

  await step('sign up creates a company and opens its dashboard', async () => {
    await page.getByRole('link', { name: 'Create a company' }).click();
    await page.getByLabel('Company name').fill(company);
    await page.getByLabel('Email').fill(ownerEmail);
    await page.getByLabel('Passphrase').fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Create company' }).click();
    await page.waitForURL(/\/c\/[^/]+$/);
    companyPath = new URL(page.url()).pathname;
    assert.equal(await heading(page), 'Dashboard');
    assert.equal((await page.locator('[data-company-name]').textContent()).trim(), company);
    const cookies = await owner.cookies();
    const session = cookies.find((c) => c.name === '__Host-wb_session');
    assert.ok(session, 'a __Host- session cookie');
    assert.ok(session.httpOnly && session.secure && session.sameSite === 'Strict');
    await visit(page, 'dashboard-empty');
  });

  await step('turn on the authenticator app and get recovery codes', async () => {
    await page.getByRole('link', { name: ownerEmail }).click();
    assert.equal(await heading(page), 'My account');
    await visit(page, 'account');
    await page.getByLabel('Your passphrase', { exact: true }).fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Set up authenticator app' }).click();
    totpSecret = (await page.locator('#totp-secret').textContent()).trim();
    assert.match(totpSecret, /^[A-Z2-7]{16,}$/);
    await visit(page, 'totp-setup');
    // The previous step's code (inside the window), so the login below can
    // use the current one: each step is accepted once.
    await page.getByLabel('Code from the app').fill(totp(totpSecret, Date.now() - 30_000));
    await page.getByRole('button', { name: 'Turn on' }).click();
    assert.equal(await page.locator('#recovery-codes li').count(), 10);
    await visit(page, 'recovery-codes');
  });

  await step('log out, then log in with passphrase and TOTP code', async () => {
    const before = (await owner.cookies()).find((c) => c.name === '__Host-wb_session').value;
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login$/);
    await page.getByLabel('Email').fill(ownerEmail);
    await page.getByLabel('Passphrase').fill('wrong passphrase entirely');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('The email or passphrase is wrong.').waitFor();
    expectAnswered(owner, 401);
    await page.getByLabel('Passphrase').fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.equal(await heading(page), 'Second factor');
    await visit(page, 'second-factor');
    await page.getByLabel('Authentication code').fill(totp(totpSecret));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForURL(new RegExp(`${companyPath}$`));
    const after = (await owner.cookies()).find((c) => c.name === '__Host-wb_session').value;
    assert.notEqual(after, before, 'a new session id at login');
  });

  await step('create accounts (keyboard: g a)', async () => {
    await page.keyboard.press('g');
    await page.keyboard.press('a');
    await page.waitForURL(/\/accounts/);
    for (const [code, name, type] of [
      ['1000', 'Bank', 'asset'], ['1100', 'Cash', 'asset'], ['4000', 'Sales', 'income'], ['5000', 'Supplies', 'expense'],
    ]) {
      await page.getByLabel('Code', { exact: true }).fill(code);
      await page.getByLabel('Name', { exact: true }).fill(name);
      await page.getByLabel('Type').selectOption(type);
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByText(`Account ${code} created.`).waitFor();
    }
    await page.getByLabel('Code', { exact: true }).fill('1000');
    await page.getByLabel('Name', { exact: true }).fill('Duplicate');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('already exists').waitFor();
    expectAnswered(owner, 409);
    await page.goto(`${base}${companyPath}/accounts`);
    assert.ok(await page.locator('.tree').getByText('1000 Bank').isVisible());
    await visit(page, 'accounts');
  });

  await step('post a five-line entry in two currencies (keyboard: n)', async () => {
    await page.keyboard.press('n');
    await page.waitForURL(/\/entries\/new$/);
    await visit(page, 'new-entry');
    await page.getByLabel('Description').fill('Market day takings');
    await page.getByLabel('Reference (optional)').fill('MKT-1');
    const lines = [
      ['1000', '60.00', '', 'EUR'], ['1100', '40.00', '', 'EUR'], ['4000', '', '100.00', 'EUR'],
      ['1000', '25.50', '', 'USD'], ['4000', '', '25.50', 'USD'],
    ];
    await page.getByRole('button', { name: 'Add line' }).click();
    for (const [i, [account, debit, credit, currency]] of lines.entries()) {
      await page.getByLabel(`Account, line ${i + 1}`, { exact: true }).fill(account);
      await page.getByLabel(`Debit, line ${i + 1}`, { exact: true }).fill(debit);
      await page.getByLabel(`Credit, line ${i + 1}`, { exact: true }).fill(credit);
      await page.getByLabel(`Currency, line ${i + 1}`, { exact: true }).fill(currency);
      if (i === 2) {
        // EUR balances, USD not yet entered.
        assert.equal((await page.locator('[data-balance]').textContent()).trim(), 'Balanced');
      }
      if (i === 3) {
        assert.equal((await page.locator('[data-balance]').textContent()).trim(), 'Off by 25.50 USD');
      }
    }
    assert.equal((await page.locator('[data-balance]').textContent()).trim(), 'Balanced');
    // A double click posts once (the form is sent once; the key replays).
    await page.getByRole('button', { name: 'Post entry' }).dblclick();
    await page.waitForURL(/\/entries\?posted=\d+/);
    entryId = new URL(page.url()).searchParams.get('posted');
    assert.ok(entryId);
    const rows = page.locator('#entries tbody tr', { hasText: 'Market day takings' });
    assert.equal(await rows.count(), 1, 'posted once');
    await rows.first().locator('summary').click();
    assert.ok(await rows.first().locator('details table').getByText('25.50 USD').first().isVisible());
    await visit(page, 'entries');
  });

  await step('filtering the entries swaps only the results (htmx), and works as a plain GET', async () => {
    await page.goto(`${base}${companyPath}/entries`);
    await page.evaluate(() => { window.__stillHere = true; });
    await page.getByLabel('Text').fill('no such entry anywhere');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No entries match.').waitFor();
    assert.ok(await page.evaluate(() => window.__stillHere === true), 'the page was not reloaded');
    await page.waitForURL(/q=no(\+|%20)such(\+|%20)entry/); // the address bar follows the filter
    await page.getByLabel('Text').fill('market');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('#entries tbody tr', { hasText: 'Market day takings' }).waitFor();
    const plain = await page.request.get(`${base}${companyPath}/entries?q=market`);
    assert.match(await plain.text(), /Market day takings/);
  });

  await step('a bad entry shows the error next to its field', async () => {
    await page.goto(`${base}${companyPath}/entries/new`);
    await page.getByLabel('Description').fill('Unbalanced');
    await page.getByLabel('Account, line 1', { exact: true }).fill('9999');
    await page.getByLabel('Debit, line 1', { exact: true }).fill('10');
    await page.getByLabel('Account, line 2', { exact: true }).fill('4000');
    await page.getByLabel('Credit, line 2', { exact: true }).fill('10');
    await page.getByRole('button', { name: 'Post entry' }).click();
    await page.locator('#account-0-error').waitFor();
    assert.match(await page.locator('#account-0-error').textContent(), /unknown account/i);
    assert.equal(await page.getByLabel('Description').inputValue(), 'Unbalanced', 'input kept');
    expectAnswered(owner, 422);
    await visit(page, 'new-entry-error');
  });

  await step('trial balance shows the balances and drills down to postings', async () => {
    await page.keyboard.press('g');
    await page.keyboard.press('r');
    await page.waitForURL(/\/reports$/);
    await page.getByRole('link', { name: 'Trial balance' }).click();
    const bank = page.locator('#trial-balance tbody tr', { hasText: '1000 Bank' });
    assert.match(await bank.textContent(), /60\.00 EUR/);
    assert.match(await bank.textContent(), /25\.50 USD/);
    assert.equal((await page.locator('#trial-balance tfoot td.num').textContent()).trim(), '0', 'the books balance');
    await visit(page, 'trial-balance');
    await bank.getByRole('link').click();
    await page.waitForURL(/\/reports\/register\?account=1000/);
    assert.ok(await page.locator('#register').getByText('Market day takings').first().isVisible());
    await visit(page, 'register');
    for (const report of ['Balance sheet', 'Income statement']) {
      await page.getByRole('link', { name: report }).click();
      assert.equal(await heading(page), report);
      await visit(page, report.toLowerCase().replace(' ', '-'));
    }
    const csv = await page.request.get(`${base}${companyPath}/reports/trial-balance?format=csv`);
    assert.equal(csv.status(), 200);
    assert.match(csv.headers()['content-disposition'], /^attachment/);
    assert.match(await csv.text(), /"1000","Bank","EUR","60.00"/);
  });

  await step('attach a file to the entry and download it', async () => {
    await page.goto(`${base}${companyPath}/entries/${entryId}`);
    await visit(page, 'entry');
    await page.getByLabel('Attach a file').setInputFiles({
      name: 'receipt.txt', mimeType: 'text/plain', buffer: Buffer.from('market receipt 100 EUR'),
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByText('The file was attached.').waitFor();
    const link = page.getByRole('link', { name: 'receipt.txt' });
    const response = await page.request.get(new URL(await link.getAttribute('href'), base).href);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-disposition'], /^attachment/);
    assert.equal(await response.text(), 'market receipt 100 EUR');
  });

  await step('reverse the entry after a confirmation', async () => {
    await page.getByRole('button', { name: 'Reverse this entry…' }).click();
    assert.equal(await heading(page), 'Reverse entry');
    await visit(page, 'reverse-confirm');
    await page.getByRole('button', { name: `Yes, reverse entry #${entryId}` }).click();
    await page.getByText('The reversal was posted.').waitFor();
    await page.getByRole('link', { name: `entry #${entryId}` }).click();
    assert.ok(await page.getByText('Reversed by').isVisible());
  });

  let invitation;
  await step('invite a member', async () => {
    await page.goto(`${base}${companyPath}/members`);
    await visit(page, 'members');
    await page.getByLabel('Email', { exact: true }).fill(memberEmail);
    await page.getByLabel('Role', { exact: true }).selectOption('accountant');
    await page.getByRole('button', { name: 'Send invitation' }).click();
    const link = (await page.locator('[data-invitation-link]').textContent()).trim();
    invitation = link.slice(link.indexOf('#') + 1);
    assert.match(invitation, /^wbi_/);
  });

  await step('the invited member accepts in a second browser', async () => {
    const member = await newContext(browser);
    const other = await member.newPage();
    await other.goto(`${base}/accept-invitation#${invitation}`);
    assert.equal(await other.getByLabel('Invitation code').inputValue(), invitation, 'filled from the fragment');
    assert.ok(!other.url().includes('#'), 'the token leaves the address bar');
    await visit(other, 'accept-invitation');
    await other.getByLabel('Your name').fill('Mia Member');
    await other.getByLabel('Passphrase').fill(PASSPHRASE + ' two');
    await other.getByRole('button', { name: 'Accept invitation' }).click();
    await other.waitForURL(new RegExp(`${companyPath}$`));
    assert.equal((await other.locator('[data-company-name]').textContent()).trim(), company);
    // An accountant has no members page.
    const refused = await other.goto(`${base}${companyPath}/members`);
    assert.equal(refused.status(), 403);
    expectAnswered(member, 403);
    assertNoBrowserErrors(member);
    await member.close();
    await page.goto(`${base}${companyPath}/members`);
    assert.ok(await page.locator('#members').getByRole('cell', { name: memberEmail, exact: true }).isVisible());
  });

  await step('audit viewer shows the trail and verifies the chain', async () => {
    await page.goto(`${base}${companyPath}/audit`);
    const table = page.locator('#audit-events');
    assert.ok(await table.getByText('entry.post').first().isVisible());
    assert.ok(await table.getByText('auth.login').first().isVisible());
    await visit(page, 'audit');
    await page.getByLabel('Action').fill('entry.reverse');
    await page.getByRole('button', { name: 'Filter' }).click();
    assert.equal(await page.locator('#audit-events tbody tr').count(), 1);
    // The first signed checkpoint is written within 10 s of activity: until
    // then the verification says so, and asking again later is the answer.
    let text = '';
    for (let attempt = 0; attempt < 20; attempt++) {
      await Promise.all([
        page.waitForURL(/\/audit\/verify$/),
        page.getByRole('button', { name: 'Verify the chain now' }).click(),
      ]);
      text = await page.locator('main').innerText();
      if (!/no signed checkpoint covers this chain \(yet/.test(text)) break;
      await page.waitForTimeout(1000);
      await page.goto(`${base}${companyPath}/audit`);
    }
    // Whatever the answer, say it: a failed verification names its problem.
    assert.match(text, /Verified now: \d+ events/, `the verification page said: ${text.slice(0, 500)}`);
  });

  await step('create an export encrypted to a passphrase and download it', async () => {
    await page.getByRole('link', { name: 'Backups' }).click();
    assert.equal(await heading(page), 'Backups and exports');
    await visit(page, 'backups');
    await page.getByLabel('…or to a passphrase').fill('velvet harbour 92 quiet lantern');
    await page.getByRole('button', { name: 'Create export' }).click();
    await page.getByText('The export is ready.').waitFor();
    const href = await page.getByRole('link', { name: 'Download the export' }).getAttribute('href');
    const response = await page.request.get(new URL(href, base).href);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-disposition'], /^attachment/);
    const bytes = await response.body();
    assert.equal(bytes.subarray(0, 21).toString(), 'age-encryption.org/v1', 'an age file');
    await page.goto(`${base}${companyPath}/backups`);
    assert.equal(await page.locator('#exports tbody tr').count(), 1);
  });

  await step('restore the company to a point in time into a new company, after typing its name', async () => {
    await page.goto(`${base}${companyPath}/backups`);
    await page.getByText('The latest backed-up change').click();
    await page.getByRole('button', { name: 'Continue' }).click();
    assert.equal(await heading(page), 'Restore to a point in time');
    await visit(page, 'restore-confirm');
    await page.getByLabel(/Type the company's name/).fill('Not the name');
    await page.getByRole('button', { name: 'Restore into a new company' }).click();
    await page.getByText('The name does not match').first().waitFor();
    expectAnswered(owner, 422);
    await page.getByLabel(/Type the company's name/).fill(company);
    await page.getByRole('button', { name: 'Restore into a new company' }).click();
    assert.equal(await heading(page), 'Restore to a point in time');
    // The page follows the restore by itself (htmx) until it is done.
    await page.locator('#restored-company').waitFor({ timeout: 60_000 });
    await visit(page, 'restore-done');
    const restoredName = (await page.locator('#restored-company').textContent()).trim();
    assert.ok(restoredName.startsWith(`${company} (restored `), restoredName);
    await page.locator('#restored-company').click();
    assert.ok((await page.locator('header').textContent()).includes(restoredName), 'the header names the new company');
    const restoredPath = new URL(page.url()).pathname;
    assert.notEqual(restoredPath, companyPath);
    await page.goto(`${base}${restoredPath}/entries`);
    const restoredRows = await page.locator('#entries tbody tr').count();
    await page.goto(`${base}${companyPath}/entries`);
    assert.equal(restoredRows, await page.locator('#entries tbody tr').count(), 'the same entries');
    assert.ok(restoredRows >= 2);
    await page.goto(`${base}${companyPath}/backups`);
    assert.equal(await page.locator('#restores tbody tr').count(), 1);
    assert.match(await page.locator('#restores tbody tr').first().textContent(), /done/);
  });

  await step('end another session of mine from the account page', async () => {
    const other = await newContext(browser);
    const second = await other.newPage();
    await second.goto(`${base}/login`);
    await second.getByLabel('Email').fill(ownerEmail);
    await second.getByLabel('Passphrase').fill(PASSPHRASE);
    await second.getByRole('button', { name: 'Log in' }).click();
    // The next step of the TOTP window: each step is accepted once.
    await second.getByLabel('Authentication code').fill(totp(totpSecret, Date.now() + 30_000));
    await second.getByRole('button', { name: 'Verify' }).click();
    await second.waitForURL(new RegExp(`${companyPath}$`));
    await page.goto(`${base}/account`);
    const ends = page.locator('#sessions').getByRole('button', { name: /^End/ });
    assert.equal(await ends.count(), 1, 'only the other session can be ended here');
    await ends.first().click();
    await page.getByText('The session was ended.').waitFor();
    await second.goto(`${base}${companyPath}`);
    await second.waitForURL(/\/login/);
    expectAnswered(other, 401);
    await other.close();
  });

  await step('add a passkey on the account page, then log in with it instead of a code', async () => {
    // Chromium's virtual authenticator (DevTools protocol): a platform
    // authenticator that answers as if the user touched it.
    const cdp = await owner.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    await page.goto(`${base}/account`);
    await page.getByLabel('Name of the new passkey').fill('Test laptop');
    await page.getByLabel('Confirm with your passphrase').fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await visit(page, 'passkey-create');
    await page.getByRole('button', { name: 'Create the passkey' }).click();
    await page.getByText('The passkey was added').waitFor();
    assert.equal(await page.locator('#passkeys tbody tr').count(), 1);
    assert.match(await page.locator('#passkeys tbody tr').first().textContent(), /Test laptop/);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1, 'the authenticator holds the new credential');
    await visit(page, 'account-passkey');

    const before = (await owner.cookies()).find((c) => c.name === '__Host-wb_session').value;
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login$/);
    await page.getByLabel('Email').fill(ownerEmail);
    await page.getByLabel('Passphrase').fill(PASSPHRASE);
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.equal(await heading(page), 'Second factor');
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(new RegExp(`${companyPath}$`));
    const after = (await owner.cookies()).find((c) => c.name === '__Host-wb_session').value;
    assert.notEqual(after, before, 'a new session id at login');
    const used = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(used.credentials[0].signCount >= 1, 'the passkey signed the login');
    await page.goto(`${base}/account`);
    assert.doesNotMatch(await page.locator('#passkeys tbody tr').first().textContent(), /never/);
  });

  await step('help dialog (keyboard: ?)', async () => {
    await page.keyboard.press('?');
    assert.ok(await page.locator('#shortcuts').isVisible());
    await page.getByRole('button', { name: 'Close' }).click();
  });

  await step('the entries list and the entry form fit a 390 px phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const path of ['/entries', '/entries/new']) {
      await page.goto(`${base}${companyPath}${path}`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${path} scrolls sideways by ${overflow}px at 390px`);
      await screenshot(page, `phone${path.replaceAll('/', '-')}`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step('without JavaScript: log in, and a form sent twice posts one entry', async () => {
    const plain = await newContext(browser, { javaScriptEnabled: false });
    const p = await plain.newPage();
    await p.goto(`${base}/login`);
    await p.getByLabel('Email').fill(memberEmail);
    await p.getByLabel('Passphrase').fill(PASSPHRASE + ' two');
    await p.getByRole('button', { name: 'Log in' }).click();
    await p.waitForURL(new RegExp(`${companyPath}$`));
    await p.goto(`${base}${companyPath}/entries/new`);
    // The same form sent twice (a double click, a retry after a timeout):
    // same idempotency key, same content. The server answers the second
    // with the first entry instead of posting another.
    const key = await p.locator('input[name="idempotency_key"]').first().getAttribute('value');
    const csrf = await p.locator('input[name="_csrf"]').first().getAttribute('value');
    const body = new URLSearchParams();
    body.append('_csrf', csrf);
    body.append('idempotency_key', key);
    body.append('date', '2026-12-01');
    body.append('description', 'Sent twice');
    for (const [account, debit, credit] of [['5000', '7.00', ''], ['1100', '', '7.00']]) {
      body.append('account', account);
      body.append('debit', debit);
      body.append('credit', credit);
      body.append('currency', 'EUR');
    }
    const send = () => p.request.post(`${base}${companyPath}/entries`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(base).origin },
      data: body.toString(),
      maxRedirects: 0,
    });
    const first = await send();
    const second = await send();
    assert.equal(first.status(), 303);
    assert.equal(second.status(), 303);
    assert.equal(second.headers().location, first.headers().location, 'the same entry');
    await p.goto(`${base}${companyPath}/entries?q=sent+twice`);
    assert.equal(await p.locator('#entries tbody tr', { hasText: 'Sent twice' }).count(), 1, 'posted once');
    // The same key with other content is refused, not answered with the first entry.
    body.set('description', 'Sent twice, edited');
    const edited = await send();
    assert.notEqual(edited.status(), 303, 'an edited form under an old key is not posted');
    assertNoBrowserErrors(plain);
    await plain.close();
  });

  await step('data retention: a rule below the statutory minimum is refused naming it; the purge preview lists what would go', async () => {
    await page.goto(`${base}${companyPath}`);
    await page.getByRole('link', { name: 'Data retention' }).click();
    assert.equal(await heading(page), 'Data retention');
    await visit(page, 'retention');
    await page.getByLabel('Keep entries (years)').fill('3');
    await page.getByRole('button', { name: 'Save rules' }).click();
    await page.getByRole('alert').getByText(/entries_years is 3, below the statutory minimum/).waitFor();
    assert.match(await page.locator('#entries_years-error').textContent(), /below the statutory minimum/);
    expectAnswered(owner, 422);
    assert.equal(await page.getByLabel('Keep entries (years)').inputValue(), '3', 'what was typed stays');
    assert.equal(await page.getByLabel('Keep entries (years)').getAttribute('aria-invalid'), 'true');
    await visit(page, 'retention-refused');
    await page.getByLabel('Keep entries (years)').fill('12');
    await page.getByRole('button', { name: 'Save rules' }).click();
    await page.getByText('Retention rules saved.').waitFor();
    assert.equal(await page.getByLabel('Keep entries (years)').inputValue(), '12');
    await page.getByRole('button', { name: 'Preview the purge' }).click();
    assert.equal(await heading(page), 'Purge');
    await page.getByText('Nothing has changed yet.').waitFor();
    // This year's books are well inside twelve years: nothing is due.
    await page.getByText('Nothing is due: the rules let nothing go yet.').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Purge now' }).count(), 0);
    await visit(page, 'purge-preview');
  });

  await step('an allowlist that excludes me asks for confirmation, then locks me out', async () => {
    await page.goto(`${base}${companyPath}/security`);
    await visit(page, 'security');
    await page.getByLabel('Allowed addresses').fill('10.0.0.0/8');
    await page.getByRole('button', { name: 'Save policy' }).click();
    const confirm = page.getByLabel(/I understand that this allowlist excludes/);
    await confirm.waitFor();
    expectAnswered(owner, 409);
    await visit(page, 'security-lockout');
    await confirm.check();
    await page.getByRole('button', { name: 'Save policy' }).click();
    await page.getByText('Security policy saved.').waitFor();
    const after = await page.goto(`${base}${companyPath}`);
    assert.equal(after.status(), 403, 'my own address is now refused');
    expectAnswered(owner, 403);
  });

  await step('no CSP violation or script error on any page', async () => {
    assertNoBrowserErrors(owner);
  });

  await owner.close();
} catch (err) {
  failed = true;
  console.error(err?.stack || err);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
