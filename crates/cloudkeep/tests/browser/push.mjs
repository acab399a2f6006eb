// Push approval in headless Chromium: after the password, the page asks
// the phone (the real cloudkeep-authenticator, run here), shows the number,
// and continues by itself when the app approves with it; a refusal sends
// it back to sign-in, saying why. Run by ../browser.rs with
//   node push.mjs BASE EMAIL PASSWORD SCREENSHOT_DIR APP_BINARY APP_STATE
import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';

const [base, email, password, shots, appBinary, appState] = process.argv.slice(2);
const run = promisify(execFile);

function app(...args) {
  return run(appBinary, ['--state', appState, ...args], { timeout: 60000 });
}

async function passwordStep(page) {
  await page.goto(`${base}/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/signin/second-factor`);
}

async function sendRequest(page) {
  await page.getByRole('button', { name: 'Send a request to my phone' }).click();
  await page.waitForURL(/\/signin\/second-factor\/authenticator\//);
  const number = (await page.locator('#push-number').textContent()).trim();
  assert.match(number, /^[1-9][0-9]$/);
  return number;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  // Approve: nobody touches the page after sending the request.
  const context = await browser.newContext({ locale: 'en-GB' });
  const page = await context.newPage();
  await passwordStep(page);
  const number = await sendRequest(page);
  assert.equal(
    await page.locator('#push-status').textContent(),
    'Waiting for your answer… This page continues by itself.',
  );
  await page.screenshot({ path: `${shots}/push-waiting.png`, fullPage: true });
  const { stdout } = await app('answer', '--number', number, '--approve', '--wait', '30');
  assert.match(stdout, /Approved: the sign-in continues\.\s*$/);
  await page.waitForURL(`${base}/`, { timeout: 30000 });
  await page.screenshot({ path: `${shots}/push-signed-in.png`, fullPage: true });

  // Refuse: the page goes back to sign-in by itself and says why.
  const other = await (await browser.newContext({ locale: 'en-GB' })).newPage();
  await passwordStep(other);
  await sendRequest(other);
  await app('answer', '--deny', '--wait', '30');
  await other.waitForURL(`${base}/signin`, { timeout: 30000 });
  assert.match(await other.locator('[role=alert]').textContent(), /refused on your phone/);
  await other.screenshot({ path: `${shots}/push-denied.png`, fullPage: true });
  console.log('browser checks passed');
} finally {
  await browser.close();
}
