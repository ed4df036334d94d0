// The core walk through the app in every engine — Chromium, Firefox ESR and WebKitGTK — each on a
// plain server (one thread) and cross-origin isolated (threads where the engine shares memory):
// real photos added to two classes through their pickers, training, the preview of a held-out
// photo, the model saved and opened again, the project saved to a file, a reload, the project
// file opened again in the same profile and in a fresh one (both give back the same file, byte for
// byte), a photo pasted and one dropped, the webcam, the app offline, and the footer's word on
// threads. Each run prints what worked and its timings.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { photoCrops, root, serveDist } from './harness.mjs';
import { ENGINES, launch, waitFor } from './engines.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-walk-'));
const PER_CLASS = 6;
/// Each class's images: those picked, and one pasted or dropped.
const IMAGES = PER_CLASS + 1;

/// Real photos: 160 × 160 crops of scikit-image's brick and grass photos (tests/fixtures) for
/// training, and a held-out crop from the bottom of the brick photo.
function photos() {
  execFileSync('python3', ['-c', `
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert('RGB')
w, h = image.size
image.crop((w - 200, h - 180, w - 40, h - 20)).save(sys.argv[2])
`, path.join(root, 'tests/fixtures/brick.png'), path.join(scratch, 'brick-held-out.png')]);
  return {
    brick: photoCrops(scratch, 'brick', PER_CLASS),
    grass: photoCrops(scratch, 'grass', PER_CLASS),
    // One more of each, pasted and dropped (the page fetches them from /photos/, its own origin).
    pasted: path.basename(photoCrops(scratch, 'brick', 1, PER_CLASS)[0]),
    dropped: path.basename(photoCrops(scratch, 'grass', 1, PER_CLASS)[0]),
    heldOut: path.join(scratch, 'brick-held-out.png'),
  };
}
const images = photos();

// ---- in the page -------------------------------------------------------------------------------
// Files the page gives the user are caught where they are made: a download (the page's Blob
// link), or where the browser lets the page keep a file (Chromium), the file the user would have
// picked, stood in for by one in the origin's private file system.
const catchSaves = () => {
  if (window.wickSaved) return;
  window.wickSaved = {};
  window.wickSaves = []; // the names saved, in order
  // (The page's CSP lets it fetch nothing but its own origin: the Blob behind the link is kept.)
  const blobs = new Map();
  const createObjectURL = URL.createObjectURL;
  URL.createObjectURL = (blob) => {
    const url = createObjectURL(blob);
    blobs.set(url, blob);
    return url;
  };
  const click = HTMLAnchorElement.prototype.click;
  HTMLAnchorElement.prototype.click = function () {
    if (!(this.download && blobs.has(this.href))) return click.call(this);
    window.wickSaved[this.download] = blobs.get(this.href).arrayBuffer();
    window.wickSaves.push(this.download);
    return undefined;
  };
  if (window.showSaveFilePicker) {
    window.showSaveFilePicker = async ({ suggestedName }) => {
      const handle = await (await navigator.storage.getDirectory()).getFileHandle(suggestedName, { create: true });
      window.wickSaved[suggestedName] = handle;
      window.wickSaves.push(suggestedName);
      return handle;
    };
  }
};
/// The bytes of the saved file `name`, base64, or null.
const savedFile = async (name) => {
  const saved = window.wickSaved?.[name];
  if (!saved) return null;
  const bytes = new Uint8Array(saved.getFile ? await (await saved.getFile()).arrayBuffer() : await saved);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
};
const click = (selector) => { document.querySelector(selector).click(); };
const text = (selector) => document.querySelector(selector)?.textContent ?? null;
const ready = () => document.body.dataset.ready === 'true' || document.querySelector('#status').classList.contains('error');
const counts = () => [...document.querySelectorAll('.class-card .count')].map((e) => parseInt(e.textContent, 10));
const nameClasses = (names) => {
  document.querySelectorAll('.class-card .class-name').forEach((input, i) => {
    input.value = names[i];
    input.dispatchEvent(new Event('change'));
  });
};
const picker = (i) => `#classes > .class-card:nth-child(${i + 1}) .class-files`;

async function addImages(tab, i, files, expected) {
  await tab.setFiles(picker(i), files);
  await waitFor(tab, ([i, n]) => document.querySelector('#extract-text').dataset.pending === '0'
    && parseInt(document.querySelectorAll('.class-card .count')[i]?.textContent, 10) === n, [i, expected], { what: `${expected} images in class ${i + 1}` });
}

async function savedBytes(tab, name, what) {
  const b64 = await waitFor(tab, savedFile, name, { what });
  return Buffer.from(b64, 'base64');
}

/// Saves the project to a file and returns its bytes, once written.
async function saveProject(tab) {
  await tab.evaluate(catchSaves);
  const before = await tab.evaluate(() => window.wickSaves.length);
  await tab.evaluate(click, '#export-project');
  const name = await waitFor(tab, (n) => window.wickSaves[n], before, { what: 'the project file' });
  // A file the page keeps is written a moment later.
  await waitFor(tab, () => !/saving/.test(document.querySelector('#file-state').textContent), null, { what: 'the project file written' });
  return savedBytes(tab, name, 'the project file');
}

/// Asserts that two project files are the same, byte for byte (naming the first difference).
function assertSameFile(actual, expected, what) {
  if (actual.equals(expected)) return;
  const header = (b) => JSON.parse(b.subarray(8, 8 + Number(b.readBigUInt64LE(0))).toString());
  assert.deepEqual(header(actual), header(expected), `${what}: the headers differ`);
  const n = 8 + Number(expected.readBigUInt64LE(0));
  const [name] = Object.entries(header(expected)).find(([key, t]) => key !== '__metadata__'
    && !actual.subarray(n + t.data_offsets[0], n + t.data_offsets[1]).equals(expected.subarray(n + t.data_offsets[0], n + t.data_offsets[1])));
  assert.fail(`${what}: the same header, but the tensor ${name} differs`);
}

/// The project's classes and images as its file's metadata lists them.
function projectSummary(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const meta = JSON.parse(JSON.parse(bytes.subarray(8, 8 + n).toString()).__metadata__.meta);
  return meta.classes.map((c) => `${c.name}: ${c.samples.length}`).join(', ');
}

async function walk(browser, server, isolated) {
  const { origin } = server;
  const t0 = Date.now();
  const timings = {};
  const lap = (what) => { timings[what] = (Date.now() - t0) / 1000; };
  const profile = await browser.profile();
  const tab = await profile.open(`${origin}/`);
  let footer;
  let webcam;
  let offline;
  let paste;
  let project;
  const projectPath = path.join(scratch, `${browser.name}-${isolated}.wickproject`);
  try {
    await waitFor(tab, ready, null, { what: 'the backbone' });
    assert.match(await tab.evaluate(text, '#status'), /^Backbone ready/);
    lap('ready');

    // Threads, and the footer's word on them.
    footer = await tab.evaluate(text, '#threads-name');
    const shares = await tab.evaluate(() => self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function');
    if (!isolated) assert.match(footer, /^one thread because the page is not cross-origin isolated/);
    else if (!shares) assert.match(footer, /^one thread because this browser does not let the page share memory between threads/);
    else if (/pool of threads did not start in time/.test(footer)) assert.equal(browser.name, 'Firefox', 'only Firefox is known to hold its pool up'); // see app/messages.js
    else assert.equal(footer, `${await tab.evaluate(() => navigator.hardwareConcurrency)} threads`);
    if (isolated && browser.name !== 'WebKitGTK') assert.ok(shares, `${browser.name} shares memory when isolated`);
    // The relaxed-SIMD twin where the engine compiles relaxed SIMD (Chromium, Firefox ≥ 145), the
    // plain build where not (WebKit), and the footer says which.
    const relaxed = await tab.evaluate(() => WebAssembly.validate(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123,
      3, 2, 1, 0, 10, 19, 1, 17, 0, 65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 147, 2, 11])));
    assert.equal(await tab.evaluate(text, '#simd-name'), relaxed ? 'WebAssembly relaxed SIMD' : 'WebAssembly SIMD');
    if (browser.name !== 'WebKitGTK') assert.ok(relaxed, `${browser.name} compiles relaxed SIMD`);

    await tab.evaluate(nameClasses, ['brick', 'grass']);
    await addImages(tab, 0, images.brick, PER_CLASS);
    await addImages(tab, 1, images.grass, PER_CLASS);
    lap('images picked');
    // A photo pasted (into the class last used) and one dropped on a class, as a person's clipboard
    // and file manager give them (a file in a DataTransfer). Firefox gives a script-made paste
    // event an empty clipboard: there the first photo is dropped too, and paste goes untested.
    paste = await tab.evaluate(async ([pasted, dropped]) => {
      const file = async (name) => new File([await (await fetch(`/photos/${name}`)).blob()], name, { type: 'image/png' });
      const holding = async (name) => {
        const transfer = new DataTransfer();
        transfer.items.add(await file(name));
        return transfer;
      };
      const drop = async (name, card) => document.querySelector(`#classes > .class-card:nth-child(${card}) .drop-zone`)
        .dispatchEvent(new DragEvent('drop', { dataTransfer: await holding(name), bubbles: true, cancelable: true }));
      const probe = new ClipboardEvent('paste', { clipboardData: await holding(pasted) });
      const scriptPasteCarriesFiles = probe.clipboardData?.files.length === 1;
      if (scriptPasteCarriesFiles) {
        document.querySelector('#classes > .class-card:nth-child(1) .class-name').focus();
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: await holding(pasted), bubbles: true, cancelable: true }));
      } else {
        await drop(pasted, 1);
      }
      await drop(dropped, 2);
      return scriptPasteCarriesFiles ? 'works' : 'untested (a script-made paste event carries no files here)';
    }, [images.pasted, images.dropped]);
    await waitFor(tab, (n) => document.querySelector('#extract-text').dataset.pending === '0'
      && [...document.querySelectorAll('.class-card .count')].every((e) => parseInt(e.textContent, 10) === n), IMAGES, { what: 'the pasted and dropped photos' });
    lap('pasted and dropped');
    // Safari and every WebKit browser delete a site's storage after 7 days without a visit: the page
    // says so once there is something to lose.
    const warning = await tab.evaluate(() => !document.querySelector('#keep-warning').hidden && document.querySelector('#keep-warning').textContent);
    if (browser.name === 'WebKitGTK') assert.match(warning, /after 7 days without a visit.*save the project to a file/);

    await tab.evaluate(click, '#train');
    await waitFor(tab, () => /^(Trained|Training failed)/.test(document.querySelector('#train-status').textContent), null, { what: 'training' });
    assert.match(await tab.evaluate(text, '#train-status'), /^Trained in .*Validation accuracy: [\d.]+%/);
    lap('trained');

    await tab.setFiles('#preview-file', [images.heldOut]);
    await waitFor(tab, () => document.querySelector('#status').textContent.startsWith('brick-held-out.png'), null, { what: 'the preview' });
    assert.equal(await tab.evaluate(text, '#predictions li:first-child .label'), 'brick');
    lap('previewed');

    // The webcam in the preview: frames classified live (each engine's synthetic camera).
    await tab.evaluate(() => document.querySelector('#predictions').replaceChildren());
    await tab.evaluate(click, '#preview-webcam');
    webcam = await waitFor(tab, () => {
      const status = document.querySelector('#status');
      if (status.classList.contains('error')) return status.textContent;
      return document.querySelector('#preview-video').videoWidth > 0 && document.querySelectorAll('#predictions li').length === 2 && 'works';
    }, null, { what: 'the webcam', timeout: 30_000 });
    await tab.evaluate(click, '#preview-webcam');
    assert.equal(webcam, 'works', 'the webcam');
    lap('webcam');

    project = await saveProject(tab);
    assert.equal(projectSummary(project), `brick: ${IMAGES}, grass: ${IMAGES}`);
    fs.writeFileSync(projectPath, project);
    lap('project saved to a file');

    // The model out and in again.
    await tab.evaluate(click, '#export-model');
    const model = await savedBytes(tab, 'model.wick', 'the model file');
    const modelPath = path.join(scratch, `${browser.name}-${isolated}.wick`);
    fs.writeFileSync(modelPath, model);
    await tab.setFiles('#open-model', [modelPath]);
    await waitFor(tab, () => document.querySelector('#status').textContent.startsWith('Opened model'), null, { what: 'the model opened' });
    assert.match(await tab.evaluate(text, '#status'), /^Opened model .*: 2 classes, [\d.]+% validation accuracy when trained\./);
    lap('model saved and opened');

    // A reload keeps everything.
    await waitFor(tab, () => document.querySelector('#save-state').textContent === 'Saved in this browser', null, { what: 'the save' });
    await tab.reload();
    await waitFor(tab, ready, null, { what: 'the reload' });
    assert.match(await tab.evaluate(text, '#status'), /^Backbone ready/);
    assert.deepEqual(await tab.evaluate(counts), [IMAGES, IMAGES]);
    assert.equal(await tab.evaluate(() => document.querySelector('#export-model').disabled), false, 'the model is kept');
    await tab.setFiles('#preview-file', [images.heldOut]);
    await waitFor(tab, () => document.querySelector('#status').textContent.startsWith('brick-held-out.png'), null, { what: 'the preview after reload' });
    assert.equal(await tab.evaluate(text, '#predictions li:first-child .label'), 'brick');
    lap('reloaded');

    // Offline: with the network down, the service worker's copy of the app starts it.
    const cached = () => navigator.serviceWorker?.controller
      && Promise.all(['/', '/static/efficientnet-lite0-int8.safetensors', ...['/', '/relaxed/', '/threads/', '/threads-relaxed/'].map((b) => `${b}wick_bg.wasm`)]
        .map((u) => caches.match(u)))
        .then(([page, backbone, ...builds]) => Boolean(page && backbone && builds.some(Boolean)));
    await waitFor(tab, cached, null, { what: 'the offline copy', timeout: 30_000 });
    server.network.offline = true;
    try {
      await tab.reload();
      await waitFor(tab, ready, null, { what: 'the app offline' });
      assert.match(await tab.evaluate(text, '#status'), /^Backbone ready/, 'offline');
      assert.deepEqual(await tab.evaluate(counts), [IMAGES, IMAGES]);
      offline = 'works';
    } finally {
      server.network.offline = false;
    }
    lap('offline');

    // The project file opened again gives back the same file.
    await tab.setFiles('#open-project', [projectPath]);
    await waitFor(tab, () => document.querySelector('#status').textContent.startsWith('Opened '), null, { what: 'the project opened' });
    assert.match(await tab.evaluate(text, '#status'), new RegExp(`^Opened .*: 2 classes, ${2 * IMAGES} images, with its trained model\\.`));
    assert.equal(await tab.evaluate(() => document.querySelector('#evaluation').hidden), false, 'the evaluation comes back');
    assertSameFile(await saveProject(tab), project, 'the project saved again');
    lap('project opened again');

    assert.equal(await tab.evaluate(() => document.querySelector('#status').classList.contains('error')), false);
  } finally {
    await profile.close(); // (WebKitWebDriver drives one session at a time)
  }

  // ... and so does a fresh profile.
  const fresh = await browser.profile();
  try {
    const other = await fresh.open(`${origin}/`);
    await waitFor(other, ready, null, { what: 'the backbone in a fresh profile' });
    assert.deepEqual(await other.evaluate(counts), [0, 0]);
    await other.setFiles('#open-project', [projectPath]);
    await waitFor(other, () => document.querySelector('#status').textContent.startsWith('Opened '), null, { what: 'the project in a fresh profile' });
    assert.deepEqual(await other.evaluate(counts), [IMAGES, IMAGES]);
    assertSameFile(await saveProject(other), project, 'the project saved from a fresh profile');
    await other.setFiles('#preview-file', [images.heldOut]);
    await waitFor(other, () => document.querySelector('#status').textContent.startsWith('brick-held-out.png'), null, { what: 'the preview in a fresh profile' });
    assert.equal(await other.evaluate(text, '#predictions li:first-child .label'), 'brick');
  } finally {
    await fresh.close();
  }
  lap('project opened in a fresh profile');
  return { footer, webcam, offline, paste, timings };
}

const servers = {};
after(() => Object.values(servers).forEach(({ server }) => server.close()));

for (const engine of ENGINES) {
  test(`the core walk in ${engine}, plain and cross-origin isolated`, async () => {
    servers.plain ??= await serveDist(undefined, { '/photos/': scratch });
    servers.isolated ??= await serveDist(undefined, { '/photos/': scratch }, { isolated: true });
    const browser = await launch(engine);
    try {
      for (const isolated of [false, true]) {
        const { footer, webcam, offline, paste, timings } = await walk(browser, servers[isolated ? 'isolated' : 'plain'], isolated);
        const laps = Object.entries(timings).map(([what, s]) => `${what} ${s.toFixed(1)} s`).join(', ');
        console.log(`# ${browser.name} ${browser.version}, ${isolated ? 'isolated' : 'plain'}: ${footer}; webcam: ${webcam}; offline: ${offline}; paste: ${paste}; ${laps}`);
      }
    } finally {
      await browser.close();
    }
  });
}
