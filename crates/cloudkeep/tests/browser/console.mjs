// The console in headless Chromium: setup, sign-in with and without "keep
// me signed in" (what survives reopening the browser), keyboard access,
// language switching, sign-out. Run by ../browser.rs with
//   node console.mjs SETUP_LINK SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [setupLink, shots] = process.argv.slice(2);
const base = new URL(setupLink).origin;
const password = 'violet tractor sunrise 42';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  const first = await browser.newContext({ locale: 'en-GB' });
  const page = await first.newPage();

  // Setup, filled in through the labels (so every field has one).
  await page.goto(setupLink);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await page.getByLabel('Organization name').fill('Acme Cooperative');
  await page.getByLabel('Your name').fill('Ana García');
  await page.getByLabel('Email').fill('ana@example.org');
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await page.screenshot({ path: `${shots}/setup.png`, fullPage: true });
  await page.getByRole('button', { name: 'Create and sign in' }).click();
  await page.waitForURL(`${base}/`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Welcome, Ana García');
  await page.screenshot({ path: `${shots}/home.png`, fullPage: true });

  // Keyboard: the first Tab reaches the skip link, which moves to the content.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');

  // Security page: this session is listed.
  await page.getByRole('link', { name: 'Security', exact: true }).click();
  await page.waitForURL(`${base}/security`);
  assert.ok(await page.getByText('(this session)').isVisible());
  await page.screenshot({ path: `${shots}/security.png`, fullPage: true });

  // Without "keep me signed in" the cookie dies with the browser.
  let cookies = await first.cookies();
  const session = cookies.find((c) => c.name === 'ck_session');
  assert.equal(session.expires, -1, 'a browser-session cookie');
  assert.ok(session.httpOnly && session.sameSite === 'Lax');
  const reopened = await browser.newContext();
  await reopened.addCookies(cookies.filter((c) => c.expires !== -1));
  const again = await reopened.newPage();
  await again.goto(`${base}/`);
  assert.equal(new URL(again.url()).pathname, '/signin', 'reopening asks to sign in again');

  // Sign out, then sign in with "keep me signed in": it survives reopening.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${base}/signin`);
  await page.getByLabel('Email').fill('ana@example.org');
  await page.getByLabel('Password').fill('wrong password here');
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.equal(await page.getByRole('alert').textContent(), 'Wrong email or password.');
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Keep me signed in').check();
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/`);
  cookies = await first.cookies();
  assert.ok(cookies.find((c) => c.name === 'ck_session').expires > Date.now() / 1000 + 86400);
  const later = await browser.newContext();
  await later.addCookies(cookies.filter((c) => c.expires !== -1));
  const resumed = await later.newPage();
  await resumed.goto(`${base}/`);
  assert.equal(new URL(resumed.url()).pathname, '/', 'still signed in after reopening');

  // Language: the switcher on every page, remembered.
  await page.getByLabel('Language').selectOption('es');
  await page.getByRole('button', { name: 'Change' }).click();
  await page.waitForURL(`${base}/`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Hola, Ana García');
  await page.goto(`${base}/security`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Seguridad');
  await page.screenshot({ path: `${shots}/security-es.png`, fullPage: true });
  const offered = await page.getByLabel('Idioma').locator('option').evaluateAll((o) => o.map((x) => x.value));
  assert.deepEqual(offered, ['en', 'es', 'fr', 'de', 'it'], 'the switcher offers every language');
  await page.getByLabel('Idioma').selectOption('de');
  await page.getByRole('button', { name: 'Cambiar', exact: true }).click();
  await page.waitForURL(`${base}/security`);
  assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sicherheit');
  assert.equal(await page.locator('html').getAttribute('lang'), 'de');
  console.log('browser checks passed');
} finally {
  await browser.close();
}
