// Real headless Chromium sign-in through rampart (used by tests/auth.rs).
// Env: START_URL (a rampart route URL on *.localhost), LOGIN (default alice@example.com),
//      CHROMIUM (default /usr/bin/chromium), SHOT (optional screenshot path).
// Prints one line: RESULT {"url":…,"status":…,"email":…,"text":…,"cookies":[…]}
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// playwright-core is installed beside the test OP (tests/oidc/node_modules).
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'oidc', 'package.json'));
const { chromium } = require('playwright-core');

const start = process.env.START_URL;
const login = process.env.LOGIN || 'alice@example.com';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--host-resolver-rules=MAP *.localhost 127.0.0.1'],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(start);                                   // rampart -> authenticate -> OP login form
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (await page.locator('input[name=prompt][value=consent]').count()) {
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  // With response_mode=form_post the OP's page submits the callback by script: wait for the
  // navigations to land back on the app.
  await page.waitForURL((u) => u.href.startsWith(start), { timeout: 10000 }).catch(() => {});
  await page.waitForLoadState('load');
  const status = (await page.locator('#status').count()) ? await page.textContent('#status') : '';
  const email = (await page.locator('#email').count()) ? await page.textContent('#email') : '';
  const cookies = (await context.cookies()).map((c) => ({ name: c.name, domain: c.domain, secure: c.secure, httpOnly: c.httpOnly }));
  if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT });
  console.log('RESULT ' + JSON.stringify({
    url: page.url(), status, email, text: (await page.textContent('body')).trim().slice(0, 300), cookies,
  }));
} finally {
  await browser.close();
}
