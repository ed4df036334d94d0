// The project kept in the browser's storage (IndexedDB) against what can go wrong with it: damaged
// image records, the layout of an older version, a project saved with another backbone (its images
// are embedded again by this one), one saved before features were a setting (it keeps the last
// layer's), and storage that cannot be read (the page does not save over it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { root, openApp, isolatedBrowser, card, counts } from './harness.mjs';

const shared = isolatedBrowser();
const fixture = (name) => ({ name, mimeType: name.endsWith('.jpg') ? 'image/jpeg' : 'image/png', buffer: fs.readFileSync(path.join(root, 'tests/fixtures', name)) });

/// Coffee and chelsea in the first class, brick and rocket in the second, saved.
async function fourImages(page) {
  await card(page, 0).locator('.class-files').setInputFiles([fixture('coffee.png'), fixture('chelsea.png')]);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0');
  await card(page, 1).locator('.class-files').setInputFiles([fixture('brick.png'), fixture('rocket.jpg')]);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0');
  await saved(page);
  assert.deepEqual(await counts(page), [2, 2]);
}

const saved = (page) => page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');

async function reload(page) {
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
}

/// What the app's IndexedDB holds, read without `get` (which one test breaks): the project record
/// (`images`: its images' names by id) and each image record's features and kept copy's length.
const storage = (page) => page.evaluate(async () => {
  const db = await new Promise((resolve) => { const r = indexedDB.open('wick'); r.onsuccess = () => resolve(r.result); });
  const tx = db.transaction(['projects', 'samples']);
  const all = (store, what) => new Promise((resolve) => { const r = tx.objectStore(store)[what](); r.onsuccess = () => resolve(r.result); });
  const [projectKeys, projects, keys, records] = await Promise.all([all('projects', 'getAllKeys'), all('projects', 'getAll'), all('samples', 'getAllKeys'), all('samples', 'getAll')]);
  db.close();
  const current = projects[projectKeys.indexOf('current')];
  return {
    images: Object.fromEntries(current.classes.flatMap((c) => c.samples.map((s) => [s.id, s.name]))),
    hasModel: Boolean(current.model),
    records: Object.fromEntries(keys.map((k, i) => [k, { features: Array.from(records[i].features ?? []), source: records[i].source?.length ?? 0 }])),
  };
});

/// Changes the stored project record with `edit` (a function's source, given the record) and each
/// image record `id` of `images` with the matching function source.
const editStorage = (page, edit, images = {}) => page.evaluate(async ([edit, images]) => {
  const db = await new Promise((resolve) => { const r = indexedDB.open('wick'); r.onsuccess = () => resolve(r.result); });
  const tx = db.transaction(['projects', 'samples'], 'readwrite');
  const change = (store, key, how) => {
    const r = tx.objectStore(store).get(key);
    r.onsuccess = () => tx.objectStore(store).put(how(r.result), key);
  };
  // Only these edits are known to the page (its CSP forbids evaluating strings).
  const edits = {
    'other backbone': (p) => ({ ...p, backbone: { ...p.backbone, sha256: '0'.repeat(64), architecture: 'an older backbone' } }),
    'no kept copy': (r) => ({ ...r, source: undefined }),
    'last layer': (p) => ({ ...p, settings: Object.fromEntries(Object.entries(p.settings).filter(([k]) => k !== 'pooling')) }),
    'last layer features': (r) => ({ ...r, features: r.features.slice(0, 1280) }),
  };
  if (edit) change('projects', 'current', edits[edit]);
  Object.entries(images).forEach(([id, how]) => change('samples', id, edits[how]));
  await new Promise((resolve) => { tx.oncomplete = resolve; });
  db.close();
}, [edit, images]);

const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / Math.sqrt(a.reduce((s, x) => s + x * x, 0) * b.reduce((s, x) => s + x * x, 0));
test('storage: a damaged image record is left out and named on reload; a project saved before images had records of their own still opens', async () => {
  const { page, errors } = await openApp(shared.browser, shared.origin);
  await fourImages(page);

  // Two images' records are damaged, as a broken disk or another program might: one is junk, the
  // other well typed but with features of the wrong length (which would shift every later row).
  const damaged = await page.evaluate(async () => {
    const db = await new Promise((resolve) => { const r = indexedDB.open('wick'); r.onsuccess = () => resolve(r.result); });
    const keys = await new Promise((resolve) => { const r = db.transaction('samples').objectStore('samples').getAllKeys(); r.onsuccess = () => resolve(r.result); });
    const second = await new Promise((resolve) => { const r = db.transaction('samples').objectStore('samples').get(keys[1]); r.onsuccess = () => resolve(r.result); });
    await new Promise((resolve) => {
      const tx = db.transaction('samples', 'readwrite');
      tx.objectStore('samples').put({ features: 'junk' }, keys[0]);
      tx.objectStore('samples').put({ ...second, features: second.features.subarray(0, 1279).slice() }, keys[1]);
      tx.oncomplete = resolve;
    });
    return keys.length;
  });
  assert.equal(damaged, 4);
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.match(await page.textContent('#status'), /2 saved images were missing or damaged .* left out/);
  assert.equal((await counts(page)).reduce((a, b) => a + b), 2);

  // The layout before images had records of their own: the images inside the project record.
  await page.evaluate(async () => {
    const db = await new Promise((resolve) => { const r = indexedDB.open('wick'); r.onsuccess = () => resolve(r.result); });
    const current = await new Promise((resolve) => { const r = db.transaction('projects').objectStore('projects').get('current'); r.onsuccess = () => resolve(r.result); });
    const records = await new Promise((resolve) => {
      const tx = db.transaction('samples');
      const keys = tx.objectStore('samples').getAllKeys();
      const values = tx.objectStore('samples').getAll();
      tx.oncomplete = () => resolve(new Map(keys.result.map((k, i) => [k, values.result[i]])));
    });
    const inline = current.classes.map((c) => ({ ...c, samples: c.samples.map((s) => ({ ...s, ...records.get(s.id) })) }));
    const { format: _, ...old } = { ...current, classes: inline };
    await new Promise((resolve) => {
      const tx = db.transaction(['projects', 'samples'], 'readwrite');
      tx.objectStore('projects').put(old, 'current');
      tx.objectStore('samples').clear();
      tx.oncomplete = resolve;
    });
  });
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.equal((await counts(page)).reduce((a, b) => a + b), 2);
  assert.match(await page.textContent('#status'), /Backbone ready/);
  // The next change saves it in the new layout, images in their own records.
  await page.click('#add-class');
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  const stored = await page.evaluate(async () => {
    const db = await new Promise((resolve) => { const r = indexedDB.open('wick'); r.onsuccess = () => resolve(r.result); });
    return new Promise((resolve) => { const r = db.transaction('samples').objectStore('samples').count(); r.onsuccess = () => resolve(r.result); });
  });
  assert.equal(stored, 2);
  assert.deepEqual(errors.filter((e) => !/missing or damaged/.test(e)), []);
  await page.close();
});

test('a project saved with another backbone keeps its images: they are embedded again by this one, and its model is dropped', async () => {
  const { page, errors } = await openApp(shared.browser, shared.origin);
  await fourImages(page);
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
  await saved(page);
  const before = await storage(page);
  assert.equal(before.hasModel, true);
  const idOf = (images, name) => Object.keys(images).find((id) => images[id] === name);

  // Saved with another backbone (an older default, or a backbone file that no longer loads), and
  // the rocket's record has lost its kept copy, from which it could be embedded again.
  await editStorage(page, 'other backbone', { [idOf(before.images, 'rocket.jpg')]: 'no kept copy' });
  await reload(page);
  const said = await page.textContent('#status');
  assert.match(said, /made with another backbone \(an older backbone\): its 3 images were embedded again by this one .* its model, trained on the other backbone, was dropped: train again/);
  assert.match(said, /1 saved image was missing or damaged .* left out/);
  assert.deepEqual(await counts(page), [2, 1]);
  assert.equal(await page.isDisabled('#export-model'), true);
  assert.equal(await page.textContent('#extract-text'), 'Embedded 3 images again');

  // Saved at once: new records under new ids, the old ones gone, the features of each image close to
  // those of the file it was added from (the kept copy is a smaller JPEG of it).
  await saved(page);
  const after = await storage(page);
  assert.equal(after.hasModel, false);
  assert.deepEqual(Object.values(after.images).sort(), ['brick.png', 'chelsea.png', 'coffee.png']);
  assert.deepEqual(Object.keys(after.records).sort(), Object.keys(after.images).sort());
  assert.ok(Object.keys(after.images).every((id) => !(id in before.records)), 'every image has a new record');
  for (const name of Object.values(after.images)) {
    const similarity = cosine(before.records[idOf(before.images, name)].features, after.records[idOf(after.images, name)].features);
    console.log(`${name}: cosine ${similarity.toFixed(4)} between its features from the file and from its kept copy`);
    assert.ok(similarity > 0.95, `${name}: cosine ${similarity}`);
  }
  // And the project trains again.
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
  assert.deepEqual(errors.filter((e) => !/missing or damaged/.test(e)), []);
  await page.close();
});

test('storage that cannot be read is not saved over: the page says so, keeps working, and Reset replaces it', async () => {
  // One profile (context) for the pages below: they share its storage.
  const context = await shared.browser.newContext();
  const { page: first } = await openApp(context, shared.origin);
  await fourImages(first);
  const kept = await storage(first);
  await first.close();

  // Reading the saved project fails in this page (as a damaged profile or a browser bug can make it).
  const page = await context.newPage();
  await page.addInitScript(() => {
    const get = IDBObjectStore.prototype.get;
    IDBObjectStore.prototype.get = function (key) {
      if (key === 'current') throw new DOMException('the disk said no', 'UnknownError');
      return get.call(this, key);
    };
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(shared.origin + '/');
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.match(await page.textContent('#status'), /Could not read the project saved in this browser \(the disk said no\)\. So as not to replace it, nothing is saved in this visit/);
  assert.equal(await page.textContent('#save-state'), 'Not saved: the project saved in this browser could not be read');

  // Work goes on in the page, unsaved; what was saved stays as it was.
  await card(page, 0).locator('.class-files').setInputFiles([fixture('coffee.png')]);
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0');
  assert.deepEqual(await counts(page), [1, 0]);
  await page.waitForTimeout(1000);
  assert.equal(await page.textContent('#save-state'), 'Not saved: the project saved in this browser could not be read');
  assert.deepEqual(await storage(page), kept);
  const { page: elsewhere } = await openApp(context, shared.origin);
  assert.deepEqual(await counts(elsewhere), [2, 2]);
  await elsewhere.close();

  // Reset is the user's choice to replace it: saving starts again.
  page.once('dialog', (d) => d.accept());
  await page.click('#reset');
  await saved(page);
  const replaced = await storage(page);
  assert.deepEqual([Object.keys(replaced.images), Object.keys(replaced.records)], [[], []]);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a project saved before features were a setting keeps the last layer\'s features; switching to stage pooling embeds its images again', async () => {
  const { page, errors } = await openApp(shared.browser, shared.origin);
  assert.equal(await page.inputValue('#pooling'), 'stages', 'stage pooling is the default');
  await fourImages(page);
  const before = await storage(page);
  const lengths = (s) => [...new Set(Object.values(s.records).map((r) => r.features.length))];
  assert.deepEqual(lengths(before), [1904]);

  // As an earlier version saved it: no pooling setting, each image's features the last layer's pool
  // (the first 1,280 values of the stage-pooled ones).
  await editStorage(page, 'last layer', Object.fromEntries(Object.keys(before.images).map((id) => [id, 'last layer features'])));
  await reload(page);
  assert.deepEqual(await counts(page), [2, 2]);
  assert.equal(await page.inputValue('#pooling'), 'last');
  assert.doesNotMatch(await page.textContent('#status'), /embedded again|missing or damaged/);
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
  await saved(page);
  assert.deepEqual(lengths(await storage(page)), [1280], 'the last layer\'s features were kept as they were');

  // Stage pooling asked for: the images are embedded again from their kept copies, the model dropped.
  await page.click('#advanced summary');
  page.once('dialog', (dialog) => dialog.accept());
  await page.selectOption('#pooling', 'stages');
  await page.waitForFunction(() => /^Features: last stages pooled/.test(document.querySelector('#status').textContent), null, { timeout: 120_000 });
  assert.match(await page.textContent('#status'), /The project's images were embedded again\.$/);
  assert.equal(await page.isDisabled('#export-model'), true);
  await saved(page);
  const after = await storage(page);
  assert.deepEqual(lengths(after), [1904]);
  assert.equal(after.hasModel, false);
  for (const name of Object.values(after.images)) {
    const id = (s) => Object.keys(s.images).find((k) => s.images[k] === name);
    const similarity = cosine(before.records[id(before)].features, after.records[id(after)].features);
    assert.ok(similarity > 0.95, `${name}: cosine ${similarity} between its features from the file and from its kept copy`);
  }
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
  await saved(page);
  await reload(page);
  assert.equal(await page.inputValue('#pooling'), 'stages');
  assert.deepEqual(await counts(page), [2, 2]);
  assert.equal(await page.isDisabled('#export-model'), false, 'the model came back with the project');

  // Declined: nothing changes.
  await page.click('#advanced summary');
  page.once('dialog', (dialog) => dialog.dismiss());
  await page.selectOption('#pooling', 'last');
  await page.waitForFunction(() => document.querySelector('#pooling').value === 'stages');
  assert.equal(await page.isDisabled('#export-model'), false);
  assert.deepEqual(errors, []);
  await page.close();
});
