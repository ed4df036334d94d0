// The project in IndexedDB, read back on load. Each image is a record of its own (features,
// thumbnail, kept copy) written once, when it is new; the project record holds the classes, the
// images' ids and names, the settings and the model. A save writes the project record and the
// images added since the last save, and deletes the ones removed, in one transaction: its cost
// follows what changed, not the project's size. Beside them, the activations at the cut that
// training the backbone's last layers computes once per image view, and their sizes (what the
// page says the project takes).
import { $, state, status } from './state.js';

const DB_NAME = 'wick';
const STORE = 'projects';
const SAMPLES = 'samples';
const ACTIVATIONS = 'activations';
/// Each cached activation record's size in bytes, under the same key (counted without reading the
/// records themselves).
const ACTIVATION_BYTES = 'activation-bytes';
/// The project record's layout: 2 keeps images in their own store (1, before: inside it).
const FORMAT = 2;
/// Ids of the images the samples store holds (as far as this page knows; null: not known, the next
/// save reads them).
let stored = new Set();
let dbPromise = null;
let saveTimer = null;
let saveGeneration = 0;
let saving = Promise.resolve();
/// Why this visit must not save (the saved project could not be read, and a save would replace
/// it), or null.
let held = null;

function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 4);
    request.onupgradeneeded = () => {
      const names = request.result.objectStoreNames;
      if (!names.contains(STORE)) request.result.createObjectStore(STORE);
      if (!names.contains(ACTIVATIONS)) request.result.createObjectStore(ACTIVATIONS);
      if (!names.contains(SAMPLES)) request.result.createObjectStore(SAMPLES);
      if (!names.contains(ACTIVATION_BYTES)) {
        request.result.createObjectStore(ACTIVATION_BYTES);
        // Cached activations without a size record are dropped (a cache: computed again when needed).
        request.transaction.objectStore(ACTIVATIONS).clear();
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

/// The saved project record (images as ids and names only, or inline in the older layout), or null.
export async function loadSaved() {
  const database = await db();
  return new Promise((resolve, reject) => {
    const request = database.transaction(STORE).objectStore(STORE).get('current');
    request.onsuccess = () => resolve(request.result ?? null);
    request.onerror = () => reject(request.error);
  });
}

/// The saved project's classes with their images attached (`samples: [{ id, name, features,
/// thumbnail, source }]`), once the backbone, and so the length of a feature row (`featureDim`), is
/// known. An image whose record is missing or damaged (features not `featureDim` floats, no
/// thumbnail bytes) is left out and counted in `lost`. With `featureDim` null (the project was
/// made with another backbone, and its images will be embedded again), an image needs its kept
/// copy instead of features.
export async function restoreSamples(saved, featureDim) {
  const database = await db();
  // An older layout keeps its images inline; the next save moves them into records of their own.
  const records = saved.format === FORMAT ? await new Promise((resolve, reject) => {
    const tx = database.transaction(SAMPLES);
    const keys = tx.objectStore(SAMPLES).getAllKeys();
    const values = tx.objectStore(SAMPLES).getAll();
    tx.oncomplete = () => resolve(new Map(keys.result.map((k, i) => [k, values.result[i]])));
    tx.onerror = () => reject(tx.error);
  }) : null;
  stored = new Set(records?.keys() ?? []);
  let lost = 0;
  const wellFormed = (r) => r && r.thumbnail instanceof Uint8Array && (featureDim === null
    ? r.source instanceof Uint8Array && r.source.length > 0
    : r.features instanceof Float32Array && r.features.length === featureDim);
  const classes = saved.classes.map((c) => ({
    ...c,
    samples: c.samples.flatMap((sample) => {
      const r = records ? records.get(sample.id) : sample;
      if (!wellFormed(r)) {
        lost += 1;
        return [];
      }
      return [{ id: sample.id, name: sample.name, features: r.features, thumbnail: r.thumbnail, source: r.source ?? null }];
    }),
  }));
  return { classes, lost };
}

/// Saves in one transaction: either all of it is stored or the previous copy stays.
async function saveNow() {
  const database = await db();
  const live = new Map(state.project.classes.flatMap((c) => c.samples.map((s) => [s.id, s])));
  const classes = state.project.classes.map((c) => ({ ...c, samples: c.samples.map(({ id, name }) => ({ id, name })) }));
  await new Promise((resolve, reject) => {
    const tx = database.transaction([STORE, SAMPLES], 'readwrite');
    const samples = tx.objectStore(SAMPLES);
    const write = (inStore) => {
      for (const [id, { features, thumbnail, source }] of live) {
        if (!inStore.has(id)) samples.put({ features, thumbnail, source }, id);
      }
      [...inStore].filter((id) => !live.has(id)).forEach((id) => samples.delete(id));
    };
    if (stored) {
      write(stored);
    } else {
      const keys = samples.getAllKeys();
      keys.onsuccess = () => write(new Set(keys.result));
    }
    tx.objectStore(STORE).put({
      ...state.project, classes, format: FORMAT, backbone: state.backbone, customBackbone: state.customBackbone, builtinBackbone: state.builtinBackbone, savedAt: Date.now(),
    }, 'current');
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the save was aborted'));
  });
  // The store now holds exactly the images this save saw.
  stored = new Set(live.keys());
}

/// From now on changes are not saved, and the page says `reason`: the project saved in this browser
/// could not be read, and the first save would replace it.
export function holdSaves(reason) {
  held = reason;
  clearTimeout(saveTimer);
  $('#save-state').replaceChildren(`Not saved: ${reason}`);
}

/// Saves again (the user chose to replace what could not be read): the next save deletes every
/// image record that is not the project's.
export function releaseSaves() {
  held = null;
  stored = null;
}

export function scheduleSave() {
  if (held) return;
  clearTimeout(saveTimer);
  $('#save-state').replaceChildren('Saving…');
  const generation = ++saveGeneration;
  saveTimer = setTimeout(() => {
    saving = saving.then(saveNow).then(
      // "Saved" only when no later change is still waiting to be saved.
      () => { if (generation === saveGeneration) $('#save-state').replaceChildren('Saved in this browser'); },
      (e) => {
        const quota = e && (e.name === 'QuotaExceededError' || /quota/i.test(e.message));
        $('#save-state').replaceChildren(quota ? 'Not saved: storage full' : 'Not saved');
        status(quota
          ? 'Could not save: this browser\'s storage for the page is full. Everything is still open here — use "Save project to file" to keep it.'
          : `Could not save the project: ${e?.message ?? e}. Everything is still open here — use "Save project to file" to keep it.`, true);
      });
  }, 250);
}

/// Resolves once the saves under way have ended.
export const savesDone = () => saving;

/// The cached activations under `keys`: a Map of those found, key → { shape, bits }.
export async function getActivations(keys) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const found = new Map();
    const tx = database.transaction(ACTIVATIONS);
    const store = tx.objectStore(ACTIVATIONS);
    keys.forEach((key) => {
      const request = store.get(key);
      request.onsuccess = () => { if (request.result) found.set(key, request.result); };
    });
    tx.oncomplete = () => resolve(found);
    tx.onerror = () => reject(tx.error);
  });
}

/// Keeps `entries` ([key, { shape, bits }]) in one transaction.
export async function putActivations(entries) {
  const database = await db();
  await new Promise((resolve, reject) => {
    const tx = database.transaction([ACTIVATIONS, ACTIVATION_BYTES], 'readwrite');
    const store = tx.objectStore(ACTIVATIONS);
    const sizes = tx.objectStore(ACTIVATION_BYTES);
    entries.forEach(([key, value]) => {
      store.put(value, key);
      sizes.put(value.bits.byteLength, key);
    });
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('keeping the activations was aborted'));
  });
}

/// Deletes the cached activations for which `keep(key)` is false (images no longer in the project,
/// another backbone's).
export async function pruneActivations(keep) {
  const database = await db();
  await new Promise((resolve, reject) => {
    const tx = database.transaction([ACTIVATIONS, ACTIVATION_BYTES], 'readwrite');
    const request = tx.objectStore(ACTIVATIONS).openKeyCursor();
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) return;
      if (!keep(cursor.key)) {
        tx.objectStore(ACTIVATIONS).delete(cursor.key);
        tx.objectStore(ACTIVATION_BYTES).delete(cursor.key);
      }
      cursor.continue();
    };
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}

/// The bytes of every cached activation record (the layers' inputs kept in this browser).
export async function activationBytes() {
  const database = await db();
  return new Promise((resolve, reject) => {
    const request = database.transaction(ACTIVATION_BYTES).objectStore(ACTIVATION_BYTES).getAll();
    request.onsuccess = () => resolve(request.result.reduce((n, bytes) => n + (Number.isFinite(bytes) ? bytes : 0), 0));
    request.onerror = () => reject(request.error);
  });
}
