// What a user of the page feels: the time from choosing 500 photos to having them all embedded —
// decoding, preprocessing, the backbone, thumbnails and saving to IndexedDB, in the page's worker
// on the `trunk build --release` output in headless Chromium: on one thread (int8 and f32), then
// cross-origin isolated on all cores (the multi-threaded build); then EfficientNet-Lite2 (Advanced →
// Backbone) on one thread and on all cores. The photos are the first
// 50 of each class of the CIFAR-10 JPEG copy (`../shared/data`, unpacked by `make bench`), added to
// one class in batches of 100 as a user would drop them.
//
//   node benches/page_extraction.mjs DIR [--json]    (DIR/train/<class>/*.jpg)
import fs from 'node:fs';
import path from 'node:path';
import { serveDist, launchChromium, openApp } from '../tests/browser/harness.mjs';

const dir = process.argv[2];
const json = process.argv.includes('--json');
if (!dir || !fs.existsSync(path.join(dir, 'train'))) {
  console.error('usage: node benches/page_extraction.mjs DIR [--json]   (DIR/train/<class>/*.jpg, the CIFAR-10 JPEG copy)');
  process.exit(2);
}
const PER_CLASS = 50;
const files = fs.readdirSync(path.join(dir, 'train')).sort().flatMap((c) => {
  const names = fs.readdirSync(path.join(dir, 'train', c)).sort().slice(0, PER_CLASS);
  return names.map((n) => ({ name: `${c}-${n}`, mimeType: 'image/jpeg', buffer: fs.readFileSync(path.join(dir, 'train', c, n)) }));
});

const single = await serveDist();
const isolated = await serveDist(undefined, {}, { isolated: true });
const browser = await launchChromium();
try {
  // One thread (the page is not cross-origin isolated) in both arithmetics, then all cores.
  const runs = [['int8', single, 'lite0'], ['f32', single, 'lite0'], ['int8', isolated, 'lite0'], ['int8', single, 'lite2'], ['int8', isolated, 'lite2']];
  for (const [precision, server, backbone] of runs) {
    const { page } = await openApp(browser, server.origin); // a fresh browser context: an empty project
    const threads = await page.textContent('#threads-name');
    await page.click('#advanced summary');
    if (backbone !== 'lite0') {
      await page.selectOption('#backbone', backbone);
      await page.waitForFunction(() => /^Backbone: /.test(document.querySelector('#status').textContent), null, { timeout: 120_000 });
    }
    const name = await page.textContent('#backbone-name');
    await page.selectOption('#precision', precision);
    await page.waitForFunction((p) => document.querySelector('#precision-name').textContent === p, precision);
    const start = Date.now();
    for (let i = 0; i < files.length; i += 100) {
      await page.locator('.class-card').nth(0).locator('.class-files').setInputFiles(files.slice(i, i + 100));
      await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout: 600_000 });
    }
    const seconds = (Date.now() - start) / 1000;
    const count = await page.$eval('.class-card .count', (e) => parseInt(e.textContent, 10));
    if (count !== files.length) throw new Error(`${count} of ${files.length} photos were added`);
    const record = { what: 'page extraction', backbone: name, precision, threads, photos: count, seconds, photos_per_second: count / seconds };
    console.log(json ? JSON.stringify(record)
      : `page extraction, ${name}, ${precision}, ${threads.split(' (')[0]}: ${count} CIFAR-10 photos (JPEG copy) in ${seconds.toFixed(1)} s = ${record.photos_per_second.toFixed(1)} photos/s`);
    await page.close();
  }
} finally {
  await browser.close();
  single.server.close();
  isolated.server.close();
}
