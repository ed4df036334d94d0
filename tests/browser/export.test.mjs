// Exports in a browser. A Wick model where Teachable Machine's users run theirs: `wick export
// --format tfjs` loaded by `@teachablemachine/image` (0.8.5, on the TF.js 1.3.1 its page snippet
// pins) in Chromium, end to end — tmImage.load, then tmImage.predict on photo elements, its own crop
// and normalisation — gives `wick predict`'s top-1 on held-out photos. And the page's own *Export
// model*: computed in the tab, the same files `wick export` writes, with no request off the origin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, serveDist, launchChromium, photoCrops, openApp, exportFromPage, unzip, wickBinary, trainBrickAndGrass, textureFolders } from './harness.mjs';


const PAGE = `<!doctype html>
<meta charset="utf-8">
<script src="/tf/tf.min.js"></script>
<script src="/tm/teachablemachine-image.min.js"></script>
<script>
window.classify = async (names) => {
  const model = await tmImage.load('/export/model.json', '/export/metadata.json');
  const answers = [];
  for (const name of names) {
    const image = new Image();
    image.src = '/photos/' + name;
    await image.decode();
    const ranked = (await model.predict(image)).sort((a, b) => b.probability - a.probability);
    answers.push(ranked[0].className);
  }
  return { answers, classes: model.getTotalClasses(), labels: model.getClassLabels(), tfjs: tf.version.tfjs };
};
</script>`;

test('a TF.js export runs in Teachable Machine\'s own library with wick predict\'s answers', { timeout: 600_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-tm-'));
  const data = path.join(dir, 'data');
  const photos = path.join(dir, 'photos');
  fs.mkdirSync(photos);
  textureFolders(data, 8);
  const held = [
    ...photoCrops(photos, 'brick', 4, 20), ...photoCrops(photos, 'grass', 3, 20), ...photoCrops(photos, 'gravel', 3, 20),
  ];
  const model = path.join(dir, 'textures.wick');
  const exported = path.join(dir, 'export');
  execFileSync(wickBinary, ['train', '--data', data, '--out', model, '--no-cache', '--quiet']);
  execFileSync(wickBinary, ['export', '--model', model, '--format', 'tfjs', '--out', exported]);
  const predicted = execFileSync(wickBinary, ['predict', '--model', model, '--json', '--top', '1', ...held])
    .toString().trim().split('\n').map((line) => JSON.parse(line).classes[0].label);

  fs.writeFileSync(path.join(dir, 'index.html'), PAGE);
  const { server, origin } = await serveDist(dir, {
    '/tf/': path.join(root, 'node_modules/tfjs-1.3.1/dist'),
    '/tm/': path.join(root, 'node_modules/@teachablemachine/image/dist'),
    '/export/': exported,
    '/photos/': photos,
  });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(origin);
    const result = await page.evaluate((names) => window.classify(names), held.map((p) => path.basename(p)));
    assert.equal(result.tfjs, '1.3.1');
    assert.deepEqual(result.labels, ['brick', 'grass', 'gravel']);
    assert.equal(result.classes, 3);
    const same = result.answers.filter((label, i) => label === predicted[i]).length;
    console.log(`# Teachable Machine's library on TF.js 1.3.1: the same top-1 as wick predict on ${same} of ${held.length} held-out photos (${result.answers.join(', ')})`);
    assert.ok(same >= 9, `only ${same} of ${held.length}: ${result.answers} against ${predicted}`);
  } finally {
    await browser.close();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});


test('the page exports its model as ONNX and TF.js: the files wick export writes, computed in the tab', { timeout: 600_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-page-export-'));
  const { server, origin } = await serveDist();
  const browser = await launchChromium();
  try {
    const { page, requests, errors } = await openApp(browser, origin);
    await trainBrickAndGrass(page, dir);
    const exported = (format) => exportFromPage(page, format);
    const wick = await exported('wick');
    assert.equal(wick.name, 'model.wick');
    const model = path.join(dir, 'model.wick');
    fs.writeFileSync(model, wick.bytes);

    for (const [format, name, flags] of [['onnx', 'model.onnx', []], ['onnx-int8', 'model-int8.onnx', ['--quantize']]]) {
      const started = Date.now();
      const onnx = await exported(format);
      const seconds = (Date.now() - started) / 1000;
      assert.equal(onnx.name, name);
      const cli = path.join(dir, name);
      execFileSync(wickBinary, ['export', '--model', model, '--format', 'onnx', ...flags, '--out', cli]);
      assert.ok(onnx.bytes.equals(fs.readFileSync(cli)), `${format}: the page's file is wick export's`);
      console.log(`# ${format} from the page: ${(onnx.bytes.length / 1e6).toFixed(2)} MB in ${seconds.toFixed(1)} s`);
      assert.match(await page.textContent('#status'), new RegExp(`^Exported the model as ${name}`));
    }

    const zipStarted = Date.now();
    const zip = await exported('tfjs');
    console.log(`# tfjs from the page: ${(zip.bytes.length / 1e6).toFixed(2)} MB .zip in ${((Date.now() - zipStarted) / 1000).toFixed(1)} s`);
    assert.equal(zip.name, 'model.zip');
    const unzipped = unzip(zip.bytes, path.join(dir, 'unzipped'));
    const cli = path.join(dir, 'cli-tfjs');
    execFileSync(wickBinary, ['export', '--model', model, '--format', 'tfjs', '--out', cli]);
    for (const file of ['model.json', 'weights.bin']) {
      assert.ok(fs.readFileSync(path.join(unzipped, 'model', file)).equals(fs.readFileSync(path.join(cli, file))), `tfjs: ${file}`);
    }
    const meta = (folder) => { const m = JSON.parse(fs.readFileSync(path.join(folder, 'metadata.json'))); delete m.timeStamp; return m; };
    assert.deepEqual(meta(path.join(unzipped, 'model')), meta(cli));

    assert.deepEqual(requests.filter((url) => new URL(url).origin !== origin), [], 'no request leaves the origin (blob: URLs are the page\'s own)');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
