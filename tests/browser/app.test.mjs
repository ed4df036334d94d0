// The web app end to end in headless Chromium, on the `trunk build --release` output.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, serveDist, launchChromium, openApp } from './harness.mjs';

let server, origin, browser;
before(async () => {
  ({ server, origin } = await serveDist());
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  server?.close();
});

const fixture = (name) => path.join(root, 'tests/fixtures', name);

async function classify(page, file) {
  const before = await page.textContent('#status');
  await page.setInputFiles('#file', file);
  await page.waitForFunction((b) => document.querySelector('#status').textContent !== b, before, { timeout: 60_000 });
  return {
    status: await page.textContent('#status'),
    isError: await page.evaluate(() => document.querySelector('#status').classList.contains('error')),
    labels: await page.$$eval('#predictions li .label', (els) => els.map((e) => e.textContent)),
    indices: await page.$$eval('#predictions li', (els) => els.map((e) => Number(e.dataset.index))),
  };
}

test('model downloads with progress, a real photo gets its top-5 classes, nothing leaves the origin', async () => {
  const { page, requests, errors } = await openApp(browser, origin);
  assert.match(await page.textContent('#status'), /^Model ready/);
  assert.equal(await page.$eval('#model-progress', (p) => p.value), 1);

  const coffee = await classify(page, fixture('coffee.png'));
  assert.equal(coffee.isError, false, coffee.status);
  assert.equal(coffee.labels.length, 5);
  assert.equal(coffee.labels[0], 'espresso');
  assert.match(coffee.status, /coffee\.png: classified in \d+ ms/);

  const cat = await classify(page, fixture('chelsea.png'));
  assert.ok(cat.indices[0] >= 281 && cat.indices[0] <= 285, `Chelsea came out as ${cat.labels[0]}`);
  const rocket = await classify(page, fixture('rocket.jpg'));
  assert.equal(rocket.labels[0], 'missile');

  assert.deepEqual(errors, []);
  // blob: URLs (the image preview) carry the page's origin too.
  const foreign = requests.filter((u) => new URL(u).origin !== origin);
  assert.ok(requests.some((u) => u.endsWith('/static/efficientnet-lite0-int8.safetensors')));
  assert.deepEqual(foreign, [], 'requests off the page origin');
  await page.close();
});

test('a corrupt file gets a clear error and the next image still works', async () => {
  const { page } = await openApp(browser, origin);
  const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wick-')), 'broken.jpg');
  const jpeg = fs.readFileSync(fixture('rocket.jpg'));
  fs.writeFileSync(bad, jpeg.subarray(0, jpeg.length / 3));
  const broken = await classify(page, bad);
  assert.equal(broken.isError, true);
  assert.match(broken.status, /broken\.jpg: the image is corrupt or truncated/);
  assert.deepEqual(broken.labels, []);

  const text = path.join(path.dirname(bad), 'notes.txt');
  fs.writeFileSync(text, 'not a picture');
  const notImage = await classify(page, text);
  assert.match(notImage.status, /notes\.txt: not an image/);

  const coffee = await classify(page, fixture('coffee.png'));
  assert.equal(coffee.labels[0], 'espresso');
  await page.close();
});
