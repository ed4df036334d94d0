// Phones and what browsers refuse, in headless Chromium: a phone-sized touch screen (every control
// reachable and big enough for a finger, nothing wider than the screen, "Hold to record" held with
// a finger, the front and back cameras, photos picked from the camera roll), a phone photo stored
// sideways with an EXIF orientation tag, and a device that reserves less shared memory than the
// threaded build asks for, or none.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { addImages, counts, openApp, photoCrops, root, serveDist, picked } from './harness.mjs';
import { CHROMIUM_ARGS } from './engines.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-devices-'));

let server, origin, browser;
before(async () => {
  ({ server, origin } = await serveDist(undefined, {}, { isolated: true }));
  // Two synthetic cameras, as a phone has (front and back).
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS.filter((a) => a !== '--use-fake-device-for-media-stream'), '--use-fake-device-for-media-stream=device-count=2'],
  });
});
after(async () => {
  await browser?.close();
  server?.close();
  fs.rmSync(scratch, { recursive: true, force: true });
});

/// Every control a person can reach on the page, with its touch target (a checkbox's or a hidden
/// file input's is its label): those lower than 44 px or outside the screen, and those another
/// element covers.
const controlProblems = () => {
  const width = document.documentElement.clientWidth;
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden' && !el.closest('dialog:not([open])');
  const problems = [];
  const controls = document.querySelectorAll('button, select, input, textarea, summary, label.button, .drop-zone, a[href]');
  for (const el of controls) {
    // Inline links in a sentence are exempt (WCAG 2.5.8): the footer's notice link.
    if (el.matches('footer a')) continue;
    let target = el;
    if (el.matches('input[type=checkbox], input[type=file]')) target = el.closest('label') ?? document.querySelector(`label[for="${el.id}"]`) ?? el;
    if (!visible(target) || (el !== target && !visible(target))) continue;
    if (el.matches('input[type=file]') && el !== target && target.matches('label.button')) continue; // the label is checked itself
    target.scrollIntoView({ block: 'center', inline: 'center' });
    const r = target.getBoundingClientRect();
    const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className ? `.${String(el.className).split(' ')[0]}` : ''} "${(el.textContent || el.getAttribute('aria-label') || '').trim().slice(0, 30)}"`;
    if (r.height < 43.5) problems.push(`${name} is ${r.height.toFixed(1)} px tall`);
    if (r.left < -0.5 || r.right > width + 0.5) problems.push(`${name} spans ${r.left.toFixed(0)}–${r.right.toFixed(0)} px of a ${width} px screen`);
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (hit && !(target.contains(hit) || hit.contains(target) || el.contains(hit) || (hit.closest('label') && hit.closest('label') === target))) {
      problems.push(`${name} is covered by ${hit.tagName.toLowerCase()}${hit.id ? `#${hit.id}` : ''}`);
    }
  }
  return problems;
};

test('a phone (390 × 844, touch): every control reachable and at least 44 px tall, nothing wider than the screen; hold to record with a finger; front and back cameras; photos from the camera roll', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true });
  await context.addInitScript(() => {
    window.wickCameraAsks = [];
    const getUserMedia = MediaDevices.prototype.getUserMedia;
    MediaDevices.prototype.getUserMedia = function (constraints) {
      window.wickCameraAsks.push(JSON.parse(JSON.stringify(constraints)));
      return getUserMedia.call(this, constraints);
    };
  });
  try {
    const { page, errors } = await openApp(context, origin);
    // Photos from the camera roll: the class's picker takes any image and does not force the camera.
    const pickerInput = page.locator('.class-card').first().locator('.class-files');
    assert.equal(await pickerInput.getAttribute('accept'), 'image/*');
    assert.equal(await pickerInput.getAttribute('capture'), null);
    await addImages(page, 0, picked(photoCrops(scratch, 'brick', 4)));
    await addImages(page, 1, picked(photoCrops(scratch, 'grass', 4)));
    await page.tap('#train');
    await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
    await page.tap('#advanced > summary');
    await page.tap('#map-panel > summary');
    await page.setInputFiles('#preview-file', photoCrops(scratch, 'brick', 1, 20));
    await page.waitForFunction(() => document.querySelectorAll('#predictions li').length === 2);

    // The webcam, opened with a finger; the back camera and the front again.
    const card = page.locator('.class-card').first();
    await card.locator('.webcam').tap();
    await page.waitForFunction(() => document.querySelector('.class-card .webcam-video').videoWidth > 0);
    await card.locator('.switch-camera').waitFor({ state: 'visible' });
    const deviceId = () => page.evaluate(() => document.querySelector('.class-card .webcam-video').srcObject.getVideoTracks()[0].getSettings().deviceId);
    const front = await deviceId();
    await card.locator('.switch-camera').tap();
    await page.waitForFunction((front) => {
      const track = document.querySelector('.class-card .webcam-video').srcObject?.getVideoTracks()[0];
      return track && track.readyState === 'live' && track.getSettings().deviceId !== front;
    }, front);
    assert.deepEqual((await page.evaluate(() => window.wickCameraAsks)).map((c) => c.video.facingMode?.ideal ?? 'a device'),
      ['user', 'environment', 'a device'], 'the back camera asked for by facing (the synthetic ones name none, so the next device)');
    await card.locator('.switch-camera').tap();
    await page.waitForFunction((front) => document.querySelector('.class-card .webcam-video').srcObject?.getVideoTracks()[0]?.getSettings().deviceId === front, front);

    // Everything on the page, with the webcam open, the settings and the map showing.
    assert.deepEqual(await page.evaluate(controlProblems), []);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth) <= 390, 'nothing wider than the screen');

    // "Hold to record", held with a finger for a second: frames are added while it is held, and
    // none after it is let go.
    const before = (await counts(page))[0];
    await card.locator('.hold-record').scrollIntoViewIfNeeded();
    const button = await card.locator('.hold-record').boundingBox();
    const cdp = await context.newCDPSession(page);
    const point = [{ x: button.x + button.width / 2, y: button.y + button.height / 2 }];
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: point });
    await page.waitForTimeout(1000);
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await page.waitForTimeout(800);
    const added = (await counts(page))[0] - before;
    assert.ok(added >= 4, `${added} frames added while held`);
    await page.waitForTimeout(600);
    assert.equal((await counts(page))[0] - before, added, 'no frames after the finger is lifted');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a phone photo stored sideways with an EXIF orientation tag is seen upright: the preview answers as for its upright twin, the thumbnail is upright', async () => {
  // The same photo (scikit-image's chelsea, 451 × 300) as a JPEG stored upright, and stored turned a
  // quarter to the left with the tag that says "turn right to view" (6), as phones store portraits.
  const upright = path.join(scratch, 'chelsea-upright.jpg');
  const sideways = path.join(scratch, 'chelsea-sideways.jpg');
  execFileSync('python3', ['-c', `
import sys
from PIL import Image
photo = Image.open(sys.argv[1]).convert('RGB')
photo.save(sys.argv[2], quality=95)
exif = Image.Exif()
exif[0x0112] = 6
photo.transpose(Image.Transpose.ROTATE_90).save(sys.argv[3], quality=95, exif=exif)
`, path.join(root, 'tests/fixtures/chelsea.png'), upright, sideways]);
  const context = await browser.newContext();
  try {
    const { page } = await openApp(context, origin);
    const preview = async (file) => {
      await page.setInputFiles('#preview-file', file);
      await page.waitForFunction((name) => document.querySelector('#status').textContent.startsWith(name), path.basename(file));
      return page.$$eval('#predictions li', (items) => items.map((li) => [li.querySelector('.label').textContent, parseFloat(li.querySelector('.percent').textContent)]));
    };
    const a = await preview(upright);
    const b = await preview(sideways);
    assert.equal(b[0][0], a[0][0], 'the same top class');
    assert.ok(Math.abs(b[0][1] - a[0][1]) < 2, `top-1 ${b[0][1]}% against ${a[0][1]}% upright`);
    // Added to a class, its thumbnail (made by the library) is upright: wider than tall.
    await addImages(page, 0, [{ name: 'chelsea-sideways.jpg', mimeType: 'image/jpeg', buffer: fs.readFileSync(sideways) }]);
    const size = await page.$eval('.class-card .thumbs img', async (img) => {
      await img.decode();
      return [img.naturalWidth, img.naturalHeight];
    });
    assert.ok(size[0] > size[1], `thumbnail ${size.join(' × ')}`);
  } finally {
    await context.close();
  }
});

/// A context whose `static/app/wasm.js` (in the page and in its worker) runs after `prefix`, which
/// stands in for what a device refuses.
async function deviceThat(prefix) {
  const context = await browser.newContext({ serviceWorkers: 'block' });
  await context.route('**/static/app/wasm.js', async (route) => {
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['content-length'];
    route.fulfill({ status: 200, headers, body: `${prefix}\n${await response.text()}` });
  });
  return context;
}

/// `WebAssembly.Memory` refusing shared memories whose maximum exceeds `pages` (as iOS does above
/// about 0.6–1 GB), with the error Safari gives.
const refuseSharedAbove = (pages) => `{
  const Memory = WebAssembly.Memory;
  WebAssembly.Memory = function (descriptor) {
    if (descriptor?.shared && descriptor.maximum > ${pages}) throw new RangeError('Out of memory');
    return new Memory(descriptor);
  };
  WebAssembly.Memory.prototype = Memory.prototype;
}`;

async function classifiesCoffee(page) {
  await page.setInputFiles('#preview-file', path.join(root, 'tests/fixtures/coffee.png'));
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
  assert.equal(await page.textContent('#predictions li:first-child .label'), 'espresso');
}

test('a device that reserves at most 1 GiB of shared memory: the threaded build starts with that much, and says so', async () => {
  const context = await deviceThat(refuseSharedAbove(16384));
  try {
    const { page, errors } = await openApp(context, origin);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(await page.textContent('#threads-name'), `${cores} threads (up to 1024 MiB of memory: this device reserves no more to share)`);
    await classifiesCoffee(page);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a device that reserves no shared memory: the page runs on one thread and says why', async () => {
  const context = await deviceThat(refuseSharedAbove(0));
  try {
    const { page, errors } = await openApp(context, origin);
    assert.match(await page.textContent('#status'), /^Backbone ready/);
    assert.equal(await page.textContent('#threads-name'), 'one thread because this device could not reserve memory to share between threads');
    await classifiesCoffee(page);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('a pool of threads that never starts (as Firefox, now and then): the page tries once more, then goes on on one thread and says why', async () => {
  const context = await browser.newContext({ serviceWorkers: 'block' });
  // The threaded builds' pool helper (the relaxed-SIMD twin's too), made to wait for ever.
  await context.route(/\/threads(-relaxed)?\/snippets\/.*\/workerHelpers\.js$/, (route) => route.fulfill({
    status: 200,
    headers: { 'content-type': 'text/javascript', 'cross-origin-embedder-policy': 'require-corp' },
    body: 'export function startWorkers() { return new Promise(() => {}); }',
  }));
  const workers = [];
  await context.route('**/static/worker.js*', (route) => {
    workers.push(new URL(route.request().url()).search);
    route.continue();
  });
  try {
    const started = Date.now();
    const { page, errors } = await openApp(context, origin);
    assert.match(await page.textContent('#status'), /^Backbone ready/);
    assert.equal(await page.textContent('#threads-name'), 'one thread because the pool of threads did not start in time (this browser held it up)');
    assert.ok(Date.now() - started < 30_000, 'given up after twice 5 s');
    assert.deepEqual(workers, ['', '', '?threads=1'], 'threads, threads again, then one thread');
    await classifiesCoffee(page);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
