// Scale: a project of 10,000 real photos (CIFAR-10's JPEG copy in ../shared/data, 1,000 per class,
// added through the class pickers as a user would) is added, trained, checked, mapped, saved and
// reloaded without a crash, with the page's elements bounded (one page of thumbnails per class) and
// adding an image costing as much at the end as at the start. Prints the figures BENCHMARKS.md
// records: memory (JS heap of the page and its workers, wasm included) and reload time at 1k, 5k
// and 10k images, and the adding rate. Long (minutes), so not a `*.test.mjs` that `make test` picks
// up: `make test-scale` runs it, and CI runs that after `make test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, openApp, isolatedBrowser, counts } from './harness.mjs';

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const PER_CLASS = Number(process.env.WICK_SCALE_PER_CLASS ?? 1000);
const tarball = process.env.WICK_CIFAR10_JPEG ?? path.join(root, '../shared/data/cifar10-train-jpeg.tar.gz');
const skip = !fs.existsSync(tarball) && `no CIFAR-10 JPEG copy at ${tarball}`;

const shared = isolatedBrowser();

/// Bytes the page and its workers hold (JS heaps and wasm memories), as the browser measures them.
async function memory(page) {
  return page.evaluate(async () => (await performance.measureUserAgentSpecificMemory()).bytes);
}

async function reload(page) {
  const started = Date.now();
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 600_000 });
  const seconds = (Date.now() - started) / 1000;
  await watchLongTasks(page);
  return seconds;
}

/// The page stays responsive: from now on, the longest task its main thread runs.
async function watchLongTasks(page) {
  await page.evaluate(() => {
    window.longestTask = 0;
    new PerformanceObserver((list) => list.getEntries().forEach((e) => { window.longestTask = Math.max(window.longestTask, e.duration); }))
      .observe({ type: 'longtask' });
  });
}

const total = async (page) => (await counts(page)).reduce((a, b) => a + b, 0);

test(`scale: ${CLASSES.length * PER_CLASS} photos added, trained, checked, mapped and reloaded with bounded memory and constant cost per image`, { skip, timeout: 3_600_000 }, async () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-scale-'));
  const names = CLASSES.flatMap((c) => Array.from({ length: PER_CLASS }, (_, i) => `train/${c}/${String(i).padStart(4, '0')}.jpg`));
  execFileSync('tar', ['-xzf', tarball, '-C', scratch, ...names]);
  const { page, errors } = await openApp(shared.browser, shared.origin);
  await watchLongTasks(page);
  for (let i = 2; i < CLASSES.length; i += 1) await page.click('#add-class');
  const rates = [];
  for (const [i, c] of CLASSES.entries()) {
    const card = page.locator('.class-card').nth(i);
    await card.locator('.class-name').fill(c);
    await card.locator('.class-name').dispatchEvent('change');
    const files = Array.from({ length: PER_CLASS }, (_, j) => {
      const file = path.join(scratch, 'train', c, `${String(j).padStart(4, '0')}.jpg`);
      return { name: `${c}-${j}.jpg`, mimeType: 'image/jpeg', buffer: fs.readFileSync(file) };
    });
    const started = Date.now();
    await card.locator('.class-files').setInputFiles(files);
    // The progress line says the rate and the time left while it reads.
    const progress = await page.waitForFunction(() => /images\/s, about .* left\)$/.test(document.querySelector('#extract-text').textContent)
      && document.querySelector('#extract-text').textContent, null, { timeout: 10_000 }).catch(() => null);
    await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout: 1_800_000 });
    const rate = PER_CLASS / ((Date.now() - started) / 1000);
    rates.push(rate);
    const images = (i + 1) * PER_CLASS;
    // One page of thumbnails per class, whatever the project's size.
    const imgs = await page.locator('img').count();
    assert.ok(imgs <= CLASSES.length * 48 + 10, `${imgs} <img> elements at ${images} images`);
    if ([1, 5, 10].includes(i + 1)) {
      const added = (await memory(page)) / 1e6;
      const longest = await page.evaluate(() => window.longestTask);
      console.log(`up to ${images} images: the page's longest main-thread task while adding (since the last reload) took ${longest.toFixed(0)} ms`);
      assert.ok(longest < 1000, `the page froze for ${longest.toFixed(0)} ms while adding`);
      await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser', null, { timeout: 600_000 });
      const seconds = await reload(page);
      assert.equal(await total(page), images, 'every image is back after the reload');
      const reloaded = (await memory(page)) / 1e6;
      console.log(`${images} images: ${added.toFixed(0)} MB (page + workers, JS + wasm) after adding them, ${reloaded.toFixed(0)} MB after a reload of ${seconds.toFixed(1)} s; adding ran at ${rate.toFixed(1)} images/s; progress said "${progress ? await progress.jsonValue() : '(too quick to see)'}"`);
    }
  }
  // Adding costs the same per image in a large project as in a small one (within the machine's noise).
  console.log(`adding rate per class of ${PER_CLASS}: ${rates.map((r) => r.toFixed(1)).join(', ')} images/s`);
  assert.ok(rates.at(-1) >= 0.6 * rates[0], `the last class added at ${rates.at(-1).toFixed(1)} images/s, the first at ${rates[0].toFixed(1)}`);
  const pager = await page.textContent('.class-card .page-text');
  assert.equal(pager, `1–${Math.min(48, PER_CLASS)} of ${PER_CLASS.toLocaleString('en')}`);

  const trainStarted = Date.now();
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 1_800_000 });
  const trainSeconds = (Date.now() - trainStarted) / 1000;
  await page.waitForSelector('#check:not([hidden]) #check-list li', { timeout: 1_800_000 });
  const checkSeconds = (Date.now() - trainStarted) / 1000 - trainSeconds;
  const accuracy = await page.textContent('#val-accuracy');
  await page.click('#map-panel summary');
  const mapStarted = Date.now();
  await page.waitForFunction((n) => Number(document.querySelector('#feature-map').dataset.dots) === n, CLASSES.length * PER_CLASS, { timeout: 600_000 });
  const mapSeconds = (Date.now() - mapStarted) / 1000;
  const peak = (await memory(page)) / 1e6;
  console.log(`trained in ${trainSeconds.toFixed(1)} s (${accuracy}); labels checked in ${checkSeconds.toFixed(1)} s; map of ${CLASSES.length * PER_CLASS} dots in ${mapSeconds.toFixed(1)} s; ${peak.toFixed(0)} MB after`);
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser', null, { timeout: 600_000 });
  const seconds = await reload(page);
  assert.equal(await total(page), CLASSES.length * PER_CLASS);
  assert.match(await page.textContent('#status'), /Backbone ready/);
  assert.equal(await page.isDisabled('#export-model'), false, 'the trained model is back');
  console.log(`reload with the model: ${seconds.toFixed(1)} s`);
  assert.deepEqual(errors, []);
  await page.close();
});
