// A drive in the console, in headless Chromium: an admin makes a folder,
// uploads a file through the form, finds the WebDAV addresses, and makes
// members read-only on "Who can use this drive"; a member then reads and
// downloads but gets no forms that change the drive. Run by ../browser.rs
// with
//   node drives.mjs BASE ADMIN_EMAIL MEMBER_EMAIL PASSWORD DRIVE_ID SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { readFile, writeFile } from 'node:fs/promises';
import assert from 'node:assert/strict';

const [base, admin, member, password, drive, shots] = process.argv.slice(2);

async function signIn(page, email) {
  await page.goto(`${base}/signin`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  const ana = await (await browser.newContext({ locale: 'en-GB' })).newPage();
  await signIn(ana, admin);
  await ana.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Drives' }).click();
  await ana.waitForURL(`${base}/drives`);
  await ana.getByRole('link', { name: 'Shared', exact: true }).click();
  await ana.waitForURL(`${base}/drives/${drive}/files`);

  // A folder, then a file uploaded into it through the form.
  await ana.getByLabel('New folder').fill('Año 2026');
  await ana.getByRole('button', { name: 'Create the folder' }).click();
  await ana.getByRole('link', { name: 'Año 2026' }).click();
  const upload = `${shots}/informe trimestral.txt`;
  await writeFile(upload, 'quarterly figures\n');
  await ana.getByLabel('Files to upload').setInputFiles(upload);
  await ana.getByRole('button', { name: 'Upload', exact: true }).click();
  await ana.getByRole('link', { name: 'informe trimestral.txt' }).waitFor();
  assert.ok((await ana.locator('#connect-path').textContent()).endsWith(`/dav/drives/${drive}/A%C3%B1o%202026/`));
  await ana.screenshot({ path: `${shots}/drive-folder.png`, fullPage: true });

  // Members read only; the page says what each member gets.
  await ana.goto(`${base}/drives/${drive}/files`);
  await ana.getByRole('link', { name: 'Who can use this drive' }).click();
  await ana.waitForURL(`${base}/drives/${drive}/access`);
  await ana.getByLabel('What members may do').selectOption({ label: 'Read only' });
  await ana.getByRole('button', { name: 'Save' }).first().click();
  await ana.getByText('The access was saved').waitFor();
  assert.equal(await ana.locator(`td[data-member="${member}"]`).textContent(), 'Read only');
  assert.equal(await ana.locator(`td[data-member="${admin}"]`).textContent(), 'Read and write');
  await ana.screenshot({ path: `${shots}/drive-access.png`, fullPage: true });

  // The member: reads and downloads, and sees why nothing else is offered.
  const context = await browser.newContext({ locale: 'en-GB', acceptDownloads: true });
  const bo = await context.newPage();
  await signIn(bo, member);
  await bo.goto(`${base}/drives`);
  assert.ok(await bo.getByRole('cell', { name: 'Read only' }).isVisible());
  await bo.getByRole('link', { name: 'Shared', exact: true }).click();
  assert.ok(await bo.locator('#read-only-note').isVisible());
  assert.equal(await bo.getByRole('button', { name: 'Upload', exact: true }).count(), 0);
  assert.equal(await bo.getByRole('button', { name: 'Delete' }).count(), 0);
  assert.equal(await bo.getByRole('link', { name: 'Import external data' }).count(), 0);
  await bo.getByRole('link', { name: 'Año 2026' }).click();
  const [download] = await Promise.all([
    bo.waitForEvent('download'),
    bo.getByRole('link', { name: 'informe trimestral.txt' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'informe trimestral.txt');
  assert.equal(await readFile(await download.path(), 'utf8'), 'quarterly figures\n');
  await bo.screenshot({ path: `${shots}/drive-read-only.png`, fullPage: true });

  console.log('browser checks passed');
} finally {
  await browser.close();
}
