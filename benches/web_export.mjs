// The web export (`wick export --format web`) against the page it comes from, in the same run of
// headless Chromium on one thread each (neither page is cross-origin isolated): what a first visit
// downloads (gzipped, the formula of benches/first_load.mjs), and the time from picking a photo to
// its ranked classes on screen — the page's preview against the export's demo page, in alternating
// rounds — plus wick.js's classify() alone. Both run the backbone alone (its ImageNet classes), so
// that they compute the same thing. Needs `trunk build --release` (dist/, with dist/runtime).
//
//   node benches/web_export.mjs [--json] [--rounds 3] [--photos 8]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveDist, launchChromium, openApp, photoCrops, root, wickBinary } from '../tests/browser/harness.mjs';
import { gzipped, pageFirstLoad } from './first_load.mjs';

const argument = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const json = process.argv.includes('--json');
const ROUNDS = argument('--rounds', 3);
const PHOTOS = argument('--photos', 8);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-web-bench-'));
const bundle = path.join(dir, 'web');
let started = performance.now();
execFileSync(wickBinary, ['export', '--format', 'web', '--out', bundle], { stdio: 'ignore' });
const exportSeconds = (performance.now() - started) / 1000;
const photos = path.join(dir, 'photos');
fs.mkdirSync(photos);
const held = ['brick', 'grass', 'gravel', 'coffee'].flatMap((name) => photoCrops(photos, name, PHOTOS / 4, 30, 256));

const inBundle = (f) => path.join(bundle, f);
const runtimeFiles = ['wick.js', 'wick-worker.js', 'wick_runtime.js', 'wick_runtime_bg.wasm', 'wick-model.json'];
const demoFiles = ['index.html', 'demo.js', 'demo.css'];
const webLoad = {
  wasm_gzip: gzipped(inBundle('wick_runtime_bg.wasm')),
  scripts_gzip: runtimeFiles.filter((f) => !f.endsWith('.wasm')).reduce((n, f) => n + gzipped(inBundle(f)), 0),
  demo_gzip: demoFiles.reduce((n, f) => n + gzipped(inBundle(f)), 0),
  model: fs.statSync(inBundle('backbone.safetensors')).size,
};
webLoad.total = webLoad.wasm_gzip + webLoad.scripts_gzip + webLoad.demo_gzip + webLoad.model;
const pageLoad = pageFirstLoad(path.join(root, 'dist'), 'single');

const { server: pageServer, origin: pageOrigin } = await serveDist();
const { server: webServer, origin: webOrigin } = await serveDist(bundle, { '/photos/': photos });
const browser = await launchChromium();
const times = { page: [], web: [], api: [] };
try {
  const { page } = await openApp(browser, pageOrigin);
  const demo = await browser.newPage();
  await demo.goto(`${webOrigin}/index.html`);
  await demo.waitForFunction(() => document.querySelector('#status').textContent === 'Ready.', null, { timeout: 60_000 });
  /// Picks each photo in `input` and waits for `done(name)` in the page: ms per photo.
  const pickEach = async (tab, input, done) => {
    const ms = [];
    for (const file of held) {
      await tab.evaluate(() => { document.querySelector('#status').textContent = ''; });
      const t0 = performance.now();
      await tab.setInputFiles(input, file);
      await tab.waitForFunction(done, path.basename(file), { timeout: 60_000, polling: 'raf' });
      ms.push(performance.now() - t0);
    }
    return ms;
  };
  for (let round = 0; round < ROUNDS; round++) {
    times.page.push(median(await pickEach(page, '#preview-file', (n) => document.querySelector('#status').textContent.startsWith(`${n}: classified`))));
    times.web.push(median(await pickEach(demo, '#file', (n) => document.querySelector('#status').textContent.startsWith(`${n}: `))));
    times.api.push(await demo.evaluate(async (names) => {
      const { load } = await import('./wick.js');
      window.benchClassifier ??= await load();
      const blobs = await Promise.all(names.map(async (n) => (await fetch(`/photos/${n}`)).blob()));
      const ms = [];
      for (const blob of blobs) {
        const t0 = performance.now();
        await window.benchClassifier.classify(blob);
        ms.push(performance.now() - t0);
      }
      return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
    }, held.map((p) => path.basename(p))));
  }
} finally {
  await browser.close();
  pageServer.close();
  webServer.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

const result = {
  export_seconds: exportSeconds,
  first_load: { web: webLoad, page: pageLoad },
  ms_per_photo: { page: median(times.page), web_demo: median(times.web), web_classify: median(times.api) },
  rounds: times,
  photos: held.length,
};
if (json) {
  console.log(JSON.stringify(result));
} else {
  const mb = (b) => (b / 1e6).toFixed(3);
  console.log(`wick export --format web (backbone alone): ${exportSeconds.toFixed(2)} s`);
  console.log(`first load, web export: runtime wasm ${mb(webLoad.wasm_gzip)} MB gzipped + scripts ${mb(webLoad.scripts_gzip)} + demo page ${mb(webLoad.demo_gzip)} + backbone ${mb(webLoad.model)} = ${mb(webLoad.total)} MB`);
  console.log(`first load, the page (single-threaded build): wasm ${mb(pageLoad.wasm_gzip)} MB gzipped + scripts ${mb(pageLoad.scripts_gzip)} + backbone ${mb(pageLoad.model)} = ${mb(pageLoad.total)} MB`);
  console.log(`  ratio ${(webLoad.total / pageLoad.total).toFixed(3)}x (wasm alone ${(webLoad.wasm_gzip / pageLoad.wasm_gzip).toFixed(2)}x)`);
  const { page, web_demo: demo, web_classify: api } = result.ms_per_photo;
  console.log(`pick a photo → ranked classes, ${held.length} photos × ${ROUNDS} rounds, median ms/photo: page ${page.toFixed(1)}, web export's demo ${demo.toFixed(1)} (${(demo / page).toFixed(2)}x the page); wick.js classify(blob) alone ${api.toFixed(1)}`);
  console.log(`  rounds: page ${times.page.map((t) => t.toFixed(1)).join(' ')}; demo ${times.web.map((t) => t.toFixed(1)).join(' ')}; classify ${times.api.map((t) => t.toFixed(1)).join(' ')}`);
}
