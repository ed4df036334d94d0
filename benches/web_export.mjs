// The web export (`wick export --format web`) against the page it comes from, in the same run of
// headless Chromium on one thread each (neither page is cross-origin isolated): what a first visit
// downloads (gzipped, the formula of benches/first_load.mjs), and the time from picking a photo to
// its ranked classes on screen — the page's preview against the export's demo page, in alternating
// rounds — plus wick.js's classify() alone, on the runtime's relaxed-SIMD build (what Chromium
// loads) and on its simd128 build (what a browser without relaxed SIMD loads: forced here by
// refusing the probe), alternating. Both pages run the backbone alone (its ImageNet classes), so
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
const demoFiles = ['index.html', 'demo.js', 'demo.css'];
/// What a first visit to the demo page downloads where the runtime's build `name` runs
/// (`wick_runtime` or `wick_runtime_relaxed`): one build's bindings and wasm, never both.
const webFirstLoad = (name) => {
  const load = {
    wasm_gzip: gzipped(inBundle(`${name}_bg.wasm`)),
    scripts_gzip: ['wick.js', 'wick-worker.js', `${name}.js`, 'wick-model.json'].reduce((n, f) => n + gzipped(inBundle(f)), 0),
    demo_gzip: demoFiles.reduce((n, f) => n + gzipped(inBundle(f)), 0),
    model: fs.statSync(inBundle('backbone.safetensors')).size,
  };
  load.total = load.wasm_gzip + load.scripts_gzip + load.demo_gzip + load.model;
  return load;
};
const webLoad = webFirstLoad('wick_runtime_relaxed');
const webLoadPlain = webFirstLoad('wick_runtime');
const pageLoad = pageFirstLoad(path.join(root, 'dist'), 'single');

const { server: pageServer, origin: pageOrigin } = await serveDist();
const { server: webServer, origin: webOrigin } = await serveDist(bundle, { '/photos/': photos });
const browser = await launchChromium();
const times = { page: [], web: [], api: [], api_simd128: [] };
try {
  const { page } = await openApp(browser, pageOrigin);
  /// The demo page in its own context; `refuseRelaxed`: as a browser without relaxed SIMD.
  const openDemo = async (refuseRelaxed) => {
    const context = await browser.newContext();
    if (refuseRelaxed) {
      await context.route('**/wick-worker.js', async (route) => {
        const response = await route.fetch();
        await route.fulfill({ response, body: `WebAssembly.validate = () => false;\n${await response.text()}` });
      });
    }
    const tab = await context.newPage();
    await tab.goto(`${webOrigin}/index.html`);
    await tab.waitForFunction(() => document.querySelector('#status').textContent === 'Ready.', null, { timeout: 60_000 });
    return tab;
  };
  const demo = await openDemo(false);
  const plainDemo = await openDemo(true);
  /// wick.js's classify(blob) in `tab`: median ms over the photos, and the build that ran.
  const classifyAlone = (tab) => tab.evaluate(async (names) => {
    const { load } = await import('./wick.js');
    window.benchClassifier ??= await load();
    const blobs = await Promise.all(names.map(async (n) => (await fetch(`/photos/${n}`)).blob()));
    const ms = [];
    for (const blob of blobs) {
      const t0 = performance.now();
      await window.benchClassifier.classify(blob);
      ms.push(performance.now() - t0);
    }
    return { ms: ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)], simd: window.benchClassifier.simd };
  }, held.map((p) => path.basename(p)));
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
    // Alternating which goes first: the first after the demo's picks ran ~25% slower (2026-12-08).
    let relaxed;
    let plain;
    if (round % 2) {
      plain = await classifyAlone(plainDemo);
      relaxed = await classifyAlone(demo);
    } else {
      relaxed = await classifyAlone(demo);
      plain = await classifyAlone(plainDemo);
    }
    if (relaxed.simd !== 'relaxed' || plain.simd !== 'simd128') throw new Error(`the runtime builds ran ${relaxed.simd} and ${plain.simd}`);
    times.api.push(relaxed.ms);
    times.api_simd128.push(plain.ms);
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
  first_load_simd128: webLoadPlain,
  ms_per_photo: { page: median(times.page), web_demo: median(times.web), web_classify: median(times.api), web_classify_simd128: median(times.api_simd128) },
  rounds: times,
  photos: held.length,
};
if (json) {
  console.log(JSON.stringify(result));
} else {
  const mb = (b) => (b / 1e6).toFixed(3);
  console.log(`wick export --format web (backbone alone): ${exportSeconds.toFixed(2)} s`);
  console.log(`first load, web export (relaxed-SIMD runtime): runtime wasm ${mb(webLoad.wasm_gzip)} MB gzipped + scripts ${mb(webLoad.scripts_gzip)} + demo page ${mb(webLoad.demo_gzip)} + backbone ${mb(webLoad.model)} = ${mb(webLoad.total)} MB`);
  console.log(`first load, web export (simd128 runtime): runtime wasm ${mb(webLoadPlain.wasm_gzip)} MB gzipped, in all ${mb(webLoadPlain.total)} MB`);
  console.log(`first load, the page (single-threaded build): wasm ${mb(pageLoad.wasm_gzip)} MB gzipped + scripts ${mb(pageLoad.scripts_gzip)} + backbone ${mb(pageLoad.model)} = ${mb(pageLoad.total)} MB`);
  console.log(`  ratio ${(webLoad.total / pageLoad.total).toFixed(3)}x (wasm alone ${(webLoad.wasm_gzip / pageLoad.wasm_gzip).toFixed(2)}x)`);
  const { page, web_demo: demo, web_classify: api, web_classify_simd128: plain } = result.ms_per_photo;
  const rounds = (xs) => xs.map((t) => t.toFixed(1)).join(' ');
  console.log(`pick a photo → ranked classes, ${held.length} photos × ${ROUNDS} rounds, median ms/photo: page ${page.toFixed(1)}, web export's demo ${demo.toFixed(1)} (${(demo / page).toFixed(2)}x the page)`);
  console.log(`wick.js classify(blob) alone: relaxed-SIMD runtime ${api.toFixed(1)} ms, simd128 runtime ${plain.toFixed(1)} ms (relaxed ${(api / plain).toFixed(2)}x simd128)`);
  console.log(`  rounds: page ${rounds(times.page)}; demo ${rounds(times.web)}; classify relaxed ${rounds(times.api)}; classify simd128 ${rounds(times.api_simd128)}`);
}
