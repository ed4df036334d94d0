// Work that survives the browser's storage, in headless Chromium: a project kept in a file the user
// picked (written after every change, asked for again after a reload, never written by another
// project), a project saved by download and opened in a fresh profile, persistent storage and the
// storage figures with their warnings, and the installable app (manifest, icons, offline shell).
import { test, after as afterAll } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { addImages, counts, isolatedBrowser, openApp, photoCrops, root, picked } from './harness.mjs';
import { CHROMIUM_ARGS } from './engines.mjs';

const shared = isolatedBrowser();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-keep-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const bricks = photoCrops(scratch, 'brick', 8);
const grass = photoCrops(scratch, 'grass', 8);

/// The file the user "picks" in the save dialog: one in the origin's private file system, which
/// Chromium hands out as a real FileSystemFileHandle (kept in IndexedDB, written with
/// createWritable, asked for permission).
const pickPrivateFile = () => {
  window.showSaveFilePicker = async () => (await navigator.storage.getDirectory()).getFileHandle('kept.wickproject', { create: true });
};

/// How many images the kept file holds (null when there is no file yet, 'being written' while it is).
const imagesInKeptFile = (page) => page.evaluate(async () => {
  const directory = await navigator.storage.getDirectory();
  const file = await (await directory.getFileHandle('kept.wickproject').catch(() => null))?.getFile();
  if (!file || file.size === 0) return null;
  // A file the page is writing at that moment cannot be read: asked again.
  const bytes = new Uint8Array(await file.arrayBuffer().catch(() => new ArrayBuffer(0)));
  if (bytes.length === 0) return 'being written';
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const meta = JSON.parse(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))).__metadata__.meta);
  return meta.classes.reduce((sum, c) => sum + c.samples.length, 0);
});

async function waitForKeptImages(page, n) {
  for (const deadline = Date.now() + 30_000; ;) {
    const found = await imagesInKeptFile(page);
    if (found === n) return;
    if (Date.now() > deadline) assert.fail(`the kept file holds ${found} images, not ${n}; the status says: ${await page.textContent('#status')}`);
    await page.waitForTimeout(200);
  }
}

test('a project kept in a file: written after each change, asked for again after a reload, never written by a new project', async () => {
  const context = await shared.browser.newContext();
  await context.addInitScript(pickPrivateFile);
  try {
    const { page, errors } = await openApp(context, shared.origin, { keepFiles: true });
    assert.equal(await page.textContent('#export-project'), 'Save project to file…');
    assert.equal(await page.textContent('#file-state'), 'Not saved to a file yet.');
    await addImages(page, 0, picked(bricks.slice(0, 3)));
    await addImages(page, 1, picked(grass.slice(0, 3)));

    await page.click('#export-project');
    await page.waitForFunction(() => /^Kept in kept\.wickproject: saved at/.test(document.querySelector('#file-state').textContent));
    assert.equal(await imagesInKeptFile(page), 6);
    assert.equal(await page.textContent('#export-project'), 'Save to another file…');

    // Every change is written to the file a moment later.
    await addImages(page, 0, picked(bricks.slice(3, 4)));
    await waitForKeptImages(page, 7);
    await page.waitForFunction(() => /^Kept in kept\.wickproject: saved at/.test(document.querySelector('#file-state').textContent));

    // After a reload the page goes on writing where the browser still allows it ...
    await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    assert.match(await page.textContent('#file-state'), /^Kept in kept\.wickproject: saved at/);
    assert.equal(await page.isHidden('#keep-file'), true);
    await addImages(page, 1, picked(grass.slice(3, 4)));
    await waitForKeptImages(page, 8);

    // ... and where it asks again, the page waits for one click.
    await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
    await context.addInitScript(() => {
      FileSystemHandle.prototype.queryPermission = async () => 'prompt';
      FileSystemHandle.prototype.requestPermission = async function () {
        window.wickAsked = (window.wickAsked ?? 0) + 1;
        return 'granted';
      };
    });
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    assert.equal(await page.textContent('#keep-file'), 'Keep saving to kept.wickproject');
    assert.match(await page.textContent('#file-state'), /this browser asks again before the page writes to it/);
    await addImages(page, 0, picked(bricks.slice(4, 5)));
    await page.waitForTimeout(2500);
    assert.equal(await imagesInKeptFile(page), 8, 'not written without permission');
    await page.click('#keep-file');
    await waitForKeptImages(page, 9);
    assert.equal(await page.evaluate(() => window.wickAsked), 1);
    assert.equal(await page.isHidden('#keep-file'), true);

    // Reset starts a new project: the file keeps the old one.
    page.on('dialog', (d) => d.accept());
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Started a new project.');
    assert.equal(await page.textContent('#file-state'), 'Not saved to a file yet.');
    await addImages(page, 0, picked(bricks.slice(5, 6)));
    await page.waitForTimeout(2500);
    assert.equal(await imagesInKeptFile(page), 9, 'a new project does not write over the file');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a project saved to a file by download opens in a fresh profile as it was: classes, images, model, evaluation', async () => {
  const context = await shared.browser.newContext({ acceptDownloads: true });
  const fresh = await shared.browser.newContext({ acceptDownloads: true });
  try {
    const { page } = await openApp(context, shared.origin);
    await addImages(page, 0, picked(bricks));
    await addImages(page, 1, picked(grass));
    await page.click('#train');
    await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
    const evaluation = await page.innerHTML('#evaluation');

    const save = async (p, name) => {
      const [download] = await Promise.all([p.waitForEvent('download'), p.click('#export-project')]);
      assert.equal(download.suggestedFilename(), name);
      return fs.readFileSync(await download.path());
    };
    const saved = await save(page, 'wick-project.wickproject');
    assert.match(await page.textContent('#file-state'), /^Saved to a file \(wick-project\.wickproject\) at \d\d:\d\d:\d\d\.$/);
    await addImages(page, 0, picked(photoCrops(scratch, 'gravel', 1)));
    assert.match(await page.textContent('#file-state'), /changed since: save it again to keep the changes\.$/);
    const file = path.join(scratch, 'saved.wickproject');
    fs.writeFileSync(file, saved);

    const other = (await openApp(fresh, shared.origin)).page;
    assert.deepEqual(await counts(other), [0, 0]);
    await other.setInputFiles('#open-project', file);
    await other.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened'));
    assert.equal(await other.textContent('#status'), 'Opened saved.wickproject: 2 classes, 16 images, with its trained model.');
    assert.deepEqual(await counts(other), [8, 8]);
    assert.deepEqual(await other.$$eval('.class-name', (els) => els.map((e) => e.value)), ['Class 1', 'Class 2']);
    assert.equal(await other.innerHTML('#evaluation'), evaluation, 'the same evaluation');
    // Saved again under the name it was opened from, and the same file, byte for byte.
    assert.match(await other.textContent('#file-state'), /^Saved to a file \(saved\.wickproject\) at/);
    assert.ok((await save(other, 'saved.wickproject')).equals(saved), 'the fresh profile saves the same file');
    const [model] = await Promise.all([other.waitForEvent('download'), other.click('#export-model')]);
    const [ownModel] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
    assert.ok(fs.readFileSync(await model.path()).equals(fs.readFileSync(await ownModel.path())), 'the same model');
  } finally {
    await context.close();
    await fresh.close();
  }
});

test('persistent storage is asked for at the first image; the page says what the project takes and warns before the quota', async () => {
  const context = await shared.browser.newContext();
  await context.addInitScript(() => {
    window.wickPersistAsked = 0;
    StorageManager.prototype.persisted = async () => false;
    StorageManager.prototype.persist = async () => { window.wickPersistAsked += 1; return false; };
    StorageManager.prototype.estimate = async () => ({ usage: 900e6, quota: 1000e6 });
  });
  try {
    const { page } = await openApp(context, shared.origin);
    assert.equal(await page.evaluate(() => window.wickPersistAsked), 0, 'not before the first image');
    assert.equal(await page.isHidden('#keep-warning'), true);
    await addImages(page, 0, picked(bricks.slice(0, 2)));
    await page.waitForFunction(() => window.wickPersistAsked === 1);
    await page.waitForFunction(() => !document.querySelector('#keep-warning').hidden);
    assert.match(await page.textContent('#keep-warning'), /may clear what this page stores .*: save the project to a file to keep it\./);
    await page.waitForFunction(() => /nearly full/.test(document.querySelector('#storage-state').textContent));
    const line = await page.textContent('#storage-state');
    assert.match(line, /^In this browser the project takes [\d.]+ MB: images [\d.]+ MB, kept copies [\d.]+ MB, layer inputs 0\.0 MB, model 0\.0 MB\. This page may store 1000 MB here \(90% used\): storage is nearly full/);
    assert.equal(await page.$eval('#storage-state', (e) => e.classList.contains('error')), true);
    await addImages(page, 1, picked(grass.slice(0, 2)));
    assert.equal(await page.evaluate(() => window.wickPersistAsked), 1, 'asked once a visit');

    // Saved to a file (and not changed since), the warning goes.
    await page.click('#export-project');
    assert.equal(await page.isHidden('#keep-warning'), true);
  } finally {
    await context.close();
  }
  const granted = await shared.browser.newContext();
  await granted.addInitScript(() => {
    StorageManager.prototype.persisted = async () => false;
    StorageManager.prototype.persist = async () => true;
  });
  try {
    const { page } = await openApp(granted, shared.origin);
    await addImages(page, 0, picked(bricks.slice(0, 1)));
    await page.waitForFunction(() => /storage: kept until you delete it\.$/.test(document.querySelector('#storage-state').textContent));
    assert.equal(await page.isHidden('#keep-warning'), true, 'persistent storage in Chromium: no warning');
  } finally {
    await granted.close();
  }
});

test('installable: a web app manifest with icons that Chromium accepts, and its shell cached for offline use', async () => {
  // A profile on disk: Chromium installs nothing from an incognito context (as playwright's are).
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(scratch, 'profile-')), {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS,
  });
  try {
    const { page } = await openApp(context, shared.origin, { keepFiles: true });
    const cdp = await context.newCDPSession(page);
    const { errors } = await cdp.send('Page.getAppManifest');
    assert.deepEqual(errors, []);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, []);
    const manifest = await page.evaluate(async () => (await fetch(document.querySelector('link[rel=manifest]').href)).json());
    assert.equal(manifest.display, 'standalone');
    assert.deepEqual(manifest.icons.map((i) => i.sizes), ['192x192', '512x512', '512x512']);
    for (const icon of manifest.icons) {
      const size = await page.evaluate(async (src) => {
        const image = await createImageBitmap(await (await fetch(new URL(src, new URL('/static/', location.href)))).blob());
        return `${image.width}x${image.height}`;
      }, icon.src);
      assert.equal(size, icon.sizes, icon.src);
    }
    // Every page module and the manifest are kept for offline use by the service worker.
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
    const modules = fs.readdirSync(path.join(root, 'static/app')).map((f) => `/static/app/${f}`);
    const missing = await page.evaluate(async (urls) => {
      const found = await Promise.all(urls.map((u) => caches.match(u)));
      return urls.filter((_, i) => !found[i]);
    }, [...modules, '/static/manifest.webmanifest']);
    assert.deepEqual(missing, []);
  } finally {
    await context.close();
  }
});
