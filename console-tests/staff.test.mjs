// End-to-end test of the staff console (/staff) and the company's
// staff-access page in a real (headless) Chromium: a support engineer asks
// for access, the company's owner approves on the transparency page, a
// manager approves in the management inbox, the engineer reads the
// company's entries under the grant, the owner sees the grant active with
// what was done under it, revokes it, and the engineer's next look is
// refused. Every page is checked with axe-core; any CSP violation or script
// error fails the run.
//
// Run by crates/wb-server/tests/alone/console_browser.rs, which starts a
// server, makes the two staff members on the host and passes:
//   WB_URL, WB_STAFF_PASSPHRASE, WB_SUPPORT_EMAIL, WB_SUPPORT_TOTP,
//   WB_MANAGER_EMAIL, WB_MANAGER_TOTP (base32 authenticator secrets)

import assert from 'node:assert/strict';
import {
  assertNoBrowserErrors, checkAccessibility, launchBrowser, newContext, screenshot, step,
  totp,
} from './lib.mjs';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};
const base = env('WB_URL');
const staffPassphrase = env('WB_STAFF_PASSPHRASE');
const support = { email: env('WB_SUPPORT_EMAIL'), totp: env('WB_SUPPORT_TOTP') };
const manager = { email: env('WB_MANAGER_EMAIL'), totp: env('WB_MANAGER_TOTP') };

const OWNER_PASSPHRASE = 'quasar marmot plinth 47 ferrous kettle';
const stamp = Date.now();
const ownerEmail = `owner${stamp}@example.com`;
const company = `Halvorsen Joinery ${stamp}`;
const reason = 'Ticket SUP-4471: the owner cannot find last month\'s sales entry';

/** Forgets the browser's log lines for refusals the test provoked on purpose. */
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

async function staffSignIn(page, who) {
  await page.goto(`${base}/staff/login`);
  await page.getByLabel('Staff email').fill(who.email);
  await page.getByLabel('Passphrase').fill(staffPassphrase);
  await page.getByLabel('Authentication code').fill(totp(who.totp));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/staff$/);
  assert.equal(await heading(page), 'Staff console');
}

const browser = await launchBrowser();
const contexts = [];
let failed = false;
try {
  const owner = await newContext(browser);
  const staff = await newContext(browser);
  const boss = await newContext(browser);
  contexts.push(owner, staff, boss);
  const ownerPage = await owner.newPage();
  const staffPage = await staff.newPage();
  const bossPage = await boss.newPage();
  let companyId;
  let grantId;

  await step('the company owner signs up', async () => {
    await ownerPage.goto(`${base}/signup`);
    await ownerPage.getByLabel('Company name').fill(company);
    await ownerPage.getByLabel('Email').fill(ownerEmail);
    await ownerPage.getByLabel('Passphrase').fill(OWNER_PASSPHRASE);
    await ownerPage.getByRole('button', { name: 'Create company' }).click();
    await ownerPage.waitForURL(/\/c\/[^/]+$/);
    companyId = new URL(ownerPage.url()).pathname.split('/')[2];
    assert.ok(companyId);
  });

  await step('the staff sign-in page renders under the CSP and passes axe', async () => {
    const response = await staffPage.goto(`${base}/staff/login`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(response.headers()['cache-control'], 'no-store');
    assert.equal(await heading(staffPage), 'Staff sign-in');
    await visit(staffPage, 'staff-login');
  });

  await step('the owner\'s customer cookie opens no staff page', async () => {
    await ownerPage.goto(`${base}/staff`);
    await ownerPage.waitForURL(/\/staff\/login$/);
  });

  await step('support signs in with passphrase and code into a __Host- staff cookie', async () => {
    await staffSignIn(staffPage, support);
    const cookies = await staff.cookies();
    const session = cookies.find((c) => c.name === '__Host-wb_staff');
    assert.ok(session, 'a __Host-wb_staff cookie');
    assert.ok(session.httpOnly && session.secure && session.sameSite === 'Strict');
    assert.ok(!cookies.some((c) => c.name === '__Host-wb_session'), 'no customer session');
    await visit(staffPage, 'staff-home');
    // The customer console's shortcuts do not apply here.
    await staffPage.keyboard.press('n');
    await staffPage.waitForTimeout(200);
    assert.match(new URL(staffPage.url()).pathname, /^\/staff$/);
    // The staff cookie opens no customer page.
    await staffPage.goto(`${base}/c/${companyId}`);
    await staffPage.waitForURL(/\/login/);
  });

  await step('outside a grant, the company\'s entries are refused', async () => {
    const response = await staffPage.goto(`${base}/staff/companies/${companyId}/entries`);
    assert.equal(response.status(), 403);
    expectAnswered(staff, 403);
  });

  await step('support finds the company and asks for access', async () => {
    await staffPage.goto(`${base}/staff/companies`);
    await staffPage.getByLabel('Company name or member email').fill(ownerEmail);
    await staffPage.getByRole('button', { name: 'Search' }).click();
    await staffPage.getByRole('link', { name: company }).click();
    assert.equal(await heading(staffPage), company);
    assert.ok(await staffPage.getByText(ownerEmail).isVisible());
    await visit(staffPage, 'staff-company');
    await staffPage.getByRole('link', { name: 'Ask for access to this company\'s content' }).click();
    assert.equal(await staffPage.getByLabel('Company id').inputValue(), companyId);
    await staffPage.getByLabel('Reason').fill(reason);
    await staffPage.getByLabel('Scope').selectOption('books:read');
    await staffPage.getByLabel('Duration (minutes)').fill('60');
    await staffPage.getByLabel('Ticket (optional)').fill('SUP-4471');
    await staffPage.getByRole('button', { name: 'Ask for access' }).click();
    await staffPage.getByText('Access requested.').waitFor();
    const grant = staffPage.locator('[data-grant]').first();
    grantId = await grant.getAttribute('data-grant');
    assert.equal(await grant.getAttribute('data-state'), 'pending');
    await visit(staffPage, 'staff-requests');
  });

  await step('the owner approves on the staff-access page', async () => {
    await ownerPage.goto(`${base}/c/${companyId}`);
    await ownerPage.getByRole('link', { name: 'Staff access' }).click();
    assert.equal(await heading(ownerPage), 'Staff access');
    const grant = ownerPage.locator(`[data-grant="${grantId}"]`);
    assert.ok((await grant.textContent()).includes(reason));
    await visit(ownerPage, 'company-access-pending');
    await grant.getByRole('button', { name: `Approve grant ${grantId}` }).click();
    await ownerPage.getByText('Grant approved.').waitFor();
  });

  await step('a manager approves in the management inbox', async () => {
    await staffSignIn(bossPage, manager);
    await bossPage.getByRole('link', { name: 'Approvals' }).click();
    assert.equal(await heading(bossPage), 'Approvals');
    const grant = bossPage.locator(`[data-grant="${grantId}"]`);
    await visit(bossPage, 'staff-approvals');
    await grant.getByRole('button', { name: `Approve grant ${grantId}` }).click();
    await bossPage.getByText('Grant approved.').waitFor();
  });

  await step('support reads the company\'s entries under the grant', async () => {
    const response = await staffPage.goto(`${base}/staff/companies/${companyId}/entries`);
    assert.equal(response.status(), 200);
    assert.equal(
      await staffPage.locator('[data-under-grant]').getAttribute('data-under-grant'),
      grantId,
    );
    await visit(staffPage, 'staff-entries-under-grant');
  });

  await step('the owner sees the grant active with what was done under it', async () => {
    const grant = ownerPage.locator(`[data-grant="${grantId}"]`);
    // The actions come from the central audit, which the forwarder fills
    // every second or so.
    const deadline = Date.now() + 20_000;
    for (;;) {
      await ownerPage.goto(`${base}/c/${companyId}/access`);
      const actions = grant.locator('[data-grant-actions]');
      if ((await actions.count()) > 0 && (await actions.textContent()).includes('entries.list')) break;
      assert.ok(Date.now() < deadline, 'the read under the grant never showed');
      await ownerPage.waitForTimeout(500);
    }
    assert.equal(await grant.getAttribute('data-state'), 'active');
    const text = await grant.textContent();
    assert.ok(text.includes('management: staff:'), text);
    await visit(ownerPage, 'company-access-active');
  });

  await step('the owner revokes the grant; support\'s next look is refused', async () => {
    await ownerPage.locator(`[data-grant="${grantId}"]`)
      .getByRole('button', { name: `Revoke grant ${grantId}` }).click();
    await ownerPage.getByText('Grant revoked.').waitFor();
    assert.equal(
      await ownerPage.locator(`[data-grant="${grantId}"]`).getAttribute('data-state'),
      'revoked',
    );
    const response = await staffPage.goto(`${base}/staff/companies/${companyId}/entries`);
    assert.equal(response.status(), 403);
    expectAnswered(staff, 403);
  });

  await step('the manager acknowledges the outside-a-grant alert', async () => {
    await bossPage.getByRole('link', { name: 'Alerts' }).click();
    assert.equal(await heading(bossPage), 'Alerts');
    // The monitor raises it from the refusal above, within a second or so.
    const open = bossPage.locator('[data-alert]')
      .filter({ hasText: 'staff-access-outside-grant' })
      .filter({ has: bossPage.getByRole('button', { name: /^Acknowledge/ }) })
      .first();
    const deadline = Date.now() + 20_000;
    while ((await open.count()) === 0) {
      assert.ok(Date.now() < deadline, 'no open staff-access-outside-grant alert');
      await bossPage.waitForTimeout(500);
      await bossPage.goto(`${base}/staff/alerts?state=open`);
    }
    await visit(bossPage, 'staff-alerts');
    const id = await open.getAttribute('data-alert');
    const alert = bossPage.locator(`[data-alert="${id}"]`);
    await alert.getByLabel(`Reason for alert ${id}`).fill('Seen: expected in the staff console test');
    await alert.getByRole('button', { name: `Acknowledge alert ${id}` }).click();
    await bossPage.getByText('Alert acknowledged.').waitFor();
    assert.ok((await alert.textContent()).includes('Seen: expected in the staff console test'));
  });

  await step('support signs out', async () => {
    await staffPage.goto(`${base}/staff`);
    await staffPage.getByRole('button', { name: 'Sign out' }).click();
    await staffPage.waitForURL(/\/staff\/login$/);
    await staffPage.goto(`${base}/staff`);
    await staffPage.waitForURL(/\/staff\/login$/);
  });

  await step('no CSP violation or script error on any page', async () => {
    for (const context of contexts) assertNoBrowserErrors(context);
  });
} catch (err) {
  failed = true;
  if (!String(err?.message).includes('browser error')) {
    for (const context of contexts) {
      for (const e of context.browserErrors ?? []) console.log(`# [${e.kind}] ${e.url}: ${e.text}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
