// Training the backbone's last layers in the tab (issue 14), on real photos: CIFAR-10 training images
// (the JPEG copy in ../shared/data, unpacked by `make bench` into $CIFAR10_DIR/train), added through
// the class pickers of the cross-origin isolated page, then trained with the head only and with each
// "Layers to train" on the same split and seed. For each: validation accuracy, the first run's time
// (preparing the inputs included), a second run's time (inputs kept: training only), the time per
// layer epoch, what the page estimated beforehand, the bytes kept per view, and the tab's memory
// (performance.measureUserAgentSpecificMemory: page and workers, JS heaps and wasm memories).
//
//   node benches/layers_browser.mjs CIFAR10_DIR [--classes 5] [--per-class 40] [--depths 1,2,3] [--layer-epochs 10] [--dist DIR]
//
// --dist: another build of the site (default: dist/), e.g. an earlier commit's, for before/after.
import fs from 'node:fs';
import path from 'node:path';
import { serveDist, launchChromium } from '../tests/browser/harness.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const dir = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!dir) throw new Error('usage: node benches/layers_browser.mjs CIFAR10_DIR [--classes N] [--per-class N] [--depths 1,2,3]');
const classCount = Number(option('classes', 5));
const perClass = Number(option('per-class', 40));
const depths = option('depths', '1,2,3').split(',').map(Number);
const layerEpochs = option('layer-epochs', '10');
const classes = fs.readdirSync(path.join(dir, 'train')).sort().slice(0, classCount);

const dist = option('dist', undefined);
const { server, origin } = await serveDist(dist && path.resolve(dist), {}, { isolated: true });
const browser = await launchChromium();
const page = await browser.newPage();
await page.goto(`${origin}/`);
await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
const threads = await page.textContent('#threads-name');

const started = Date.now();
for (let i = 2; i < classes.length; i++) await page.click('#add-class');
for (const [i, name] of classes.entries()) {
  const card = page.locator('.class-card').nth(i);
  await card.locator('.class-name').fill(name);
  await card.locator('.class-name').press('Tab');
  const files = fs.readdirSync(path.join(dir, 'train', name)).sort().slice(0, perClass).map((f) => path.join(dir, 'train', name, f));
  await card.locator('.class-files').setInputFiles(files);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout: 1_800_000 });
}
const addSeconds = (Date.now() - started) / 1000;
await page.click('#advanced summary');
await page.fill('#validation-share', '0.25');
await page.press('#validation-share', 'Tab');
await page.selectOption('#train-layers', String(depths[0]));
await page.fill('#layer-epochs', layerEpochs);
await page.press('#layer-epochs', 'Tab');
await page.selectOption('#train-layers', '0');

/// The saved project's last report (the page keeps it in IndexedDB).
const savedReport = () => page.evaluate(() => new Promise((resolve, reject) => {
  const open = indexedDB.open('wick');
  open.onsuccess = () => {
    const get = open.result.transaction('projects').objectStore('projects').get('current');
    get.onsuccess = () => resolve(get.result.report);
    get.onerror = () => reject(get.error);
  };
}));

/// Times each status line while training: a layer epoch's line comes when it ends, so its time is
/// the gap to the line before it (the head fit's last step, or the previous epoch). Works on any
/// build of the page (an earlier commit's included).
const watchStatus = () => page.evaluate(() => {
  const status = document.querySelector('#train-status');
  window.statusLines = [];
  window.statusWatch?.disconnect();
  window.statusWatch = new MutationObserver(() => window.statusLines.push([performance.now(), status.textContent]));
  window.statusWatch.observe(status, { childList: true, characterData: true, subtree: true });
});
const layerEpochSeconds = () => page.evaluate(() => {
  const lines = window.statusLines.filter(([, text]) => /^(Epoch|L2) /.test(text));
  const seconds = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i][1].startsWith('Epoch ')) seconds.push((lines[i][0] - lines[i - 1][0]) / 1000);
  }
  return seconds;
});

async function train() {
  await watchStatus();
  const t0 = Date.now();
  await page.click('#train');
  await page.waitForFunction(() => /^(Trained|Training failed)/.test(document.querySelector('#train-status').textContent), null, { timeout: 3_600_000 });
  const seconds = (Date.now() - t0) / 1000;
  const text = await page.textContent('#train-status');
  if (!text.startsWith('Trained')) throw new Error(text);
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser', null, { timeout: 120_000 });
  const report = await savedReport();
  const headSteps = report.history.filter((h) => h.regularization != null).length;
  const epochs = await layerEpochSeconds();
  const epochSeconds = epochs.length ? epochs.reduce((a, b) => a + b, 0) / epochs.length : NaN;
  return { seconds, accuracy: report.validation.accuracy, layerEpochs: report.history.length - headSteps, epochSeconds, kept: report.best_epoch > headSteps ? 'layers' : 'head fit' };
}

const memory = async () => {
  const m = await page.evaluate(() => performance.measureUserAgentSpecificMemory());
  return m.bytes;
};

const rows = [];
const head = await train();
rows.push({ depth: 0, ...head, secondSeconds: head.seconds });
let peakMemory = await memory();
for (const depth of depths) {
  await page.selectOption('#train-layers', String(depth));
  await page.waitForFunction(() => /^Measured here/.test(document.querySelector('#layers-cost').textContent), null, { timeout: 120_000 });
  const estimate = await page.textContent('#layers-cost');
  const first = await train();
  peakMemory = Math.max(peakMemory, await memory());
  const second = await train();
  const perEpoch = Number(estimate.match(/about ([\d.]+) s per epoch/)[1]);
  const bytesPerView = Number(estimate.match(/\((\d+) KB per view\)/)[1]) * 1000;
  // Both runs' layer epochs: the first run's are as long as the second's (its inputs are prepared before they start).
  const epochSeconds = (first.epochSeconds * first.layerEpochs + second.epochSeconds * second.layerEpochs) / (first.layerEpochs + second.layerEpochs);
  rows.push({ depth, ...first, secondSeconds: second.seconds, estimatedEpoch: perEpoch, bytesPerView, epochSeconds, runPerEpoch: second.seconds / Math.max(second.layerEpochs, 1) });
}

const images = classes.length * perClass;
console.log(`# Layers to train in the tab (${dist ?? 'dist'}): ${classes.length} CIFAR-10 classes x ${perClass} photos (JPEG copy), 25% held out, seed 0, at most ${layerEpochs} layer epochs; ${threads}`);
console.log(`# adding the ${images} photos took ${addSeconds.toFixed(1)} s; peak tab memory ${(peakMemory / 1e6).toFixed(0)} MB (page and workers)`);
// s/epoch: the layer epochs' own time (both runs, timed by their status lines), with the page's
// estimate; second run / epochs: the whole second run (head fit and export included) over its layer
// epochs, the figure this bench printed before 2026-12-07.
console.log('depth  val acc  first run s  second run s  layer epochs  s/epoch (measured, est.)  second run / epochs  KB/view  kept');
for (const r of rows) {
  const epoch = r.depth ? `${r.epochSeconds.toFixed(2)} (${r.estimatedEpoch.toFixed(2)})` : '-';
  const run = r.depth ? r.runPerEpoch.toFixed(2) : '-';
  console.log(`${String(r.depth).padStart(5)}  ${(100 * r.accuracy).toFixed(1).padStart(6)}%  ${r.seconds.toFixed(1).padStart(11)}  ${r.secondSeconds.toFixed(1).padStart(12)}  ${String(r.layerEpochs).padStart(12)}  ${epoch.padStart(24)}  ${run.padStart(19)}  ${r.depth ? String(r.bytesPerView / 1000).padStart(7) : '      -'}  ${r.kept}`);
}
await browser.close();
server.close();
