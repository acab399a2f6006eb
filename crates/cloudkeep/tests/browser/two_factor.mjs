// Two-step verification in the console, in headless Chromium: enable an
// authenticator app from the key shown on the page (codes computed here
// with node's own crypto), keep the backup codes (download), create an
// application password, then sign in with password + code and with a
// backup code through "Use another method". Run by ../browser.rs with
//   node two_factor.mjs BASE EMAIL PASSWORD SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { base32, totp } from './totp.mjs';
import { readFile } from 'node:fs/promises';
import assert from 'node:assert/strict';

const [base, email, password, shots] = process.argv.slice(2);

async function signIn(page) {
  await page.goto(`${base}/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  const context = await browser.newContext({ locale: 'en-GB', acceptDownloads: true });
  const page = await context.newPage();
  await signIn(page);
  await page.waitForURL(`${base}/`);

  await page.getByRole('link', { name: 'Two-step verification' }).first().click();
  assert.equal(await page.locator('#two-factor-status').textContent(), 'Two-step verification is off.');
  await page.getByLabel('Name this device').fill('Phone');
  await page.getByRole('button', { name: 'Enable: Authenticator app (any OTP app)' }).click();

  // The enrolment page: a QR code and the key in text.
  assert.ok(await page.locator('.qr svg').isVisible());
  const key = base32(await page.locator('#totp-secret').textContent());
  assert.equal(key.length, 20);
  await page.screenshot({ path: `${shots}/totp-enrol.png`, fullPage: true });
  await page.getByLabel('Code the app shows now').fill(totp(key));
  await page.getByRole('button', { name: 'Confirm' }).click();

  // Ten backup codes, shown once, with Download and Print.
  const codes = (await page.locator('#backup-codes li').allTextContents()).map((c) => c.trim());
  assert.equal(codes.length, 10);
  assert.ok(await page.getByRole('button', { name: 'Print' }).isVisible(), 'Print works with scripts on');
  await page.screenshot({ path: `${shots}/backup-codes.png`, fullPage: true });
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download (.txt)' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'cloudkeep-backup-codes.txt');
  const file = await readFile(await download.path(), 'utf8');
  for (const code of codes) assert.ok(file.includes(code), `${code} in the file`);
  await page.getByRole('link', { name: 'I have kept my codes' }).click();
  assert.equal(await page.locator('#two-factor-status').textContent(), 'Two-step verification is on.');
  assert.equal(await page.locator('#backup-remaining').textContent(), 'Unused backup codes: 10 of 10.');
  await page.screenshot({ path: `${shots}/two-factor.png`, fullPage: true });

  // An application password for a sync client.
  await page.getByRole('link', { name: 'Application passwords' }).first().click();
  await page.getByLabel('Program').fill('NAS QNAP');
  await page.getByRole('button', { name: 'Create' }).click();
  const appPassword = await page.locator('#new-app-password').textContent();
  assert.match(appPassword, /^([a-z2-9]{4}-){6}[a-z2-9]{4}$/);
  await page.screenshot({ path: `${shots}/app-passwords.png`, fullPage: true });

  // Sign in again: the password, then the code from the app.
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await signIn(page);
  await page.waitForURL(`${base}/signin/second-factor`);
  await page.screenshot({ path: `${shots}/second-step.png`, fullPage: true });
  await page.goto(`${base}/security`);
  assert.equal(new URL(page.url()).pathname, '/signin/second-factor', 'nothing else until the second step');
  await page.getByLabel('Code from your authenticator app').fill(totp(key, 1));
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${base}/`);

  // And with a backup code, through "Use another method".
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await signIn(page);
  await page.waitForURL(`${base}/signin/second-factor`);
  await page.getByRole('link', { name: 'Use another method' }).click();
  await page.getByRole('link', { name: 'Use a backup code' }).click();
  await page.getByLabel('Backup code').fill('wrong-code');
  await page.getByRole('button', { name: 'Continue' }).click();
  assert.match(await page.getByRole('alert').textContent(), /Attempts left: 4/);
  await page.getByLabel('Backup code').fill(codes[3]);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${base}/`);
  await page.goto(`${base}/security/two-factor`);
  assert.equal(await page.locator('#backup-remaining').textContent(), 'Unused backup codes: 9 of 10.');
  console.log('browser checks passed');
} finally {
  await browser.close();
}
