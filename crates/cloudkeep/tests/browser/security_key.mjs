// Security keys in the console, in headless Chromium with a Chrome DevTools
// virtual authenticator (ctap2 over usb): register a key on the 2FA page,
// sign out, and sign in by "touching" it. The page is opened on localhost,
// the relying party. Run by ../browser.rs with
//   node security_key.mjs BASE EMAIL PASSWORD SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [base, email, password, shots] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  const context = await browser.newContext({ locale: 'en-GB' });
  const page = await context.newPage();
  page.on('console', (m) => console.error('console:', m.text()));
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: false, hasUserVerification: true, isUserVerified: true },
  });

  await page.goto(`${base}/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/`);

  await page.goto(`${base}/security/two-factor`);
  await page.getByLabel('Name this key').fill('YubiKey 5C');
  await page.getByRole('button', { name: 'Enable: Security key' }).click();
  await page.screenshot({ path: `${shots}/security-key-enrol.png`, fullPage: true });
  await page.getByRole('button', { name: 'Use my security key' }).click();
  await page.waitForSelector('#backup-codes');
  assert.equal((await page.locator('#backup-codes li').allTextContents()).length, 10);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, 'the key holds one credential');

  await page.goto(`${base}/security/two-factor`);
  assert.match(await page.locator('table').textContent(), /YubiKey 5C/);
  await page.getByRole('button', { name: 'Sign out' }).first().click();

  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/signin/second-factor`);
  await page.screenshot({ path: `${shots}/security-key-sign-in.png`, fullPage: true });
  await page.getByRole('button', { name: 'Use my security key' }).click();
  await page.waitForURL(`${base}/`);
  assert.match(await page.getByRole('heading', { level: 1 }).textContent(), /^Welcome/);
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.ok(after.credentials[0].signCount >= 1, 'the key signed');
  console.log('browser checks passed');
} finally {
  await browser.close();
}
