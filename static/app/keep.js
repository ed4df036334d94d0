// Work that survives this browser's storage, which browsers delete (Safari: after 7 days without a
// visit): the project kept in a file (written after every change where the browser allows it,
// else downloaded), persistent storage asked for, the storage figures and their warnings. Why and
// how: docs/browsers.md, "Work that survives".
import { downloadBytes, projectBytes } from './files.js';
import { stillReading } from './classes.js';
import { $, state, status } from './state.js';
import { activationBytes, scheduleSave } from './store.js';

/// Whether this browser lets the page keep writing to a file the user picked.
const canKeepFile = typeof self.showSaveFilePicker === 'function';
/// Safari and every other WebKit browser (iOS's all are): storage deleted after 7 days without a visit.
const WEBKIT = /AppleWebKit/.test(navigator.userAgent) && !/Chrome|Chromium|Edg\//.test(navigator.userAgent);
/// The kept file is written this long after the last change (a burst of changes writes it once).
const FILE_DELAY_MS = 1500;
/// Past this share of the quota the page warns that saving may soon fail.
const QUOTA_WARNING = 0.8;

/// Whether the page may write the kept file now (its permission, after a reload, is asked again).
let writable = false;
let fileTimer = null;
let fileWrites = Promise.resolve();
/// What the browser answered to `navigator.storage.persist()`: true, false, or null (not asked, or
/// no answer yet).
let persisted = null;
let persistAsked = false;
let storageTimer = null;

const images = () => state.project.classes.reduce((n, c) => n + c.samples.length, 0);
const fileName = () => state.project.file?.name ?? 'wick-project.wickproject';

/// "Save project to file…": a file the page keeps writing to, where the browser allows it, or a
/// download.
async function saveToFile() {
  if (!canKeepFile) {
    try {
      const name = fileName().endsWith('.wickproject') ? fileName() : 'wick-project.wickproject';
      downloadBytes(projectBytes(), name, 'application/octet-stream');
      state.project.file = { name, savedAt: Date.now() };
      scheduleSave();
    } catch (e) {
      status(`Could not save the project to a file: ${e.message}`, true);
    }
    showKeeping();
    return;
  }
  let handle;
  try {
    handle = await self.showSaveFilePicker({
      suggestedName: fileName(),
      types: [{ description: 'Wick project', accept: { 'application/octet-stream': ['.wickproject'] } }],
    });
  } catch (e) {
    if (e.name !== 'AbortError') status(`Could not choose a file: ${e.message}`, true);
    return;
  }
  state.project.file = { name: handle.name, savedAt: null, handle };
  writable = true;
  await writeFile();
}

/// After a reload: a kept file goes on being written if the browser still allows it; otherwise the
/// page offers to ask (a click, as browsers require).
export async function reconnect() {
  const handle = state.project.file?.handle;
  writable = false;
  if (handle) {
    try {
      writable = (await handle.queryPermission({ mode: 'readwrite' })) === 'granted';
    } catch {
      writable = false;
    }
  }
  persisted = (await navigator.storage?.persisted?.().catch(() => null)) ?? null;
  // A project with images asks again each visit: browsers decide anew (Chromium by how the site is used).
  if (images() > 0 && persisted !== true) askPersistence();
  showKeeping();
  refreshStorageSoon();
}

/// "Keep saving to …": asks the browser for the kept file again.
async function allowFile() {
  const handle = state.project.file?.handle;
  if (!handle) return;
  try {
    writable = (await handle.requestPermission({ mode: 'readwrite' })) === 'granted';
  } catch (e) {
    status(`Could not get permission to write ${handle.name}: ${e.message}`, true);
  }
  if (writable) await writeFile();
  else showKeeping();
}

/// Every change: the kept file is written again a moment later, persistent storage is asked for at
/// the first image, and the storage figures are brought up to date.
export function projectChanged() {
  if (!persistAsked && images() > 0) askPersistence();
  clearTimeout(fileTimer);
  if (state.project.file?.handle && writable) fileTimer = setTimeout(writeFileSoon, FILE_DELAY_MS);
  showKeeping();
  refreshStorageSoon();
}

function writeFileSoon() {
  // Images still being read change the project several times a second: write once they are in.
  if (stillReading()) {
    fileTimer = setTimeout(writeFileSoon, FILE_DELAY_MS);
    return;
  }
  fileWrites = fileWrites.then(writeFile);
}

/// Writes the project to its kept file (the browser swaps the new file in whole when it closes).
async function writeFile() {
  const file = state.project.file;
  if (!file?.handle || !writable) return;
  const startedAt = Date.now();
  try {
    const bytes = projectBytes();
    const stream = await file.handle.createWritable();
    await stream.write(bytes);
    await stream.close();
    file.savedAt = startedAt;
    scheduleSave(); // the record of when, and the handle, with the project
  } catch (e) {
    if (e.name === 'NotAllowedError') writable = false;
    status(`Could not save the project to ${file.name}: ${e.message}. It is still saved in this browser.`, true);
  }
  showKeeping();
}

async function askPersistence() {
  persistAsked = true;
  if (!navigator.storage?.persist) return;
  // Firefox asks the user; Chromium and Safari decide by themselves.
  persisted = await navigator.storage.persist().catch(() => false);
  showKeeping();
}

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
const time = (ms) => new Date(ms).toLocaleTimeString('en-GB');

/// The file line, the permission button and the warning that this browser may delete its copy.
function showKeeping() {
  const file = state.project.file;
  const button = $('#keep-file');
  button.hidden = !(file?.handle && !writable);
  if (file?.handle) button.textContent = `Keep saving to ${file.name}`;
  $('#export-project').textContent = file?.handle ? 'Save to another file…' : 'Save project to file…';
  const changedSince = file?.savedAt != null && state.project.changedAt > file.savedAt;
  let line;
  if (!file) line = 'Not saved to a file yet.';
  else if (file.handle && !writable) line = `Kept in ${file.name}; this browser asks again before the page writes to it.`;
  else if (file.handle) line = file.savedAt == null || changedSince ? `Kept in ${file.name}: saving…` : `Kept in ${file.name}: saved at ${time(file.savedAt)}.`;
  else line = `Saved to a file (${file.name}) at ${time(file.savedAt)}${changedSince ? ', changed since: save it again to keep the changes' : ''}.`;
  $('#file-state').textContent = line;
  const atRisk = WEBKIT || persisted === false;
  const unkept = !file || changedSince || (file.handle && !writable);
  const warning = $('#keep-warning');
  warning.hidden = !(atRisk && unkept && images() > 0);
  warning.textContent = WEBKIT
    ? 'This browser deletes what this page stores after 7 days without a visit (Safari\'s tracking prevention): save the project to a file to keep it.'
    : 'This browser may clear what this page stores when space runs low (it did not grant persistent storage): save the project to a file to keep it.';
}

function refreshStorageSoon() {
  clearTimeout(storageTimer);
  storageTimer = setTimeout(() => refreshStorage().catch((e) => console.warn('storage estimate:', e)), 1000);
}

/// What the project takes in this browser's storage, what the browser allows, and whether it keeps
/// it; a warning past [`QUOTA_WARNING`] of the quota.
async function refreshStorage() {
  const sum = (f) => state.project.classes.reduce((n, c) => n + c.samples.reduce((m, s) => m + f(s), 0), 0);
  const parts = [
    ['images', sum((s) => s.thumbnail.byteLength + s.features.byteLength)],
    ['kept copies', sum((s) => s.source?.byteLength ?? 0)],
    ['layer inputs', await activationBytes().catch(() => 0)],
    ['model', (state.project.model?.byteLength ?? 0) + (state.project.modelBackbone?.byteLength ?? 0)],
  ];
  const total = parts.reduce((n, [, bytes]) => n + bytes, 0);
  const estimate = await navigator.storage?.estimate?.().catch(() => null);
  const kept = persisted === true ? 'kept until you delete it' : persisted === false ? 'best effort: the browser may clear it' : null;
  let text = `In this browser the project takes ${megabytes(total)}: ${parts.map(([name, bytes]) => `${name} ${megabytes(bytes)}`).join(', ')}.`;
  const line = $('#storage-state');
  let full = false;
  if (estimate?.quota > 0) {
    const share = estimate.usage / estimate.quota;
    full = share > QUOTA_WARNING;
    text += ` This page may store ${megabytes(estimate.quota)} here (${(100 * share).toFixed(0)}% used)`;
    text += full ? ': storage is nearly full, so saving may soon fail. Save the project to a file, or remove images.' : '';
  } else {
    text += ' This browser does not say how much the page may store';
  }
  if (!full) text += kept ? `; storage: ${kept}.` : '.';
  line.textContent = text;
  line.classList.toggle('error', full);
}

export function wireKeeping() {
  $('#export-project').addEventListener('click', saveToFile);
  $('#keep-file').addEventListener('click', allowFile);
}
