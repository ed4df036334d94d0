// Training the backbone's last layers in the tab, on real photos: 5 CIFAR-10 classes × 40 training
// images (the JPEG copy in ../shared/data), held-out images from the same classes. Head only, then
// "Layers to train" on the same split and seed; the exported backbone and .wick answer in the CLI as
// in the page; a reload, Open model and the project file keep the deeper-trained model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, openApp, isolatedBrowser, card, counts, addImages, wickBinary } from './harness.mjs';

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'dog'];
const PER_CLASS = 40;
const HELD_OUT = 4; // per class, never added to the project: the CLI and the page must agree on them
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-layers-'));
const tarball = process.env.WICK_CIFAR10_JPEG ?? path.join(root, '../shared/data/cifar10-train-jpeg.tar.gz');

/// The first PER_CLASS + HELD_OUT photos of each class, unpacked from the JPEG copy.
function unpackPhotos() {
  const names = CLASSES.flatMap((c) => Array.from({ length: PER_CLASS + HELD_OUT }, (_, i) => `train/${c}/${String(i).padStart(4, '0')}.jpg`));
  execFileSync('tar', ['-xzf', tarball, '-C', scratch, ...names]);
  const file = (c, i) => {
    const p = path.join(scratch, 'train', c, `${String(i).padStart(4, '0')}.jpg`);
    return { path: p, name: `${c}-${i}.jpg`, mimeType: 'image/jpeg', buffer: fs.readFileSync(p) };
  };
  return {
    training: CLASSES.map((c) => Array.from({ length: PER_CLASS }, (_, i) => file(c, i))),
    heldOut: CLASSES.flatMap((c) => Array.from({ length: HELD_OUT }, (_, i) => file(c, PER_CLASS + i))),
  };
}

/// `file` re-encoded as PNG by the page (and written beside it for the CLI).
async function asPng(page, file) {
  const png = await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/jpeg' }));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    const out = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
    return btoa(String.fromCharCode(...out));
  }, file.buffer.toString('base64'));
  const buffer = Buffer.from(png, 'base64');
  const target = file.path.replace(/\.jpg$/, '.png');
  fs.writeFileSync(target, buffer);
  return { path: target, name: file.name.replace(/\.jpg$/, '.png'), mimeType: 'image/png', buffer };
}

const shared = isolatedBrowser();



/// Trains; resolves with the status line, the validation accuracy it states, and the seconds taken.
async function train(page) {
  const started = Date.now();
  await page.click('#train');
  await page.waitForFunction(() => {
    const s = document.querySelector('#train-status').textContent;
    return s.startsWith('Trained') || s.startsWith('Training failed');
  }, null, { timeout: 600_000 });
  const text = await page.textContent('#train-status');
  const accuracy = Number(text.match(/Validation accuracy: ([\d.]+)%/)?.[1]);
  return { text, accuracy, seconds: (Date.now() - started) / 1000 };
}

async function previewLabel(page, file) {
  await page.setInputFiles('#preview-file', { name: file.name, mimeType: file.mimeType, buffer: file.buffer });
  await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(n), file.name, { timeout: 60_000 });
  return page.textContent('#predictions li:first-child .label');
}

/// Clicks Export model and saves what it downloads: resolves with the saved paths by file name.
async function exportModel(page, expected) {
  const saved = {};
  const downloads = new Promise((resolve) => {
    page.on('download', async (d) => {
      const target = path.join(scratch, d.suggestedFilename());
      await d.saveAs(target);
      saved[d.suggestedFilename()] = target;
      if (Object.keys(saved).length === expected) resolve(saved);
    });
  });
  await page.click('#export-model');
  return downloads;
}

test('layers to train: deeper training on real photos matches head-only or beats it, exports what the CLI answers with, and persists', { skip: !fs.existsSync(tarball) && `no CIFAR-10 JPEG copy at ${tarball}` }, async () => {
  const { training, heldOut } = unpackPhotos();
  const context = await shared.browser.newContext({ acceptDownloads: true });
  try {
    const { page, errors, requests } = await openApp(context, shared.origin);
    // The layers learn through the last layer's pool: the head alone is compared on the same
    // features. (With stage pooling, the default, the head alone beat one trained layer on these
    // photos, 78% against 74%, in the run that made this comparison explicit.)
    await page.click('#advanced summary');
    await page.selectOption('#pooling', 'last');
    await page.waitForFunction(() => /^Features: last layer only/.test(document.querySelector('#status').textContent));
    await page.click('#advanced summary');
    for (let i = 2; i < CLASSES.length; i++) await page.click('#add-class');
    for (const [i, name] of CLASSES.entries()) {
      await card(page, i).locator('.class-name').fill(name);
      await card(page, i).locator('.class-name').press('Tab');
      await addImages(page, i, training[i]);
    }
    assert.deepEqual(await counts(page), CLASSES.map(() => PER_CLASS));
    await page.click('#advanced summary');
    await page.fill('#validation-share', '0.25');
    await page.press('#validation-share', 'Tab');

    const headOnly = await train(page);
    assert.match(headOnly.text, /^Trained in/);

    // The choice shows what it costs here, measured, before training starts.
    await page.selectOption('#train-layers', '1');
    await page.waitForFunction(() => /^Measured here: about [\d.]+ s per epoch for 150 training images/.test(document.querySelector('#layers-cost').textContent), null, { timeout: 60_000 });
    const deeper = await train(page);
    assert.match(deeper.text, /^Trained in/);
    // With the time its layer epochs took, to set against the estimate.
    assert.match(deeper.text, /The layers' \d+ epochs? took \d+\.\d\d s each\./);
    assert.ok(deeper.accuracy >= headOnly.accuracy, `deeper ${deeper.accuracy}% < head only ${headOnly.accuracy}%`);
    console.log(`# head only: ${headOnly.accuracy}% in ${headOnly.seconds.toFixed(1)} s; head + 1 layer: ${deeper.accuracy}% in ${deeper.seconds.toFixed(1)} s (preparing the inputs included)`);

    // A second run reuses the kept activations: no preparing, only training.
    const again = await train(page);
    assert.match(again.text, /^Trained in/);
    assert.equal(again.accuracy, deeper.accuracy, 'the same split, seed and kept views give the same model');
    // A kept row that storage gives back damaged (cut short) is computed again, not trained on.
    const firstRow = (damage) => page.evaluate((damage) => new Promise((resolve, reject) => {
      const open = indexedDB.open('wick');
      open.onsuccess = () => {
        const tx = open.result.transaction('activations', 'readwrite');
        const cursor = tx.objectStore('activations').openCursor();
        let length = null;
        cursor.onsuccess = () => {
          length = cursor.result.value.bits.length;
          if (damage) cursor.result.update({ ...cursor.result.value, bits: cursor.result.value.bits.slice(0, 10) });
        };
        tx.oncomplete = () => resolve(length);
        tx.onerror = () => reject(tx.error);
      };
    }), damage);
    const rowLength = await firstRow(true);
    assert.equal(await firstRow(false), 10);
    const repaired = await train(page);
    assert.equal(repaired.accuracy, deeper.accuracy, 'the damaged row was computed again');
    assert.equal(await firstRow(false), rowLength, 'and kept whole');

    // Export model: the backbone file and its .wick, which the CLI runs as the page does.
    const files = await exportModel(page, 2);
    const [model, backbone] = [files['model.wick'], files['model.backbone.safetensors']];
    assert.ok(model && backbone, `downloads: ${Object.keys(files)}`);
    // As PNG (decoded by the browser once): JPEG decoders may round differently natively and in
    // wasm, and the comparison is of the two classifiers, not of the two decoders.
    for (const [i, file] of heldOut.entries()) heldOut[i] = await asPng(page, file);
    const pageAnswers = [];
    for (const file of heldOut) {
      const label = await previewLabel(page, file);
      pageAnswers.push({ label, percent: parseFloat(await page.textContent('#predictions li:first-child .percent')) });
    }
    // One JSON line per image. The page (wasm) and the CLI (native kernels, FMA) round the f32 parts
    // differently, and a rounding that crosses an int8 step between layers moves a probability: on
    // these upsampled 32-px photos by up to 2 points (0.6 with the ImageNet backbone alone). So: the
    // same top-1 wherever the CLI's top two are more than 0.05 apart, else one of the CLI's top two;
    // and the page's probability within 0.03 of the CLI's.
    const cli = execFileSync(wickBinary, ['predict', '--json', '--backbone', backbone, '--model', model, ...heldOut.map((f) => f.path)]);
    const cliAnswers = cli.toString().trim().split('\n').map((line) => JSON.parse(line).classes);
    heldOut.forEach((file, i) => {
      const [first, second] = cliAnswers[i];
      const { label, percent } = pageAnswers[i];
      const agreed = first.probability - second.probability > 0.05 ? label === first.label : [first.label, second.label].includes(label);
      assert.ok(agreed, `${file.name}: the page says ${label} (${percent}%), the CLI ${first.label} ${first.probability} / ${second.label} ${second.probability}`);
      const cliProbability = cliAnswers[i].find((c) => c.label === label).probability;
      assert.ok(Math.abs(percent / 100 - cliProbability) <= 0.03, `${file.name}: ${label} ${percent}% in the page, ${cliProbability} in the CLI`);
    });
    const cliLabels = cliAnswers.map((classes) => classes[0].label);
    const clear = (i) => cliAnswers[i][0].probability - cliAnswers[i][1].probability > 0.05;
    assert.match(execFileSync(wickBinary, ['eval', '--json', '--data', path.join(scratch, 'train'), '--backbone', backbone, '--model', model]).toString(), /"accuracy"/);

    // A reload restores the deeper-trained project: the select, the model and its answers.
    await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
    assert.equal(await page.inputValue('#train-layers'), '1');
    assert.equal(await page.isDisabled('#export-model'), false);
    const clearOnes = heldOut.map((_, i) => i).filter(clear);
    assert.ok(clearOnes.length >= 3, 'at least three held-out photos with a clear answer');
    assert.equal(await previewLabel(page, heldOut[clearOnes[0]]), cliLabels[clearOnes[0]]);

    // Open model with both files: the model comes back on top of the project, which stays.
    await page.setInputFiles('#open-model', [backbone, model]);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened model'));
    assert.deepEqual(await counts(page), CLASSES.map(() => PER_CLASS), 'the project stays');
    assert.equal(await previewLabel(page, heldOut[clearOnes[1]]), cliLabels[clearOnes[1]]);

    // The project file round-trips it, kept copies and all: another deeper run needs no re-adding.
    const projectDownload = page.waitForEvent('download');
    await page.click('#export-project');
    const projectPath = path.join(scratch, 'layers.wickproject');
    await (await projectDownload).saveAs(projectPath);
    page.once('dialog', (d) => d.accept());
    await page.click('#reset');
    await page.waitForFunction(() => document.querySelector('#status').textContent === 'Started a new project.');
    await page.setInputFiles('#open-project', projectPath);
    await page.waitForFunction(() => /^Opened layers\.wickproject/.test(document.querySelector('#status').textContent));
    assert.match(await page.textContent('#status'), /with its trained model/);
    assert.equal(await previewLabel(page, heldOut[clearOnes[2]]), cliLabels[clearOnes[2]]);
    assert.match((await train(page)).text, /^Trained in/);

    assert.deepEqual(requests.filter((u) => new URL(u).origin !== shared.origin && !u.startsWith(`blob:${shared.origin}`)), [], 'every request on the page\'s origin');
    assert.deepEqual(errors, [], `page errors: ${errors.join('; ')}`);
  } finally {
    await context.close();
  }
});

/// A project file (safetensors) rewritten: `editMeta` changes its metadata JSON, `editTensors` its
/// list of tensors ({ name, dtype, shape, bytes }); offsets are laid out afresh.
function rewriteProject(bytes, editMeta, editTensors) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const data = bytes.subarray(8 + n);
  const meta = JSON.parse(header.__metadata__.meta);
  editMeta(meta);
  const tensors = editTensors(Object.entries(header).filter(([name]) => name !== '__metadata__')
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: data.subarray(...t.data_offsets) })));
  const out = { __metadata__: { ...header.__metadata__, meta: JSON.stringify(meta) } };
  let offset = 0;
  for (const t of tensors) {
    out[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = Buffer.from(JSON.stringify(out));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, ...tensors.map((t) => t.bytes)]);
}

test('layers to train, bad input: images without kept copies, or whose copy does not decode, are named; Cancel while preparing keeps the model', { skip: !fs.existsSync(tarball) && `no CIFAR-10 JPEG copy at ${tarball}` }, async () => {
  const { training } = unpackPhotos();
  const context = await shared.browser.newContext({ acceptDownloads: true });
  try {
    const { page, errors } = await openApp(context, shared.origin);
    for (const [i, name] of CLASSES.slice(0, 2).entries()) {
      await card(page, i).locator('.class-name').fill(name);
      await card(page, i).locator('.class-name').press('Tab');
      await addImages(page, i, training[i].slice(0, 20));
    }
    await page.click('#advanced summary');
    assert.match((await train(page)).text, /^Trained in/); // head only: the model to keep
    const projectDownload = page.waitForEvent('download');
    await page.click('#export-project');
    const project = path.join(scratch, 'small.wickproject');
    await (await projectDownload).saveAs(project);
    const original = fs.readFileSync(project);
    const statusAfterTraining = async () => {
      await page.click('#train');
      await page.waitForFunction(() => /^(Trained|Training failed|Cancelled)/.test(document.querySelector('#train-status').textContent), null, { timeout: 300_000 });
      return page.textContent('#train-status');
    };
    const open = async (name, bytes) => {
      const file = path.join(scratch, name);
      fs.writeFileSync(file, bytes);
      page.once('dialog', (d) => d.accept());
      await page.setInputFiles('#open-project', file);
      await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(`Opened ${n}`), name);
    };

    // Cancel while the inputs of the last 3 parts are prepared (4 views of 34 training images):
    // the model stays, and what was prepared is kept.
    await page.selectOption('#train-layers', '3');
    await page.click('#train');
    await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Preparing'));
    await page.click('#cancel');
    await page.waitForFunction(() => /^(Cancelled|Trained|Training failed)/.test(document.querySelector('#train-status').textContent), null, { timeout: 300_000 });
    assert.match(await page.textContent('#train-status'), /^Cancelled while preparing the layers' inputs; the \d+ images? prepared so far are kept for next time\. The model is as it was\./);
    assert.equal(await page.isDisabled('#export-model'), false);

    // A project file from before kept copies: the images are named, and the head alone still trains.
    await open('old.wickproject', rewriteProject(original,
      (meta) => meta.classes.forEach((c) => c.samples.forEach((s) => { s.source_bytes = 0; })),
      (tensors) => tensors.filter((t) => t.name !== 'sources')));
    await page.selectOption('#train-layers', '1');
    assert.match(await statusAfterTraining(), /^Training failed: 40 images have no kept copy to train the backbone's layers on .*e\.g\. "airplane-0\.jpg": add them again, or train the head only/);
    await page.selectOption('#train-layers', '0');
    assert.match(await statusAfterTraining(), /^Trained in/);

    // A kept copy that does not decode (a hostile file): named, nothing else changes.
    await open('corrupt.wickproject', rewriteProject(original, () => {},
      (tensors) => tensors.map((t) => (t.name === 'sources' ? { ...t, bytes: Buffer.alloc(t.bytes.length, 7) } : t))));
    await page.selectOption('#train-layers', '1');
    assert.match(await statusAfterTraining(), /^Training failed: the kept copy of "airplane-\d+\.jpg" cannot be read .*remove that image and add it again/);
    assert.equal(await page.isDisabled('#export-model'), false, 'the model it had stays');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
