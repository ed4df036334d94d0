// The project in IndexedDB: saved whole, in one transaction, as it changes; read back on load. Beside
// it, the activations at the cut that training the backbone's last layers computes once per image view.
import { $, state, status } from './state.js';

const DB_NAME = 'wick';
const STORE = 'projects';
const ACTIVATIONS = 'activations';
let dbPromise = null;
let saveTimer = null;
let saveGeneration = 0;
let saving = Promise.resolve();

function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 2);
    request.onupgradeneeded = () => {
      const names = request.result.objectStoreNames;
      if (!names.contains(STORE)) request.result.createObjectStore(STORE);
      if (!names.contains(ACTIVATIONS)) request.result.createObjectStore(ACTIVATIONS);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

export async function loadSaved() {
  const database = await db();
  return new Promise((resolve, reject) => {
    const request = database.transaction(STORE).objectStore(STORE).get('current');
    request.onsuccess = () => resolve(request.result ?? null);
    request.onerror = () => reject(request.error);
  });
}

/// Saves the whole project in one transaction: either all of it is stored or the previous copy stays.
async function saveNow() {
  const database = await db();
  await new Promise((resolve, reject) => {
    const tx = database.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).put({ ...state.project, backbone: state.backbone, customBackbone: state.customBackbone, savedAt: Date.now() }, 'current');
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the save was aborted'));
  });
}

export function scheduleSave() {
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
          ? 'Could not save: this browser\'s storage for the page is full. Everything is still open here — use "Export project" to keep it.'
          : `Could not save the project: ${e?.message ?? e}. Everything is still open here — use "Export project" to keep it.`, true);
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
    const tx = database.transaction(ACTIVATIONS, 'readwrite');
    const store = tx.objectStore(ACTIVATIONS);
    entries.forEach(([key, value]) => store.put(value, key));
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
    const tx = database.transaction(ACTIVATIONS, 'readwrite');
    const request = tx.objectStore(ACTIVATIONS).openKeyCursor();
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) return;
      if (!keep(cursor.key)) tx.objectStore(ACTIVATIONS).delete(cursor.key);
      cursor.continue();
    };
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
}
