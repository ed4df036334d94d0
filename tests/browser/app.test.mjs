// The web app end to end in headless Chromium, on the `trunk build --release` output: real photos
// (crops of scikit-image's brick, grass and gravel textures; training crops from the top of each
// photo, held-out crops from the bottom), training, evaluation, preview, files, persistence, offline
// use, and bad input. Every request the page makes must stay on its origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, serveDist, launchChromium, openApp, wickBinary } from './harness.mjs';

const CLASSES = ['brick', 'grass', 'gravel'];
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-browser-'));

let server, origin, browser, network;
before(async () => {
  ({ server, origin, network } = await serveDist(undefined, { '/fixtures/': path.join(root, 'tests/fixtures') }));
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  server?.close();
  // The exported models, photos and checkpoints written here come to ~200 MB a run.
  fs.rmSync(scratch, { recursive: true, force: true });
});

/// `count` 160×160 PNG crops of fixture `name`, from rows [top, bottom), made in the page with a canvas.
async function crops(page, name, top, bottom, count, seed) {
  const pngs = await page.evaluate(async ([name, top, bottom, count, seed]) => {
    const bitmap = await createImageBitmap(await (await fetch(`/fixtures/${name}.png`)).blob());
    let state = seed;
    const random = (n) => { state = (state * 1103515245 + 12345) % 2147483648; return state % n; };
    const out = [];
    for (let i = 0; i < count; i++) {
      const canvas = new OffscreenCanvas(160, 160);
      const x = random(bitmap.width - 160), y = top + random(bottom - top - 160);
      canvas.getContext('2d').drawImage(bitmap, x, y, 160, 160, 0, 0, 160, 160);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
      out.push(btoa(String.fromCharCode(...bytes)));
    }
    return out;
  }, [name, top, bottom, count, seed]);
  return pngs.map((b64, i) => ({ name: `${name}-${top}-${i}.png`, mimeType: 'image/png', buffer: Buffer.from(b64, 'base64') }));
}

const card = (page, i) => page.locator('.class-card').nth(i);
const statusText = (page) => page.textContent('#status');
const counts = (page) => page.$$eval('.class-card .count', (els) => els.map((e) => parseInt(e.textContent, 10)));
const names = (page) => page.$$eval('.class-card .class-name', (els) => els.map((e) => e.value));

async function addImages(page, i, files) {
  const before = (await counts(page))[i] ?? 0;
  await card(page, i).locator('.class-files').setInputFiles(files);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout: 120_000 });
  return (await counts(page))[i] - before;
}

async function makeClasses(page, perClass = 8) {
  for (let i = 2; i < CLASSES.length; i++) await page.click('#add-class');
  for (const [i, name] of CLASSES.entries()) {
    await card(page, i).locator('.class-name').fill(name);
    await card(page, i).locator('.class-name').press('Tab');
    assert.equal(await addImages(page, i, await crops(page, name, 0, 300, perClass, 7 + i)), perClass);
  }
}

/// Names the two starting classes brick and grass and adds three crops to each.
async function brickAndGrass(page) {
  for (const [i, name] of ['brick', 'grass'].entries()) {
    await card(page, i).locator('.class-name').fill(name);
    await card(page, i).locator('.class-name').press('Tab');
    await addImages(page, i, await crops(page, name, 0, 300, 3, i + 1));
  }
}

async function train(page) {
  await page.click('#train');
  await page.waitForFunction(() => {
    const s = document.querySelector('#train-status');
    return s.textContent.startsWith('Trained') || s.textContent.startsWith('Training failed');
  }, null, { timeout: 120_000 });
  return page.textContent('#train-status');
}

/// A Wick file (safetensors) with `edit` applied to the JSON in its `__metadata__.meta`: how the
/// tests make well-formed files that lie.
function editMeta(bytes, edit) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  const meta = JSON.parse(header.__metadata__.meta);
  edit(meta);
  header.__metadata__.meta = JSON.stringify(meta);
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, bytes.subarray(8 + n)]);
}

const offOrigin = (requests) => requests.filter((u) => {
  const url = new URL(u);
  return url.protocol === 'blob:' ? new URL(url.pathname).origin !== origin : url.origin !== origin;
});

test('three classes from real photos: train, evaluate, classify held-out photos, export, reload', async () => {
  const { page, requests, errors } = await openApp(browser, origin);
  assert.match(await statusText(page), /^Backbone ready/);
  assert.equal(await page.$eval('#backbone-progress', (p) => p.value), 1);
  assert.equal(await page.isDisabled('#train'), true, 'two empty classes cannot be trained');

  await makeClasses(page);
  assert.deepEqual(await names(page), CLASSES);
  assert.deepEqual(await counts(page), [8, 8, 8]);
  assert.match(await page.textContent('#extract-text'), /^Added 8 images/);

  const result = await train(page);
  assert.match(result, /^Trained in [\d.]+ s .*kept L2 \de[-+]\d.*Validation accuracy: ([\d.]+)%/);
  const accuracy = Number(result.match(/Validation accuracy: ([\d.]+)%/)[1]);
  assert.ok(accuracy >= 99, `validation accuracy ${accuracy}%`);
  assert.equal(await page.isHidden('#evaluation'), false);
  assert.equal(await page.$$eval('#confusion tbody tr', (rows) => rows.length), 3);
  assert.match(await page.textContent('#val-accuracy'), /100\.0% of 3 validation images/);
  const chartDrawn = await page.$eval('#chart', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return d.some((v, i) => i % 4 === 3 && v > 0);
  });
  assert.ok(chartDrawn, 'the loss/accuracy chart is drawn');

  // Held-out crops (bottom rows) are classified correctly in the preview.
  const heldOut = {};
  for (const [i, name] of CLASSES.entries()) heldOut[name] = await crops(page, name, 330, 512, 4, 100 + i);
  for (const name of CLASSES) {
    await page.setInputFiles('#preview-file', heldOut[name][0]);
    await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(n), heldOut[name][0].name);
    assert.equal(await page.textContent('#predictions li:first-child .label'), name);
  }

  // The exported .wick is the CLI's format: `wick eval` scores it on the held-out crops.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-model')]);
  const modelPath = path.join(scratch, 'exported.wick');
  await download.saveAs(modelPath);
  const evalDir = path.join(scratch, 'held-out');
  for (const name of CLASSES) {
    fs.mkdirSync(path.join(evalDir, name), { recursive: true });
    for (const f of heldOut[name]) fs.writeFileSync(path.join(evalDir, name, f.name), f.buffer);
  }
  const report = JSON.parse(execFileSync(wickBinary, ['eval', '--data', evalDir, '--model', modelPath, '--no-cache', '--json']));
  assert.ok(report.accuracy >= 0.9, `wick eval on the browser's model: ${report.accuracy}`);
  assert.equal(report.images, 12);

  // Reload: the project (classes, images, model, evaluation, the training chart) comes back from
  // IndexedDB, and the page says it is saved.
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  const chartBefore = await page.$eval('#chart', (c) => c.toDataURL());
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  assert.equal(await page.$eval('#chart', (c) => c.toDataURL()), chartBefore, 'the chart is drawn again');
  assert.equal(await page.textContent('#save-state'), 'Saved in this browser');
  assert.deepEqual(await names(page), CLASSES);
  assert.deepEqual(await counts(page), [8, 8, 8]);
  assert.equal(await page.isDisabled('#export-model'), false, 'the trained model survives a reload');
  assert.equal(await page.isHidden('#evaluation'), false);
  await page.setInputFiles('#preview-file', heldOut.gravel[1]);
  await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(n), heldOut.gravel[1].name);
  assert.equal(await page.textContent('#predictions li:first-child .label'), 'gravel');

  assert.deepEqual(errors, []);
  assert.ok(requests.some((u) => u.endsWith('/static/efficientnet-lite0-int8.safetensors')));
  assert.deepEqual(offOrigin(requests), [], 'requests off the page origin');
  await page.close();
});

test('a CLI-trained .wick opens in the page; corrupt and foreign models are refused', async () => {
  const { page, errors } = await openApp(browser, origin);
  // Train natively on crops written by the page.
  const dataDir = path.join(scratch, 'cli-data');
  for (const [i, name] of CLASSES.slice(0, 2).entries()) {
    fs.mkdirSync(path.join(dataDir, name), { recursive: true });
    for (const f of await crops(page, name, 0, 300, 5, 50 + i)) fs.writeFileSync(path.join(dataDir, name, f.name), f.buffer);
  }
  const cliModel = path.join(scratch, 'cli.wick');
  execFileSync(wickBinary, ['train', '--data', dataDir, '--out', cliModel, '--no-cache', '--quiet']);

  await page.setInputFiles('#open-model', cliModel);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened model'));
  assert.deepEqual(await names(page), ['brick', 'grass']);
  const [grass] = await crops(page, 'grass', 330, 512, 1, 9);
  await page.setInputFiles('#preview-file', grass);
  await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(n), grass.name);
  assert.equal(await page.textContent('#predictions li:first-child .label'), 'grass');

  // Corrupt: cut short. Foreign: the same model claiming another backbone. The project is untouched.
  const bytes = fs.readFileSync(cliModel);
  const cut = path.join(scratch, 'cut.wick');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
  await page.setInputFiles('#open-model', cut);
  await page.waitForFunction(() => document.querySelector('#status').classList.contains('error'));
  assert.match(await statusText(page), /cut\.wick: not a valid \.wick model.*unchanged/);
  const foreign = Buffer.from(bytes);
  const at = foreign.indexOf('sha256\\":\\"') + 'sha256\\":\\"'.length;
  foreign[at] = foreign[at] === 0x30 ? 0x31 : 0x30;
  const foreignPath = path.join(scratch, 'foreign.wick');
  fs.writeFileSync(foreignPath, foreign);
  await page.setInputFiles('#open-model', foreignPath);
  await page.waitForFunction(() => /foreign\.wick/.test(document.querySelector('#status').textContent));
  assert.match(await statusText(page), /was trained on backbone .* unchanged/);
  assert.deepEqual(await names(page), ['brick', 'grass']);
  assert.equal(await page.isDisabled('#export-model'), false, 'the model that was open is still there');

  // Well-formed files that lie: a .wick whose crop would overflow, one whose std is 0, a backbone
  // that claims 4·10⁹ blocks or names a path as its architecture. Each gets the CLI's message; the
  // page goes on working with what it had.
  const backboneBytes = fs.readFileSync(path.join(root, 'static/efficientnet-lite0-int8.safetensors'));
  const hostile = [
    ['crop.wick', editMeta(bytes, (m) => { m.preprocess.crop = 65536; }), /crop is 65536 pixels/],
    ['std.wick', editMeta(bytes, (m) => { m.preprocess.std = [0, 0.5, 0.5]; }), /std .* must be positive numbers/],
    // (4·10⁹ blocks: a count the wasm build's 32-bit usize can hold, so the bound, not the parser, refuses it.)
    ['repeats.safetensors', editMeta(backboneBytes, (m) => { m.config.stages[0].repeats = 4e9; }), /repeats is 4000000000, expected 1 to 16/],
    ['path.safetensors', editMeta(backboneBytes, (m) => { m.architecture = '../../x'; }), /architecture `..\/..\/x` is not a valid name/],
  ];
  // (Opening a backbone asks first, as it would drop the model: yes, each time.)
  const accept = (d) => d.accept();
  page.on('dialog', accept);
  for (const [name, file, message] of hostile) {
    const filePath = path.join(scratch, name);
    fs.writeFileSync(filePath, file);
    await page.setInputFiles('#open-model', filePath);
    await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(`Could not open ${n}`), name);
    assert.match(await statusText(page), message);
    assert.match(await statusText(page), /unchanged/);
    assert.deepEqual(await names(page), ['brick', 'grass']);
  }
  page.off('dialog', accept);
  assert.equal(await page.isDisabled('#export-model'), false, 'the model is still there');
  await page.setInputFiles('#preview-file', { ...grass, name: 'again.png' });
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('again.png'));
  assert.equal(await page.textContent('#predictions li:first-child .label'), 'grass', 'the page still classifies');
  assert.deepEqual(errors, []);
  await page.close();
});

test('bad images are skipped and named; training needs two classes with images; phone width fits', async () => {
  const { page } = await openApp(browser, origin);
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'no sideways scrolling on a phone');
  await page.keyboard.press('Tab');
  assert.notEqual(await page.evaluate(() => document.activeElement.tagName), 'BODY', 'the page is keyboard-reachable');
  const unlabelled = await page.$$eval('input, button', (els) => els.filter((e) => !e.labels?.length
    && !e.getAttribute('aria-label') && !(e.textContent ?? '').trim() && !e.closest('label')).map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, [], 'every control has a label');
  const [good] = await crops(page, 'brick', 0, 300, 1, 3);
  const added = await addImages(page, 0, [
    good,
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture') },
    { name: 'broken.png', mimeType: 'image/png', buffer: good.buffer.subarray(0, 200) },
  ]);
  assert.equal(added, 1, 'the good image is added');
  const text = await page.textContent('#extract-text');
  assert.match(text, /Added 1 image; skipped 2: /);
  assert.match(text, /notes\.txt: not an image/);
  assert.match(text, /broken\.png: /);

  assert.equal(await page.isDisabled('#train'), true);
  assert.match(await page.textContent('#train-hint'), /Add images to "Class 2" first/);
  page.once('dialog', (d) => d.accept());
  await card(page, 1).locator('.delete-class').click();
  assert.equal(await page.isDisabled('#train'), true);
  assert.match(await page.textContent('#train-hint'), /Add a second class/);
  await page.close();
});

test('projects: export and open round-trip; corrupt project files leave the project untouched; reset asks', async () => {
  const { page, errors } = await openApp(browser, origin);
  await brickAndGrass(page);
  await train(page);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-project')]);
  const projectPath = path.join(scratch, 'p.wickproject');
  await download.saveAs(projectPath);

  // Reset asks first: dismissing keeps everything.
  page.once('dialog', (d) => d.dismiss());
  await page.click('#reset');
  assert.deepEqual(await counts(page), [3, 3]);
  page.once('dialog', (d) => d.accept());
  await page.click('#reset');
  assert.deepEqual(await counts(page), [0, 0]);
  assert.equal(await page.isDisabled('#export-model'), true);

  await page.setInputFiles('#open-project', projectPath);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened p.wickproject'));
  assert.deepEqual(await names(page), ['brick', 'grass']);
  assert.deepEqual(await counts(page), [3, 3]);
  assert.equal(await page.isDisabled('#export-model'), false, 'the project file carries the model');

  const saved = fs.readFileSync(projectPath);
  const lying = [
    ['report.wickproject', editMeta(saved, (m) => { m.settings.report = { validation: 'all good' }; })],
    ['confusion.wickproject', editMeta(saved, (m) => { m.settings.report.validation.confusion = [[1]]; })],
    ['classes.wickproject', editMeta(saved, (m) => { m.classes = 'brick, grass'; })],
    ['trained-on.wickproject', editMeta(saved, (m) => { m.settings.trained_on = [0, 1e6]; })],
  ];
  for (const [name, bytes] of [['cut.wickproject', saved.subarray(0, 500)], ['text.wickproject', Buffer.from('hello')], ...lying]) {
    const file = path.join(scratch, name);
    fs.writeFileSync(file, bytes);
    await page.setInputFiles('#open-project', file);
    await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(`Could not open ${n}`), name);
    assert.match(await statusText(page), /not a valid Wick project file.*unchanged/);
    assert.deepEqual(await counts(page), [3, 3]);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('storage full: a clear message, nothing lost; cancel; reload during training keeps the project', async () => {
  const { page } = await openApp(browser, origin);
  await addImages(page, 0, await crops(page, 'brick', 0, 300, 3, 1));
  await addImages(page, 1, await crops(page, 'gravel', 0, 300, 3, 2));
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');

  // The browser refuses the next save for lack of space. (Chromium's CDP quota override did not make
  // IndexedDB writes to an existing database fail, so the refusal is injected where the browser would
  // raise it: IDBObjectStore.put, with the DOMException a full disk gives.)
  const extra = await crops(page, 'gravel', 0, 300, 1, 3);
  await page.evaluate(() => {
    const put = IDBObjectStore.prototype.put;
    IDBObjectStore.prototype.put = function (...args) {
      if (window.storageFull) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put.apply(this, args);
    };
    window.storageFull = true;
  });
  await addImages(page, 1, extra);
  await page.waitForFunction(() => document.querySelector('#status').classList.contains('error'), null, { timeout: 30_000 });
  assert.match(await statusText(page), /storage .* full.*Save project to file/);
  assert.deepEqual(await counts(page), [3, 4], 'the new image is still in the open project');
  assert.equal(await page.textContent('#save-state'), 'Not saved: storage full');
  // Space again: the next change saves everything, including the image that could not be saved before.
  await page.evaluate(() => { window.storageFull = false; });
  await card(page, 0).locator('.class-name').fill('bricks');
  await card(page, 0).locator('.class-name').press('Tab');
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');

  // A long run (a hidden layer trains epoch by epoch; no validation, so no early stop): Cancel stops
  // it and keeps the weights so far. Epochs mean nothing to the linear head, so they wait for the
  // hidden layer before they can be edited.
  await page.click('#advanced summary');
  assert.equal(await page.isDisabled('#epochs'), true, 'the linear head has no epochs');
  await page.fill('#hidden-units', '16');
  await page.press('#hidden-units', 'Tab');
  await page.waitForFunction(() => !document.querySelector('#epochs').disabled);
  await page.fill('#epochs', '1000');
  await page.fill('#validation-share', '0');
  await page.click('#train');
  await page.waitForFunction(() => /^Epoch \d+/.test(document.querySelector('#train-status').textContent));
  await page.click('#cancel');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'));
  assert.match(await page.textContent('#train-status'), /\(cancelled; kept epoch \d+\)/);
  assert.equal(await page.isDisabled('#export-model'), false);
  assert.equal(await page.isHidden('#cancel'), true);

  // The same run again, reloaded in the middle.
  await page.click('#train');
  await page.waitForFunction(() => /^Epoch \d+/.test(document.querySelector('#train-status').textContent));
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  assert.deepEqual(await counts(page), [3, 4], 'the project is intact after a reload mid-training');
  assert.equal(await page.isDisabled('#train'), false);
  await page.close();
});

test('webcam: hold to record adds frames; paste and drop add images; remove; live preview', async () => {
  const context = await browser.newContext({ permissions: ['camera'] });
  const { page } = await openApp(context, origin);
  await card(page, 0).locator('.webcam').click();
  await page.waitForFunction(() => document.querySelector('.class-card video').videoWidth > 0, null, { timeout: 30_000 });
  const record = card(page, 0).locator('.hold-record');
  await record.hover();
  await page.mouse.down();
  await page.waitForTimeout(700);
  await page.mouse.up();
  await page.waitForFunction(() => parseInt(document.querySelector('.class-card .count').textContent, 10) >= 2, null, { timeout: 30_000 });
  // Frames captured before the release may still be in the worker (slower on a busy machine): wait
  // until the count settles, then check that no new frame comes.
  let recorded = (await counts(page))[0];
  for (let round = 0; round < 20; round++) {
    await page.waitForTimeout(600);
    const now = (await counts(page))[0];
    if (now === recorded) break;
    recorded = now;
  }
  await page.waitForTimeout(700);
  assert.equal((await counts(page))[0], recorded, 'recording stops when the button is released');

  const [png] = await crops(page, 'grass', 0, 300, 1, 4);
  await card(page, 1).locator('.drop-zone').focus();
  await page.evaluate((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data }));
  }, png.buffer.toString('base64'));
  await page.waitForFunction(() => parseInt(document.querySelectorAll('.class-card .count')[1].textContent, 10) === 1);

  // Dropped files land in the class they are dropped on.
  const [dropped] = await crops(page, 'brick', 0, 300, 1, 5);
  const transfer = await page.evaluateHandle((b64) => {
    const data = new DataTransfer();
    data.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'dropped.png', { type: 'image/png' }));
    return data;
  }, dropped.buffer.toString('base64'));
  await card(page, 1).locator('.drop-zone').dispatchEvent('drop', { dataTransfer: transfer });
  await page.waitForFunction(() => parseInt(document.querySelectorAll('.class-card .count')[1].textContent, 10) === 2);

  // Each thumbnail's × removes it.
  await card(page, 1).locator('.thumbs button').first().click();
  assert.equal((await counts(page))[1], 1);

  // The preview classifies the live webcam (ImageNet classes before any training).
  await page.click('#preview-webcam');
  await page.waitForFunction(() => document.querySelectorAll('#predictions li').length === 5, null, { timeout: 30_000 });
  await page.click('#preview-webcam');
  await context.close();
});

test('offline after the first visit: the service worker serves the app and the model', async () => {
  const context = await browser.newContext();
  const { page } = await openApp(context, origin);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  const cached = await page.evaluate(async () => Boolean(await caches.match('/static/efficientnet-lite0-int8.safetensors')));
  assert.ok(cached, 'the first visit\'s model download is in the offline cache');
  await context.setOffline(true);
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true'
    || document.querySelector('#status').classList.contains('error'), null, { timeout: 60_000 });
  assert.match(await statusText(page), /^Backbone ready/);
  await context.close();
});

/// CIFAR-10 binary records of `n` images with a learnable pattern: class `i % 10`, a per-class colour
/// and stripe direction, plus noise (as in tests/cifar10.rs).
function syntheticCifar(n, seed) {
  let state = seed + 1;
  const random = () => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648; };
  const out = Buffer.alloc(n * 3073);
  for (let i = 0; i < n; i++) {
    const c = i % 10;
    const colour = [(c * 37) % 256, (c * 91 + 40) % 256, (c * 151 + 80) % 256];
    out[i * 3073] = c;
    colour.forEach((base, ch) => {
      for (let p = 0; p < 1024; p++) {
        const along = c % 2 === 0 ? p % 32 : Math.floor(p / 32);
        const v = base + (along % 8 < 4 ? 40 : -40) + 60 * (random() - 0.5);
        out[i * 3073 + 1 + ch * 1024 + p] = Math.max(0, Math.min(255, Math.floor(v)));
      }
    });
  }
  return out;
}

/** Record `i` of a CIFAR binary batch as a PNG, written to the scratch folder too. */
async function cifarPng(page, batch, i) {
  const b64 = await page.evaluate((planes) => {
    const canvas = new OffscreenCanvas(32, 32);
    const ctx = canvas.getContext('2d');
    const image = ctx.createImageData(32, 32);
    for (let p = 0; p < 1024; p++) image.data.set([planes[p], planes[1024 + p], planes[2048 + p], 255], 4 * p);
    ctx.putImageData(image, 0, 0);
    return canvas.convertToBlob({ type: 'image/png' }).then((b) => b.arrayBuffer())
      .then((a) => btoa(String.fromCharCode(...new Uint8Array(a))));
  }, [...batch.subarray(i * 3073 + 1, (i + 1) * 3073)]);
  const png = { name: `cifar-test-${i}.png`, mimeType: 'image/png', buffer: Buffer.from(b64, 'base64') };
  png.path = path.join(scratch, png.name);
  fs.writeFileSync(png.path, png.buffer);
  return { name: png.name, mimeType: png.mimeType, buffer: png.buffer, path: png.path };
}

/** The preview's top label for `file`. */
async function previewLabel(page, file) {
  await page.setInputFiles('#preview-file', { name: file.name, mimeType: file.mimeType, buffer: file.buffer });
  await page.waitForFunction((n) => document.querySelector('#status').textContent.startsWith(n), file.name, { timeout: 60_000 });
  return page.textContent('#predictions li:first-child .label');
}

/** Five synthetic CIFAR training batches of `perBatch` images and a test batch of 10 in `dir`. */
function writeSyntheticCifar(dir, perBatch) {
  fs.mkdirSync(dir, { recursive: true });
  for (let b = 1; b <= 5; b++) fs.writeFileSync(path.join(dir, `data_batch_${b}.bin`), syntheticCifar(perBatch, b));
  const test = syntheticCifar(10, 99);
  fs.writeFileSync(path.join(dir, 'test_batch.bin'), test);
  return test;
}

test('a backbone fine-tuned by the CLI opens in the page with its .wick; reload keeps it; reset goes back', async () => {
  const dataDir = path.join(scratch, 'cifar');
  const test = writeSyntheticCifar(dataDir, 48);
  const pth = process.env.WICK_LITE0_PTH ?? path.join(os.homedir(), '.cache/wick/efficientnet-lite0-57934424.pth');
  const model = path.join(scratch, 'cifar.wick');
  const backbonePath = path.join(scratch, 'cifar.backbone.safetensors');
  execFileSync(wickBinary, ['cifar10', '--mode', 'finetune', '--data', dataDir, '--pth', pth, '--img-size', '32',
    '--epochs', '5', '--batch-size', '16', '--lr', '0.02', '--out', model, '--quiet']);

  const { page, errors, requests } = await openApp(browser, origin);
  // Test image 3 (a "cat") as a PNG, and what the CLI says about it with the fine-tuned backbone.
  const png = await cifarPng(page, test, 3);
  const cli = (args) => JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--backbone', backbonePath, ...args, png.path]));
  const preview = () => previewLabel(page, png);

  // A corrupt backbone file is refused; the default backbone stays.
  const cut = path.join(scratch, 'cut.backbone.safetensors');
  fs.writeFileSync(cut, fs.readFileSync(backbonePath).subarray(0, 100_000));
  await page.setInputFiles('#open-model', cut);
  await page.waitForFunction(() => document.querySelector('#status').classList.contains('error'));
  assert.match(await statusText(page), /Could not open cut\.backbone\.safetensors.*unchanged/);
  // The fine-tuned .wick alone names the backbone it needs.
  await page.setInputFiles('#open-model', model);
  await page.waitForFunction(() => /fine-tuned with it/.test(document.querySelector('#status').textContent));

  // The backbone alone: its own classifier answers, with CIFAR-10's classes, as the CLI does.
  await page.setInputFiles('#open-model', backbonePath);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened backbone'));
  assert.match(await page.textContent('#backbone-name'), /fine-tuned by wick .* 10 classes of its own/);
  assert.equal(await preview(), cli([]).classes[0].label);
  assert.match(await page.textContent('#preview-kind'), /classes the backbone was fine-tuned on/);

  // Backbone and .wick together: the model's classes become the project's, and it classifies as the CLI does.
  await page.setInputFiles('#open-model', [backbonePath, model]);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened model'));
  assert.deepEqual(await names(page), ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
  assert.equal(await preview(), cli(['--model', model]).classes[0].label);

  // A reload comes back to the fine-tuned backbone and its model.
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 60_000 });
  assert.match(await statusText(page), /Backbone ready: efficientnet-lite0, fine-tuned by wick/);
  assert.equal(await page.isDisabled('#export-model'), false);
  assert.equal(await preview(), cli(['--model', model]).classes[0].label);

  // Reset returns to the default ImageNet backbone.
  page.once('dialog', (d) => d.accept());
  await page.click('#reset');
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'Started a new project.');
  assert.equal(await page.textContent('#backbone-name'), 'EfficientNet-Lite0 (ImageNet)');
  await preview();
  assert.match(await page.textContent('#preview-kind'), /ImageNet classes/);
  assert.deepEqual(offOrigin(requests), []);
  assert.deepEqual(errors, []);
  await page.close();
});

test('an EfficientNet-Lite2 backbone converted by the CLI opens in the page, answers as the CLI does, and keeps the project\'s images', async () => {
  const pth = path.join(os.homedir(), '.cache/wick/efficientnet-lite2-9656183e.pth');
  const converted = path.join(scratch, 'lite2.safetensors');
  execFileSync(wickBinary, ['convert', pth, '--out', converted]);
  const coffee = path.join(root, 'tests/fixtures/coffee.png');
  const cliTop = JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--backbone', converted, coffee])).classes[0].label;
  assert.equal(cliTop, 'espresso');

  const { page, errors } = await openApp(browser, origin);
  // A project trained on the default backbone: its images are embedded again by Lite2 from the
  // copies kept of them, and the model the old features trained is dropped (after asking).
  await brickAndGrass(page);
  assert.match(await train(page), /^Trained in/);
  let asked = null;
  page.once('dialog', (d) => { asked = d.message(); d.accept(); });
  await page.setInputFiles('#open-model', converted);
  await page.waitForFunction(() => /^Opened backbone .*embedded again/.test(document.querySelector('#status').textContent), null, { timeout: 60_000 });
  assert.match(asked, /The project's 6 images will be embedded again by it, and the trained model dropped/);
  assert.equal(await page.textContent('#backbone-name'), 'efficientnet-lite2');
  assert.deepEqual(await counts(page), [3, 3]);
  assert.equal(await page.isDisabled('#export-model'), true);
  // With no model, the preview shows the backbone's own classes, as the CLI does.
  await page.setInputFiles('#preview-file', coffee);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
  assert.equal(await page.textContent('#predictions li:first-child .label'), cliTop);
  assert.match(await page.textContent('#preview-kind'), /ImageNet classes/);
  // The project trains again on the new features, and the project comes back on reload.
  assert.match(await train(page), /^Trained in/);
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 60_000 });
  assert.equal(await page.textContent('#backbone-name'), 'efficientnet-lite2');
  assert.deepEqual(await counts(page), [3, 3]);
  assert.equal(await page.isDisabled('#export-model'), false);
  // A backbone opened while images are still being read is refused: those images would be embedded
  // by one backbone or the other, depending on timing.
  const many = await crops(page, 'grass', 0, 300, 60, 11);
  await card(page, 1).locator('.class-files').setInputFiles(many);
  await page.setInputFiles('#open-model', converted);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Images are still being read'));
  assert.match(await statusText(page), /open lite2\.safetensors once they are added\. Your current project is unchanged/);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout: 120_000 });
  assert.deepEqual(await counts(page), [3, 63]);
  assert.equal(await page.isDisabled('#export-model'), false);
  assert.deepEqual(errors, []);
  await page.close();
});

test('EfficientNet-Lite2 as a choice: downloaded once with progress, named in the footer, the project embedded again and trained; kept across reloads and offline; reset goes back', async () => {
  const lite2 = path.join(root, 'static/efficientnet-lite2-int8.safetensors');
  const coffee = path.join(root, 'tests/fixtures/coffee.png');
  const cliTop = JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--backbone', lite2, coffee])).classes[0].label;
  const context = await browser.newContext();
  const { page, errors } = await openApp(context, origin);
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
  const fetchedLite2 = () => network.requests.filter((p) => p.endsWith('/efficientnet-lite2-int8.safetensors')).length;
  assert.equal(fetchedLite2(), 0, 'the first load does not fetch Lite2');
  assert.equal(await page.textContent('#backbone-name'), 'EfficientNet-Lite0 (ImageNet)');
  await brickAndGrass(page);
  assert.match(await train(page), /^Trained in/);

  // Every status line from here on, to see the download's progress go by.
  await page.evaluate(() => {
    window.statusLines = [];
    new MutationObserver(() => window.statusLines.push(document.querySelector('#status').textContent))
      .observe(document.querySelector('#status'), { childList: true, characterData: true, subtree: true });
  });
  await page.click('#advanced summary');
  let asked = null;
  page.once('dialog', (d) => { asked = d.message(); d.accept(); });
  await page.selectOption('#backbone', 'lite2');
  await page.waitForFunction(() => /^Backbone: EfficientNet-Lite2\. The project's images were embedded again/.test(document.querySelector('#status').textContent), null, { timeout: 120_000 });
  assert.match(asked, /^Switch to EfficientNet-Lite2 \(a 6\.5 MB download the first time\)\? The project's 6 images will be embedded again by it, and the trained model dropped/);
  const lines = await page.evaluate(() => window.statusLines);
  assert.ok(lines.some((l) => /^Downloading the backbone… [\d.]+ \/ 6\.5 MB$/.test(l)), `the download's progress: ${lines.slice(0, 5)}`);
  assert.equal(fetchedLite2(), 1);
  assert.equal(await page.textContent('#backbone-name'), 'EfficientNet-Lite2 (ImageNet)');
  assert.deepEqual(await counts(page), [3, 3]);
  assert.equal(await page.isDisabled('#export-model'), true);
  // With no model the preview shows Lite2's own ImageNet classes, as the CLI does with the same file.
  await page.setInputFiles('#preview-file', coffee);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
  assert.equal(await page.textContent('#predictions li:first-child .label'), cliTop);
  assert.match(await train(page), /^Trained in/);
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');

  // Reloads come back to Lite2 from the service worker's cache: nothing is fetched again.
  for (let i = 0; i < 2; i++) {
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
    assert.equal(await page.textContent('#backbone-name'), 'EfficientNet-Lite2 (ImageNet)');
    assert.equal(await page.inputValue('#backbone'), 'lite2');
    assert.deepEqual(await counts(page), [3, 3]);
    assert.equal(await page.isDisabled('#export-model'), false);
  }
  assert.equal(fetchedLite2(), 1, 'Lite2 was downloaded once');
  // And offline.
  await context.setOffline(true);
  network.offline = true;
  try {
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true'
      || document.querySelector('#status').classList.contains('error'), null, { timeout: 120_000 });
    assert.match(await statusText(page), /^Backbone ready: EfficientNet-Lite2/);
    await page.setInputFiles('#preview-file', coffee);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
  } finally {
    network.offline = false;
    await context.setOffline(false);
  }
  // Reset goes back to Lite0.
  page.once('dialog', (d) => { asked = d.message(); d.accept(); });
  await page.click('#reset');
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'Started a new project.');
  assert.match(asked, /and go back to the default backbone\?$/);
  assert.equal(await page.textContent('#backbone-name'), 'EfficientNet-Lite0 (ImageNet)');
  assert.equal(await page.inputValue('#backbone'), 'lite0');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a ResNet-18 converted by the CLI opens in the page and answers as the CLI does', async () => {
  // Seeded random weights in torchvision's layout (pretrained ones cannot be fetched here).
  const pth = path.join(scratch, 'resnet18-random.pth');
  execFileSync('python3', [path.join(root, 'tests/reference/make_random_resnet.py'), pth]);
  const converted = path.join(scratch, 'resnet18.safetensors');
  execFileSync(wickBinary, ['convert', pth, '--out', converted]);
  const coffee = path.join(root, 'tests/fixtures/coffee.png');
  const cliTop = JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--backbone', converted, coffee])).classes[0].label;

  const { page, errors } = await openApp(browser, origin);
  await page.setInputFiles('#open-model', converted);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened backbone'), null, { timeout: 60_000 });
  assert.equal(await page.textContent('#backbone-name'), 'resnet18');
  await page.setInputFiles('#preview-file', coffee);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'), null, { timeout: 60_000 });
  assert.equal(await page.textContent('#predictions li:first-child .label'), cliTop);
  // Images added to a class are embedded by the ResNet (512-d features), and a head trains on them.
  await brickAndGrass(page);
  assert.match(await train(page), /^Trained in/);

  // Fine-tuned by the CLI (the whole network, on synthetic CIFAR files): its backbone file and
  // .wick open together and answer in the page as in the CLI.
  const dataDir = path.join(scratch, 'cifar-resnet');
  const test = writeSyntheticCifar(dataDir, 24);
  const model = path.join(scratch, 'resnet-cifar.wick');
  execFileSync(wickBinary, ['cifar10', '--mode', 'finetune', '--data', dataDir, '--pth', pth, '--img-size', '32',
    '--epochs', '2', '--batch-size', '16', '--lr', '0.02', '--out', model, '--quiet']);
  const backbonePath = path.join(scratch, 'resnet-cifar.backbone.safetensors');
  // Two questions: the project's images are to be embedded again by the other backbone, then the
  // model's classes are to replace the project's.
  const asked = [];
  const answer = (d) => { asked.push(d.message()); d.accept(); };
  page.on('dialog', answer);
  await page.setInputFiles('#open-model', [backbonePath, model]);
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('Opened model'), null, { timeout: 60_000 });
  page.off('dialog', answer);
  assert.equal(asked.length, 2);
  assert.match(asked[1], /Replace the project's classes and images with the model's classes/);
  assert.match(await page.textContent('#backbone-name'), /^resnet18, fine-tuned by wick/);
  for (const i of [0, 3, 7]) {
    const png = await cifarPng(page, test, i);
    const cli = JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--backbone', backbonePath, '--model', model, png.path]));
    assert.equal(await previewLabel(page, png), cli.classes[0].label, `test image ${i}`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('backbone arithmetic: int8 by default, f32 when asked, each answering as the CLI does; kept across a reload', async () => {
  const coffee = path.join(root, 'tests/fixtures/coffee.png');
  const { page, errors } = await openApp(browser, origin);
  assert.equal(await page.textContent('#precision-name'), 'int8');
  assert.equal(await page.inputValue('#precision'), 'int8');
  // Chromium compiles relaxed SIMD: its twin of the build runs, with the same answers as the CLI's.
  assert.equal(await page.textContent('#simd-name'), 'WebAssembly relaxed SIMD');
  await page.click('#advanced summary');
  for (const precision of ['int8', 'f32']) {
    const cli = JSON.parse(execFileSync(wickBinary, ['predict', '--json', '--precision', precision, coffee])).classes[0];
    await page.selectOption('#precision', precision);
    await page.waitForFunction((p) => document.querySelector('#precision-name').textContent === p, precision);
    await page.evaluate(() => { document.querySelector('#status').textContent = ''; });
    await page.setInputFiles('#preview-file', coffee);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
    assert.equal(await page.textContent('#predictions li:first-child .label'), cli.label, precision);
    assert.equal(await page.textContent('#predictions li:first-child .percent'), `${(100 * cli.probability).toFixed(1)}%`, precision);
  }
  // The project (and its settings) is saved a moment after each change.
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
  assert.equal(await page.textContent('#precision-name'), 'f32', 'the setting is kept');
  assert.equal(await page.inputValue('#precision'), 'f32');
  assert.deepEqual(errors, []);
  await page.close();
});

test('cross-origin isolated: the multi-threaded build runs on a pool, answers as the CLI does, trains, and works offline', async () => {
  const isolated = await serveDist(undefined, { '/fixtures/': path.join(root, 'tests/fixtures') }, { isolated: true });
  const context = await browser.newContext();
  try {
    const { page, requests, errors } = await openApp(context, isolated.origin);
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
    assert.equal(await page.textContent('#threads-name'), `${cores} threads`);
    assert.equal(await page.textContent('#simd-name'), 'WebAssembly relaxed SIMD');

    const coffee = path.join(root, 'tests/fixtures/coffee.png');
    const cli = JSON.parse(execFileSync(wickBinary, ['predict', '--json', coffee])).classes[0];
    await page.setInputFiles('#preview-file', coffee);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
    assert.equal(await page.textContent('#predictions li:first-child .label'), cli.label);
    assert.equal(await page.textContent('#predictions li:first-child .percent'), `${(100 * cli.probability).toFixed(1)}%`);

    // Files reach the worker's pool in batches; a file that does not decode is named, its batch's
    // other files are added.
    await brickAndGrass(page);
    const broken = { name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('not a picture') };
    assert.equal(await addImages(page, 0, [...await crops(page, 'brick', 0, 300, 3, 5), broken]), 3);
    assert.match(await page.textContent('#extract-text'), /skipped 1: broken\.png: /);
    assert.match(await train(page), /^Trained in/);
    assert.deepEqual(requests.filter((u) => new URL(u).origin !== isolated.origin && !u.startsWith(`blob:${isolated.origin}`)), []);

    // Offline: the service worker kept this build's files, which the page loaded before it took over.
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
    await page.waitForFunction(async () => Boolean(await caches.match('/threads-relaxed/wick_bg.wasm')), null, { timeout: 30_000 });
    await context.setOffline(true);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === 'true'
      || document.querySelector('#status').classList.contains('error'), null, { timeout: 60_000 });
    assert.match(await statusText(page), /^Backbone ready/);
    assert.equal(await page.textContent('#threads-name'), `${cores} threads`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    isolated.server.close();
  }
});

test('not isolated: the single-threaded build, and the footer says why', async () => {
  const { page, errors } = await openApp(browser, origin);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
  assert.equal(await page.textContent('#threads-name'), 'one thread because the page is not cross-origin isolated, so it cannot share memory between threads');
  assert.deepEqual(errors, []);
  await page.close();
});

test('isolated, but the multi-threaded build does not start: the page runs one thread and says so', async () => {
  const isolated = await serveDist(undefined, {}, { isolated: true });
  const context = await browser.newContext();
  try {
    await context.route(/\/threads(-relaxed)?\/wick_bg\.wasm$/, (route) => route.fulfill({ status: 404, body: 'not here' }));
    const { page } = await openApp(context, isolated.origin);
    assert.match(await statusText(page), /^Backbone ready/);
    assert.match(await page.textContent('#threads-name'), /^one thread because the multi-threaded build did not start \(.+\)$/);
    const coffee = path.join(root, 'tests/fixtures/coffee.png');
    await page.setInputFiles('#preview-file', coffee);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
    assert.equal(await page.textContent('#predictions li:first-child .label'), 'espresso');
  } finally {
    await context.close();
    isolated.server.close();
  }
});

test('relaxed SIMD refused (as in Safari), or its build not loading: the plain build runs, says so, and answers the same', async () => {
  const coffee = path.join(root, 'tests/fixtures/coffee.png');
  const cli = JSON.parse(execFileSync(wickBinary, ['predict', '--json', coffee])).classes[0];
  const classifies = async (page, what) => {
    assert.equal(await page.textContent('#simd-name'), 'WebAssembly SIMD', what);
    await page.setInputFiles('#preview-file', coffee);
    await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
    assert.equal(await page.textContent('#predictions li:first-child .label'), cli.label, what);
    assert.equal(await page.textContent('#predictions li:first-child .percent'), `${(100 * cli.probability).toFixed(1)}%`, what);
  };
  // A browser without relaxed SIMD (Safari): its probe fails; the relaxed build is never fetched.
  const refusing = await browser.newContext({ serviceWorkers: 'block' });
  try {
    await refusing.route('**/static/app/wasm.js', async (route) => {
      const response = await route.fetch();
      const body = `WebAssembly.validate = () => false;\n${await response.text()}`;
      await route.fulfill({ response, body });
    });
    const { page, requests, errors } = await openApp(refusing, origin);
    await classifies(page, 'refused');
    assert.deepEqual(requests.filter((u) => u.includes('relaxed')), [], 'nothing of the relaxed build fetched');
    assert.deepEqual(errors, []);
  } finally {
    await refusing.close();
  }
  // Compiled, but its file does not come: the plain build, silently.
  const context = await browser.newContext({ serviceWorkers: 'block' });
  try {
    await context.route('**/relaxed/wick_bg.wasm', (route) => route.fulfill({ status: 404, body: 'not here' }));
    const { page, errors } = await openApp(context, origin);
    await classifies(page, 'missing');
    assert.deepEqual(errors.filter((e) => !e.includes('status of 404')), [], 'nothing but the missing file');
  } finally {
    await context.close();
  }
});
