// The page's model where other people run it, in Chromium: the web export (the drop-in classifier:
// wick.js over Wick's runtime) served by a plain static server, the ONNX export in onnxruntime-web,
// and the TF.js export in TF.js 4.22's tf.loadLayersModel — each against the page's own answers on
// held-out photos. Also: the page's web .zip is the folder `wick export --format web` writes, npm
// packs it, and nothing asks another origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, serveDist, launchChromium, photoCrops, openApp, exportFromPage, unzip, wickBinary, trainBrickAndGrass } from './harness.mjs';


/// The page's preview of `file`: each class's probability, as its meters hold them.
async function previewed(page, file) {
  const name = path.basename(file);
  await page.evaluate(() => { document.querySelector('#status').textContent = ''; });
  await page.setInputFiles('#preview-file', file);
  await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(`${n}: classified`), name);
  return page.$$eval('#predictions li', (items) => Object.fromEntries(
    items.map((li) => [li.querySelector('.label').textContent, li.querySelector('meter').value])));
}

const top1 = (probabilities) => Object.entries(probabilities).sort((a, b) => b[1] - a[1])[0][0];
const largestGap = (a, b) => Math.max(...Object.keys(a).map((label) => Math.abs(a[label] - b[label])));

// In the bundle's own page (under its Content-Security-Policy): wick.js on the held-out photos, given
// as each source type it takes, then the bad inputs it must refuse.
async function classifyWithBundle(names) {
  const { load } = await import('./wick.js');
  const classifier = await load();
  const asObject = (ranked) => Object.fromEntries(ranked.map(({ label, probability }) => [label, probability]));
  const answers = { labels: [...classifier.labels], featureSize: classifier.featureSize, blob: [], img: [], canvas: [], imageData: [], bitmap: [] };
  let blob;
  for (const name of names) {
    blob = await (await fetch(`/photos/${name}`)).blob();
    answers.blob.push(asObject(await classifier.classify(blob)));
    const img = new Image();
    img.src = `/photos/${name}`;
    await img.decode();
    answers.img.push(asObject(await classifier.classify(img)));
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
    canvas.getContext('2d').drawImage(img, 0, 0);
    answers.canvas.push(asObject(await classifier.classify(canvas)));
    answers.imageData.push(asObject(await classifier.classify(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height))));
    answers.bitmap.push(asObject(await classifier.classify(await createImageBitmap(blob))));
  }
  answers.simd = classifier.simd;
  answers.top2 = (await classifier.classify(blob, { topK: 1 })).length;
  answers.features = Array.from(await classifier.features(blob)).slice(0, 4);
  answers.featureCount = (await classifier.features(blob)).length;
  const refusal = (promise) => promise.then(() => 'accepted', (e) => `${e.name}: ${e.message}`);
  answers.refused = {
    notAnImage: await refusal(classifier.classify(42)),
    notAnImageFile: await refusal(classifier.classify(new Blob([new Uint8Array([1, 2, 3, 4])]))),
    topK: await refusal(classifier.classify(blob, { topK: 0 })),
    emptyCanvas: await refusal(classifier.classify(Object.assign(document.createElement('canvas'), { width: 0, height: 0 }))),
    noManifest: await refusal(load('/photos/')),
    manifestEscapes: await refusal(load('/escapes/')),
    otherFormat: await refusal(load('/other-format/')),
    truncatedBackbone: await refusal(load('/truncated/')),
  };
  classifier.dispose();
  answers.refused.disposed = await refusal(classifier.classify(blob));
  return answers;
}

// onnxruntime-web (its wasm backend, one thread) on the page's ONNX file, and TF.js 4.22's
// tf.loadLayersModel on the page's TF.js folder, on the pixels Wick's preprocessing gives a 256 × 256
// photo: its centre 224 × 224 (the shorter side is already 256).
async function runOtherRuntimes(names) {
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/ort/';
  const session = await ort.InferenceSession.create('/exports/model.onnx', { executionProviders: ['wasm'] });
  const tfModel = await tf.loadLayersModel('/exports/tfjs/model.json');
  const side = 224;
  const answers = { onnx: [], tfjs: [], tfjsVersion: tf.version.tfjs };
  for (const name of names) {
    const img = new Image();
    img.src = `/photos/${name}`;
    await img.decode();
    const canvas = new OffscreenCanvas(side, side);
    canvas.getContext('2d').drawImage(img, 16, 16, side, side, 0, 0, side, side);
    const { data } = canvas.getContext('2d').getImageData(0, 0, side, side);
    const planes = new Float32Array(3 * side * side);
    const tmPixels = new Float32Array(3 * side * side);
    for (let p = 0; p < side * side; p++) {
      for (let c = 0; c < 3; c++) {
        planes[c * side * side + p] = data[4 * p + c] / 255;
        tmPixels[3 * p + c] = data[4 * p + c] / 127 - 1;
      }
    }
    const output = await session.run({ pixels: new ort.Tensor('float32', planes, [1, 3, side, side]) });
    answers.onnx.push(Array.from(output.probabilities.data));
    const input = tf.tensor4d(tmPixels, [1, side, side, 3]);
    answers.tfjs.push(Array.from(await tfModel.predict(input).data()));
    input.dispose();
  }
  return answers;
}

test('the page\'s exports in a web page: the web export on a static host, onnxruntime-web and TF.js 4.22 give the page\'s answers', { timeout: 900_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-web-export-'));
  const photos = path.join(dir, 'photos');
  fs.mkdirSync(photos);
  // Held-out photos of both classes, and two of neither (a cup, a cat), whose probabilities are
  // far from 0 and 1, where a difference would show.
  const held = [...photoCrops(photos, 'brick', 3, 20, 256), ...photoCrops(photos, 'grass', 3, 20, 256),
    ...photoCrops(photos, 'coffee', 1, 0, 256), ...photoCrops(photos, 'chelsea', 1, 0, 256)];
  const { server: appServer, origin: appOrigin } = await serveDist();
  const browser = await launchChromium();
  const servers = [appServer];
  try {
    // Train in the page, keep its answers on the held-out photos (int8 products, the page's
    // default; then f32, the exact arithmetic the ONNX and TF.js files compute), and export.
    const { page, requests, errors } = await openApp(browser, appOrigin);
    await trainBrickAndGrass(page, dir);
    const pageInt8 = [];
    for (const file of held) pageInt8.push(await previewed(page, file));
    await page.click('#advanced summary');
    await page.selectOption('#precision', 'f32');
    await page.waitForFunction(() => document.querySelector('#precision-name').textContent === 'f32');
    const pageF32 = [];
    for (const file of held) pageF32.push(await previewed(page, file));

    const wick = await exportFromPage(page, 'wick');
    fs.writeFileSync(path.join(dir, 'model.wick'), wick.bytes);
    // The stages the page shows while it exports (a large model takes seconds).
    await page.evaluate(() => {
      window.statusSeen = [];
      new MutationObserver(() => window.statusSeen.push(document.querySelector('#status').textContent))
        .observe(document.querySelector('#status'), { childList: true, characterData: true, subtree: true });
    });
    const started = Date.now();
    const web = await exportFromPage(page, 'web');
    const webSeconds = (Date.now() - started) / 1000;
    assert.equal(web.name, 'wick-classifier.zip');
    const seen = await page.evaluate(() => window.statusSeen);
    for (const stage of ['loading the export module', 'fetching Wick\'s runtime', 'computing the files', 'Exported the model as wick-classifier.zip']) {
      assert.ok(seen.some((text) => text.includes(stage)), `the page showed "${stage}": ${seen}`);
    }
    assert.equal(await page.isHidden('#export-progress'), true, 'the progress bar goes when the export is done');
    const exports = path.join(dir, 'exports');
    fs.mkdirSync(exports);
    fs.writeFileSync(path.join(exports, 'model.onnx'), (await exportFromPage(page, 'onnx')).bytes);
    unzip((await exportFromPage(page, 'tfjs')).bytes, path.join(dir, 'tfjs-zip'));
    fs.renameSync(path.join(dir, 'tfjs-zip', 'model'), path.join(exports, 'tfjs'));
    assert.deepEqual(requests.filter((url) => new URL(url).origin !== appOrigin), [], 'the page asks no other origin');
    assert.deepEqual(errors, []);

    // The page's .zip holds the folder wick export writes, file for file.
    const bundle = path.join(unzip(web.bytes, path.join(dir, 'web-zip')), 'wick-classifier');
    const cli = path.join(dir, 'cli-web');
    execFileSync(wickBinary, ['export', '--model', path.join(dir, 'model.wick'), '--format', 'web', '--out', cli]);
    assert.deepEqual(fs.readdirSync(bundle).sort(), fs.readdirSync(cli).sort());
    for (const file of fs.readdirSync(cli)) {
      assert.ok(fs.readFileSync(path.join(bundle, file)).equals(fs.readFileSync(path.join(cli, file))), `web: ${file}`);
    }
    const bytes = (file) => fs.statSync(path.join(bundle, file)).size;
    console.log(`# web export from the page: ${(web.bytes.length / 1e6).toFixed(2)} MB in ${webSeconds.toFixed(1)} s (runtime wasm ${(bytes('wick_runtime_bg.wasm') / 1e6).toFixed(2)} MB, backbone ${(bytes('backbone.safetensors') / 1e6).toFixed(2)} MB)`);
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: bundle, stdio: ['ignore', 'pipe', 'ignore'] }));
    const packedFiles = packed[0].files.map((f) => f.path);
    for (const file of ['wick.js', 'wick.d.ts', 'wick-worker.js', 'wick_runtime.js', 'wick_runtime_bg.wasm', 'wick_runtime_relaxed.js',
      'wick_runtime_relaxed_bg.wasm', 'wick-model.json', 'backbone.safetensors', 'model.wick', 'package.json']) {
      assert.ok(packedFiles.includes(file), `npm pack includes ${file}: ${packedFiles}`);
    }

    // The bundle on a plain static server (no special headers), with hostile folders beside it.
    const hostile = path.join(dir, 'hostile');
    const manifest = (folder, value) => {
      fs.mkdirSync(path.join(hostile, folder), { recursive: true });
      fs.writeFileSync(path.join(hostile, folder, 'wick-model.json'), JSON.stringify(value));
    };
    manifest('escapes', { format: 'wick-web', version: 1, backbone: '../backbone.safetensors' });
    manifest('other-format', { format: 'something-else', version: 7, backbone: 'backbone.safetensors' });
    manifest('truncated', { format: 'wick-web', version: 1, backbone: 'backbone.safetensors' });
    fs.writeFileSync(path.join(hostile, 'truncated', 'backbone.safetensors'), fs.readFileSync(path.join(bundle, 'backbone.safetensors')).subarray(0, 100_000));
    const { server, origin } = await serveDist(bundle, {
      '/photos/': photos, '/escapes/': path.join(hostile, 'escapes'), '/other-format/': path.join(hostile, 'other-format'),
      '/truncated/': path.join(hostile, 'truncated'),
    });
    servers.push(server);
    const demo = await browser.newPage();
    const demoRequests = [];
    const demoErrors = [];
    demo.on('request', (r) => demoRequests.push(r.url()));
    demo.on('pageerror', (e) => demoErrors.push(e.message));
    demo.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('404')) demoErrors.push(m.text()); });
    await demo.goto(`${origin}/index.html`);
    await demo.waitForFunction(() => document.querySelector('#status').textContent === 'Ready.', null, { timeout: 60_000 });
    const result = await demo.evaluate(classifyWithBundle, held.map((p) => path.basename(p)));
    assert.equal(result.simd, 'relaxed', 'Chromium runs the relaxed-SIMD runtime');
    assert.equal(await demo.textContent('#engine'), 'Runs on WebAssembly relaxed SIMD, one thread, in a Web Worker.');
    assert.deepEqual([...result.labels].sort(), Object.keys(pageInt8[0]).sort());
    assert.equal(result.featureCount, result.featureSize);
    assert.equal(result.top2, 1);
    let gap = 0;
    for (const [i, page] of pageInt8.entries()) {
      for (const source of ['blob', 'img', 'canvas', 'imageData', 'bitmap']) {
        assert.equal(top1(result[source][i]), top1(page), `${path.basename(held[i])} as ${source}: the page's top-1`);
        gap = Math.max(gap, largestGap(result[source][i], page));
      }
    }
    const leastSure = Math.min(...pageInt8.map((p) => Math.max(...Object.values(p))));
    console.log(`# web export on a static host (the page's least sure answer: ${leastSure.toFixed(3)}): the page's top-1 on ${held.length} of ${held.length} held-out photos as Blob, <img>, <canvas>, ImageData and ImageBitmap; probabilities within ${gap.toExponential(1)} of the page's`);
    assert.ok(gap <= 0.01, `probabilities ${gap} from the page's`);
    const refused = result.refused;
    assert.match(refused.notAnImage, /^TypeError: classify and features take an <img>/);
    assert.match(refused.notAnImageFile, /^Error: .*(format|image)/i);
    assert.match(refused.topK, /^RangeError: topK must be at least 1/);
    assert.match(refused.emptyCanvas, /the image is empty/);
    assert.match(refused.noManifest, /wick-model\.json: HTTP 404/);
    assert.match(refused.manifestEscapes, /"backbone" must name a file beside it/);
    assert.match(refused.otherFormat, /not a Wick web export this runtime reads/);
    assert.match(refused.truncatedBackbone, /^Error: .+/);
    assert.doesNotMatch(refused.truncatedBackbone, /unreachable|RuntimeError/);
    assert.match(refused.disposed, /disposed/);

    // The demo page itself: a picked photo, then the (fake) camera.
    await demo.setInputFiles('#file', held[0]);
    await demo.waitForFunction(() => /ms\.$/.test(document.querySelector('#status').textContent));
    assert.equal(await demo.textContent('#ranked li:first-child span'), top1(pageInt8[0]));
    await demo.click('#camera-button');
    await demo.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Camera'), null, { timeout: 60_000 });
    assert.equal(await demo.$$eval('#ranked li', (items) => items.length), 2);
    assert.deepEqual(demoRequests.filter((url) => !url.startsWith(origin) && !url.startsWith('blob:')), [], 'the bundle asks no other origin');
    assert.deepEqual(demoErrors, []);

    // onnxruntime-web and TF.js 4.22 on the page's own exports.
    fs.writeFileSync(path.join(dir, 'index.html'), `<!doctype html><meta charset="utf-8"><script src="/tf/tf.min.js"></script>`);
    const { server: otherServer, origin: otherOrigin } = await serveDist(dir, {
      '/ort/': path.join(root, 'node_modules/onnxruntime-web/dist'), '/tf/': path.join(root, 'node_modules/@tensorflow/tfjs/dist'),
      '/photos/': photos, '/exports/': exports,
    });
    servers.push(otherServer);
    const others = await browser.newPage();
    await others.goto(`${otherOrigin}/index.html`);
    const answers = await others.evaluate(runOtherRuntimes, held.map((p) => path.basename(p)));
    assert.equal(answers.tfjsVersion, '4.22.0');
    const labels = JSON.parse(fs.readFileSync(path.join(exports, 'tfjs', 'metadata.json'))).labels;
    for (const runtime of ['onnx', 'tfjs']) {
      let worst = 0;
      for (const [i, page] of pageF32.entries()) {
        const theirs = Object.fromEntries(labels.map((label, k) => [label, answers[runtime][i][k]]));
        assert.equal(top1(theirs), top1(page), `${runtime} on ${path.basename(held[i])}`);
        worst = Math.max(worst, largestGap(theirs, page));
      }
      console.log(`# ${runtime === 'onnx' ? 'onnxruntime-web (wasm, 1 thread)' : 'TF.js 4.22 tf.loadLayersModel'} on the page's export: the page's top-1 on ${held.length} of ${held.length}, probabilities within ${worst.toExponential(1)} of the page's (f32)`);
      assert.ok(worst <= (runtime === 'onnx' ? 2e-3 : 1e-3), `${runtime}: ${worst}`);
    }
  } finally {
    await browser.close();
    for (const server of servers) server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// wick.js in the bundle's page: which runtime build runs, and each photo's probabilities in order.
async function probabilitiesOf(names) {
  const { load } = await import('./wick.js');
  const classifier = await load();
  const answers = [];
  for (const name of names) {
    const ranked = await classifier.classify(await (await fetch(`/photos/${name}`)).blob());
    answers.push(ranked.sort((a, b) => a.index - b.index).map((p) => p.probability));
  }
  classifier.dispose();
  return { simd: classifier.simd, answers };
}

test('the web export without relaxed SIMD (refused, as in Safari, or its files not served): the simd128 runtime runs, says so, and answers the same', { timeout: 300_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-web-simd-'));
  const photos = path.join(dir, 'photos');
  fs.mkdirSync(photos);
  const held = [...photoCrops(photos, 'coffee', 1, 0, 256), ...photoCrops(photos, 'chelsea', 1, 0, 256), ...photoCrops(photos, 'brick', 2, 20, 256)];
  const bundle = path.join(dir, 'web');
  execFileSync(wickBinary, ['export', '--format', 'web', '--out', bundle], { stdio: 'ignore' });
  const names = held.map((p) => path.basename(p));
  const browser = await launchChromium();
  const servers = [];
  /// The bundle served (from `folder`) in a fresh context, `prepare`d: what wick.js answers, the
  /// files asked for, and the page's errors.
  const run = async (folder, prepare = async () => {}) => {
    const { server, network, origin } = await serveDist(folder, { '/photos/': photos });
    servers.push(server);
    const context = await browser.newContext();
    try {
      await prepare(context);
      const demo = await context.newPage();
      const errors = [];
      demo.on('pageerror', (e) => errors.push(e.message));
      demo.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('404')) errors.push(m.text()); });
      await demo.goto(`${origin}/index.html`);
      await demo.waitForFunction(() => document.querySelector('#status').textContent === 'Ready.', null, { timeout: 60_000 });
      const engine = await demo.textContent('#engine');
      return { ...await demo.evaluate(probabilitiesOf, names), engine, requests: network.requests, errors };
    } finally {
      await context.close();
    }
  };
  try {
    const relaxed = await run(bundle);
    assert.equal(relaxed.simd, 'relaxed');
    assert.ok(!relaxed.requests.includes('/wick_runtime_bg.wasm'), 'the simd128 build is not fetched where relaxed runs');

    // A browser that does not compile relaxed SIMD: its probe fails; nothing relaxed is fetched.
    const refused = await run(bundle, (context) => context.route('**/wick-worker.js', async (route) => {
      const response = await route.fetch();
      await route.fulfill({ response, body: `WebAssembly.validate = () => false;\n${await response.text()}` });
    }));
    assert.equal(refused.simd, 'simd128');
    assert.equal(refused.engine, 'Runs on WebAssembly SIMD, one thread, in a Web Worker.');
    assert.deepEqual(refused.requests.filter((r) => r.includes('relaxed')), [], 'nothing of the relaxed build fetched');
    assert.deepEqual(refused.errors, []);

    // Compiled, but the twin's wasm is not there (a host that dropped it): the simd128 build, silently.
    const partial = path.join(dir, 'partial');
    fs.cpSync(bundle, partial, { recursive: true });
    fs.rmSync(path.join(partial, 'wick_runtime_relaxed_bg.wasm'));
    const missing = await run(partial);
    assert.equal(missing.simd, 'simd128');
    assert.deepEqual(missing.errors, [], 'nothing but the missing file');

    // The same probabilities, bit for bit: the relaxed dot product's int8 sums are exact.
    assert.deepEqual(refused.answers, relaxed.answers);
    assert.deepEqual(missing.answers, relaxed.answers);
    const cli = execFileSync(wickBinary, ['predict', '--json', ...held]).toString().trim().split('\n').map((line) => JSON.parse(line).classes[0]);
    for (const [i, answer] of relaxed.answers.entries()) {
      const best = answer.indexOf(Math.max(...answer));
      assert.ok(Math.abs(answer[best] - cli[i].probability) <= 0.01, `${names[i]}: ${answer[best]} against wick predict's ${cli[i].probability}`);
    }
  } finally {
    await browser.close();
    for (const server of servers) server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('wick.d.ts types the calls the docs show (tsc --strict), and refuses a number as an image', () => {
  const tsc = path.join(root, 'node_modules/.bin/tsc');
  execFileSync(tsc, ['--noEmit', '--strict', '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler',
    '--lib', 'es2022,dom', path.join(root, 'tests/reference/use_wick.ts')], { stdio: 'pipe' });
});
