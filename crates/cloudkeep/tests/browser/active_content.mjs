// A member's upload must not run as the console (issue 21, item 5). Bo, an
// ordinary member, has put evil.html and evil.svg on the drive; their
// scripts read the console's API synchronously with whoever opens them
// and write what they read into the page. Ana, an admin signed in to the
// console and to the drive's WebDAV address (her browser has her
// application password), opens their WebDAV links and the console's
// download links: each comes as a download, never as a page, and nothing
// the scripts could have read shows up. Run by ../browser.rs with
//   node active_content.mjs BASE VICTIM_EMAIL PASSWORD APP_PASSWORD DRIVE_ID SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [base, victim, password, appPassword, drive, shots] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

/// Opens `url`; returns the download it started, or the page's markup
/// when the browser rendered it instead.
async function open(page, url) {
  const downloaded = page.waitForEvent('download').catch(() => null);
  try {
    await page.goto(url, { waitUntil: 'load' });
  } catch (e) {
    // Chromium ends a navigation that becomes a download with this.
    if (!/Download is starting/.test(e.message)) throw e;
    return { download: await downloaded };
  }
  return { rendered: await page.content() };
}

try {
  const context = await browser.newContext({
    locale: 'en-GB',
    acceptDownloads: true,
    httpCredentials: { username: victim, password: appPassword },
  });
  const ana = await context.newPage();
  await ana.goto(`${base}/signin`);
  await ana.getByLabel('Email').fill(victim);
  await ana.getByLabel('Password').fill(password);
  await ana.getByRole('button', { name: 'Sign in' }).click();
  await ana.waitForURL(`${base}/`);
  // Signed in: the API answers her session with her address.
  const me = await ana.evaluate(async () => (await fetch('/api/v1/me')).text());
  assert.ok(me.includes(victim), me);

  for (const name of ['evil.html', 'evil.svg']) {
    const url = `${base}/dav/drives/${drive}/${name}`;
    const seen = await open(ana, url);
    if (seen.rendered !== undefined) {
      // Rendered after all: then its script must not have read anything.
      await ana.screenshot({ path: `${shots}/active-${name}.png`, fullPage: true });
      assert.ok(!seen.rendered.includes(victim), `${name} read the console as ${victim}:\n${seen.rendered}`);
      assert.ok(!seen.rendered.includes('stolen:'), `${name} ran its script:\n${seen.rendered}`);
    }
    assert.ok(seen.download, `${name} was shown as a page instead of saved`);
    assert.equal(seen.download.suggestedFilename(), name);

    // The console's own download link of the same file.
    const viaConsole = await open(ana, `${base}/drives/${drive}/files/${name}`);
    assert.ok(viaConsole.download, `the console showed ${name} as a page`);
    assert.equal(viaConsole.download.suggestedFilename(), name);
  }

  console.log('browser checks passed');
} finally {
  await browser.close();
}
