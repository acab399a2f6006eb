// Every console page, in headless Chromium, at 1280×800 and 390×844, in
// English and Spanish: nothing scrolls sideways, axe-core finds no serious
// or critical violation, and each page leaves a screenshot
// (LANG-SIZE-PAGE.png). Also a keyboard-only walk (Tab, Enter, Space):
// sign-in with a TOTP code, creating an application password, removing a
// member. axe-core is injected past the console's Content-Security-Policy
// (bypassCSP), which forbids inline scripts. Run by ../browser.rs with
//   node tour.mjs SETUP_LINK BASE ADMIN MEMBER PASSWORD TOTP_SECRET DRIVE OUTBOX SCREENSHOT_DIR
// where SETUP_LINK belongs to a second, not yet set up server.
import { chromium } from 'playwright-core';
import { base32, totp } from './totp.mjs';
import { readdir, readFile } from 'node:fs/promises';
import assert from 'node:assert/strict';
import axe from 'axe-core';

const [setupLink, base, admin, member, password, secret, drive, outbox, shots] = process.argv.slice(2);
const sizes = [
  { name: 'desktop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
];
const problems = [];
let checked = 0;

// The page as it is now, at both sizes: no sideways scrolling, no serious
// or critical axe violation, a screenshot. Problems are collected, so one
// run reports them all.
async function check(page, lang, name, at = sizes) {
  for (const size of at) {
    await page.setViewportSize({ width: size.width, height: size.height });
    const where = `${lang} ${size.name} ${name} (${new URL(page.url()).pathname})`;
    const { scroll, inner } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      inner: window.innerWidth,
    }));
    if (scroll > inner) problems.push(`${where}: ${scroll} px wide in a ${inner} px window`);
    if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: axe.source });
    const { violations } = await page.evaluate(() =>
      window.axe.run(document, { resultTypes: ['violations'] }),
    );
    for (const v of violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')) {
      const nodes = v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(' | ');
      problems.push(`${where}: ${v.impact} ${v.id} (${v.help}) at ${nodes}`);
    }
    await page.screenshot({ path: `${shots}/${lang}-${size.name}-${name}.png`, fullPage: true });
    checked += 1;
  }
}

async function submit(page, form) {
  await Promise.all([page.waitForNavigation(), page.locator(`${form} button[type=submit]`).first().click()]);
}

// Presses Tab until the focused element matches `selector`; fails when
// the keyboard never gets there.
async function tabTo(page, selector) {
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  assert.fail(`Tab never reaches ${selector} on ${page.url()}`);
}

async function focused(page, selector) {
  return page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector);
}

async function setLanguage(context, lang) {
  const cookie = { name: 'ck_lang', value: lang, sameSite: 'Lax' };
  await context.addCookies([
    { ...cookie, url: base },
    { ...cookie, url: new URL(setupLink).origin },
  ]);
}

async function passwordStep(page) {
  await page.goto(`${base}/signin`);
  await page.locator('#email').fill(admin);
  await page.locator('#password').fill(password);
  await submit(page, 'form[action="/signin"]');
  assert.equal(new URL(page.url()).pathname, '/signin/second-factor');
}

async function invitationLink() {
  for (const name of await readdir(outbox)) {
    const text = (await readFile(`${outbox}/${name}`, 'utf8')).replace(/=\r?\n/g, '');
    if (!text.includes('cy@example.org')) continue;
    const found = text.match(/https?:\/\/[^\s"<>]*\/invitations\/[A-Za-z0-9_=3D-]+/);
    if (found) return found[0].replace(/=3D/g, '=');
  }
  return null;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});

try {
  // Keyboard only: sign in with the password and a TOTP code.
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 800 }, bypassCSP: true });
  await setLanguage(context, 'en');
  const page = await context.newPage();
  await page.goto(`${base}/signin`);
  assert.ok(await focused(page, '#email'), 'the email field has the focus');
  await page.keyboard.type(admin);
  await tabTo(page, '#password');
  await page.keyboard.type(password);
  await tabTo(page, 'form[action="/signin"] button[type=submit]');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  assert.equal(new URL(page.url()).pathname, '/signin/second-factor');
  if (!(await focused(page, '#code[inputmode=numeric]')) || (await page.locator('#push-send').count()) > 0) {
    // The app is offered first: "Use another method", then the TOTP app.
    await tabTo(page, 'a[href="/signin/second-factor?method=choose"]');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    await tabTo(page, 'a[href*="method=totp"]');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  }
  assert.ok(await focused(page, '#code'), 'the code field has the focus');
  await page.keyboard.type(totp(base32(secret), 1));
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  assert.equal(new URL(page.url()).pathname, '/', 'signed in with the keyboard');
  const org = (await page.locator('a[href$="/members"]').first().getAttribute('href')).split('/')[2];

  // An invitation, for its page.
  await page.goto(`${base}/orgs/${org}/members`);
  await page.locator('#invite-email').fill('cy@example.org');
  await submit(page, `form[action="/orgs/${org}/invitations"]`);
  let invitation = null;
  for (let i = 0; i < 100 && !invitation; i++) {
    invitation = await invitationLink();
    if (!invitation) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(invitation, 'the invitation email is in the outbox');

  for (const lang of ['en', 'es']) {
    await setLanguage(context, lang);
    const go = (path) => page.goto(`${base}${path}`);
    await go('/');
    assert.equal(await page.locator('html').getAttribute('lang'), lang);
    assert.equal(await page.locator('nav a[aria-current=page]').getAttribute('href'), '/');
    await check(page, lang, 'home');
    // On a phone the navigation is behind "Menu", which opens without script.
    await page.setViewportSize({ width: 390, height: 844 });
    assert.ok(!(await page.locator('nav a[href="/drives"]').isVisible()), 'the menu starts closed');
    await page.locator('details.menu > summary').click();
    assert.ok(await page.locator('nav a[href="/drives"]').isVisible(), 'the menu opens');
    await check(page, lang, 'menu-open', [sizes[1]]);
    await go('/security');
    await check(page, lang, 'security');
    await go('/security/two-factor');
    assert.equal(
      await page.locator('nav a[aria-current=page]').getAttribute('href'),
      '/security/two-factor',
      'one current entry, the most precise',
    );
    await check(page, lang, 'two-factor');
    await page.locator('#backup-password').fill(password);
    await submit(page, 'form[action="/security/two-factor/backup-codes"]');
    await page.locator('#backup-codes').waitFor();
    await check(page, lang, 'backup-codes');
    for (const kind of ['totp', 'authenticator', 'security_key', 'sms']) {
      await go('/security/two-factor');
      const form = `form[action="/security/two-factor/${kind}"]`;
      if ((await page.locator(form).count()) === 0) continue;
      if (kind === 'sms') await page.locator('#phone').fill('+41 79 123 45 67');
      await submit(page, form);
      await check(page, lang, `enrol-${kind}`);
    }
    await go('/security/app-passwords');
    await check(page, lang, 'app-passwords');
    await page.locator('#app-name').fill(`Thunderbird ${lang}`);
    await submit(page, 'form[action="/security/app-passwords"]');
    await page.locator('#new-app-password').waitFor();
    await check(page, lang, 'app-password-created');
    await go(`/orgs/${org}/members`);
    await check(page, lang, 'org-members');
    await go(`/orgs/${org}/members?filter=without`);
    await check(page, lang, 'org-members-without-2fa');
    await go(`/orgs/${org}/security`);
    await check(page, lang, 'org-security');
    await page.locator('#require').check();
    await submit(page, `form[action="/orgs/${org}/security"]`);
    await page.locator('#confirm-policy').waitFor();
    await check(page, lang, 'org-security-confirm');
    await go('/drives');
    await check(page, lang, 'drives');
    await go(`/drives/${drive}/files`);
    assert.equal(await page.locator('nav a[aria-current=true]').getAttribute('href'), '/drives');
    await check(page, lang, 'drive-files');
    await page.locator('a[href*="A%C3%B1o"], a[href*="Año"]').first().click();
    await page.locator('#upload-file').waitFor();
    await check(page, lang, 'drive-folder');
    await go(`/drives/${drive}/access`);
    await check(page, lang, 'drive-access');
    await go(`/drives/${drive}/imports`);
    await check(page, lang, 'drive-imports');
    await Promise.all([page.waitForNavigation(), page.locator(`a[href^="/drives/${drive}/imports/"]`).first().click()]);
    await check(page, lang, 'drive-import');
    await go('/console/style');
    await check(page, lang, 'style');
    await page.emulateMedia({ colorScheme: 'dark' });
    await check(page, lang, 'style-dark');
    await go('/security/two-factor');
    await check(page, lang, 'two-factor-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // Pages before sign-in, in a browser of their own.
    const anonymous = await browser.newContext({ locale: lang === 'es' ? 'es-ES' : 'en-GB', bypassCSP: true });
    await setLanguage(anonymous, lang);
    const visitor = await anonymous.newPage();
    await visitor.goto(setupLink);
    await check(visitor, lang, 'setup');
    await visitor.goto(`${base}/signin`);
    await check(visitor, lang, 'signin');
    await visitor.locator('#email').fill(admin);
    await visitor.locator('#password').fill('wrong password here');
    await submit(visitor, 'form[action="/signin"]');
    await visitor.locator('#form-error').waitFor();
    await check(visitor, lang, 'signin-refused');
    await visitor.goto(invitation);
    await visitor.locator('#invitation-text').waitFor();
    await check(visitor, lang, 'invitation');
    await visitor.goto(`${base}/invitations/no-such-invitation`);
    await check(visitor, lang, 'message');
    await passwordStep(visitor);
    await check(visitor, lang, 'second-step');
    await visitor.goto(`${base}/signin/second-factor?method=choose`);
    await check(visitor, lang, 'second-step-choose');
    const choices = await visitor.locator('ul.choices a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
    assert.ok(choices.length >= 3, `methods to choose from: ${choices}`);
    for (const href of choices) {
      await visitor.goto(`${base}${href}`);
      await check(visitor, lang, `second-step-${new URL(href, base).searchParams.get('method')}`);
    }
    await visitor.goto(`${base}/signin/second-factor?method=authenticator`);
    await Promise.all([visitor.waitForURL(/\/signin\/second-factor\/authenticator\//), visitor.locator('#push-send').click()]);
    await visitor.locator('#push-number').waitFor();
    await check(visitor, lang, 'push-wait');
    await anonymous.close();
  }

  // French, German and Italian: every signed-in page people read, at both
  // sizes (longer words are what breaks a phone layout).
  for (const lang of ['fr', 'de', 'it']) {
    await setLanguage(context, lang);
    for (const [name, path] of [
      ['home', '/'],
      ['security', '/security'],
      ['two-factor', '/security/two-factor'],
      ['app-passwords', '/security/app-passwords'],
      ['org-members', `/orgs/${org}/members`],
      ['org-security', `/orgs/${org}/security`],
      ['drives', '/drives'],
      ['drive-files', `/drives/${drive}/files`],
      ['drive-access', `/drives/${drive}/access`],
      ['drive-imports', `/drives/${drive}/imports`],
    ]) {
      await page.goto(`${base}${path}`);
      assert.equal(await page.locator('html').getAttribute('lang'), lang);
      await check(page, lang, name);
    }
  }

  // Keyboard only: an application password.
  await setLanguage(context, 'en');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${base}/`);
  await tabTo(page, 'nav a[href="/security/app-passwords"]');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await tabTo(page, '#app-name');
  await page.keyboard.type('Calendar on the laptop');
  await tabTo(page, 'form[action="/security/app-passwords"] button[type=submit]');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Space')]);
  assert.match(await page.locator('#new-app-password').textContent(), /^([a-z2-9]{4}-){6}[a-z2-9]{4}$/);
  assert.ok(await page.getByRole('cell', { name: 'Calendar on the laptop', exact: true }).isVisible());

  // Keyboard only: remove a member, found by a button that names them.
  await page.goto(`${base}/`);
  await tabTo(page, `a[href="/orgs/${org}/members"]`);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  const remove = page.getByRole('button', { name: 'Remove Bo from', exact: false });
  assert.equal(await remove.count(), 1, 'one button removes Bo, and says so');
  await tabTo(page, `form[action$="/remove"] button[aria-label^="Remove Bo from"]`);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  // The removal asks first, naming whom and what happens; nothing yet.
  await page.locator('#confirm-text').waitFor();
  assert.match(await page.locator('#confirm-text').textContent(), /Bo/);
  await check(page, 'en', 'confirm-remove-member');
  await page.setViewportSize({ width: 1280, height: 800 });
  await tabTo(page, '#confirm-button');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.locator('#flash').waitFor();
  assert.equal(await page.getByText(member).count(), 0, 'Bo is no longer a member');

  assert.deepEqual(problems, [], `${problems.length} problems:\n${problems.join('\n')}`);
  console.log(`${checked} page views checked`);
  console.log('browser checks passed');
} finally {
  await browser.close();
}
