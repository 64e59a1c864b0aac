// Shared helpers for the web console's browser tests: the system Chromium
// driven by playwright-core (which never downloads a browser), error and
// Content-Security-Policy violation collection, axe-core accessibility checks,
// screenshots, TOTP codes and TAP-like step logging.

import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

/** Starts the system Chromium (env CHROMIUM, default /usr/bin/chromium), headless. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// Runs in every document before its own scripts. Init scripts are injected
// through the DevTools protocol, so the page's CSP does not block them.
const INIT_SCRIPT = `(() => {
  if (window.__wbCspListener) return;
  window.__wbCspListener = true;
  window.addEventListener('securitypolicyviolation', (e) => {
    try {
      window.__wbReportCsp({
        directive: e.effectiveDirective || e.violatedDirective,
        blockedURI: e.blockedURI,
        sourceFile: e.sourceFile,
        line: e.lineNumber,
        sample: e.sample,
        disposition: e.disposition,
      });
    } catch (_) {}
  }, true);
})();`;

/**
 * A browser context for https://127.0.0.1 with a self-signed certificate.
 * Every page in it reports into `context.browserErrors` (an array of
 * `{ kind, url, text }`, kind one of 'csp', 'console.error', 'pageerror',
 * 'crash'); see assertNoBrowserErrors and takeBrowserErrors.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
    ...options,
  });
  const errors = [];
  context.browserErrors = errors;

  await context.exposeBinding('__wbReportCsp', ({ frame }, v) => {
    errors.push({
      kind: 'csp',
      url: frame?.url() ?? '',
      text: `securitypolicyviolation: ${v.directive} blocked ${v.blockedURI || '(none)'}` +
        (v.sourceFile ? ` at ${v.sourceFile}:${v.line}` : '') +
        (v.sample ? ` sample=${JSON.stringify(v.sample)}` : ''),
    });
  });
  await context.addInitScript({ content: INIT_SCRIPT });

  const watch = (page) => {
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      const loc = msg.location();
      errors.push({
        kind: /Content[- ]Security[- ]Policy/i.test(text) ? 'csp' : 'console.error',
        url: loc?.url || page.url(),
        text: loc?.url ? `${text} (${loc.url}:${loc.lineNumber})` : text,
      });
    });
    page.on('pageerror', (err) => {
      errors.push({ kind: 'pageerror', url: page.url(), text: err.stack || String(err) });
    });
    page.on('crash', () => {
      errors.push({ kind: 'crash', url: page.url(), text: 'page crashed' });
    });
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  return context;
}

/** Returns the errors collected so far and forgets them (for expected errors). */
export function takeBrowserErrors(context) {
  return context.browserErrors.splice(0);
}

/** Throws, listing them, if any page of the context reported an error. */
export function assertNoBrowserErrors(context) {
  const errors = context.browserErrors ?? [];
  if (errors.length === 0) return;
  const list = errors.map((e) => `  [${e.kind}] ${e.url}: ${e.text}`).join('\n');
  throw new Error(`${errors.length} browser error(s):\n${list}`);
}

let axeSource;

/**
 * Runs axe-core on the page (WCAG 2.0/2.1/2.2 A and AA plus best practices)
 * and throws on any serious or critical violation. Lesser ones are logged as
 * `# ` comment lines. Returns the violations.
 *
 * axe is injected with page.evaluate, which goes through the DevTools
 * protocol and so works under a CSP without 'unsafe-inline'/'unsafe-eval'
 * (a <script> tag would be blocked).
 */
export async function checkAccessibility(page, name) {
  axeSource ??= readFileSync(join(here, 'node_modules/axe-core/axe.min.js'), 'utf8');
  const loaded = await page.evaluate(() => typeof window.axe === 'object').catch(() => false);
  if (!loaded) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'],
    });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      targets: v.nodes.map((n) => n.target.join(' ')),
    }));
  });
  const describe = (v) => {
    const more = v.targets.length > 3 ? ` (+${v.targets.length - 3} more)` : '';
    return `${v.id} [${v.impact}] ${v.help}: ${v.targets.slice(0, 3).join(', ')}${more}`;
  };
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of violations) {
    if (!bad.includes(v)) console.log(`# axe ${name}: ${describe(v)}`);
  }
  if (bad.length > 0) {
    throw new Error(`accessibility (${name}): ${bad.length} serious/critical violation(s):\n` +
      bad.map((v) => `  ${describe(v)}`).join('\n'));
  }
  return violations;
}

let shotCount = 0;

/** Full-page screenshot to $WB_SCREENSHOTS (default console-tests/screenshots)/NN-name.png. */
export async function screenshot(page, name) {
  const dir = process.env.WB_SCREENSHOTS || join(here, 'screenshots');
  mkdirSync(dir, { recursive: true });
  shotCount += 1;
  const safe = String(name).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '');
  const path = join(dir, `${String(shotCount).padStart(2, '0')}-${safe}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Decodes RFC 4648 base32 (case-insensitive; spaces, dashes and padding ignored). */
export function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = String(text).toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`invalid base32 character ${JSON.stringify(ch)}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** RFC 6238 TOTP (HMAC-SHA-1, 30 s steps, 6 digits unless told) for a base32 secret. */
export function totp(base32Secret, atMs = Date.now(), { digits = 6, period = 30 } = {}) {
  const counter = Math.floor(atMs / 1000 / period);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', base32Decode(base32Secret)).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return String(code).padStart(digits, '0');
}

/** Runs one named step, logging `ok - name` or `not ok - name` with its time; rethrows. */
export async function step(name, fn) {
  const start = performance.now();
  const ms = () => `${Math.round(performance.now() - start)} ms`;
  try {
    const result = await fn();
    console.log(`ok - ${name} (${ms()})`);
    return result;
  } catch (err) {
    console.log(`not ok - ${name} (${ms()})`);
    for (const line of String(err?.stack || err).split('\n')) console.log(`#   ${line}`);
    throw err;
  }
}
