// The Wick page: classes and samples, training, evaluation, preview, persistence and files. The
// computing happens in the worker (static/worker.js) on the shared Rust library; this file only owns
// the DOM, the webcam, IndexedDB and the messages.
import init, { encode_project, decode_project, describe_stop, wick_format } from '../wick.js';

const MODEL_URL = new URL('efficientnet-lite0-int8.safetensors', import.meta.url).href;
const $ = (selector, root = document) => root.querySelector(selector);
const DEFAULT_SETTINGS = { epochs: 50, learning_rate: 0.001, batch_size: 16, hidden_units: 0, validation_share: 0.15 };
const BURST_INTERVAL_MS = 150;
const READS_IN_FLIGHT = 4;

// ---- state -------------------------------------------------------------------------------------
// project: { classes: [{ id, name, samples: [{ id, name, thumbnail: Uint8Array, features: Float32Array }] }],
//            settings, model: Uint8Array | null, report: object | null, trainedOn: [sample ids] }
let project = null;
let backbone = null; // { id, architecture, sha256, own_classes, source }
let featureDim = 0;
// A backbone file the user opened (e.g. fine-tuned by `wick cifar10 --mode finetune`), kept with the
// project so a reload comes back to it; null for the default backbone.
let customBackbone = null;
let nextId = 1;
let training = false;
let previewStream = null;
const thumbnailUrls = new Map(); // sample id → object URL

const newId = () => `s${Date.now().toString(36)}${(nextId++).toString(36)}`;

function emptyProject() {
  return {
    classes: [{ id: newId(), name: 'Class 1', samples: [] }, { id: newId(), name: 'Class 2', samples: [] }],
    settings: { ...DEFAULT_SETTINGS },
    model: null,
    report: null,
    trainedOn: [],
  };
}

// ---- status ------------------------------------------------------------------------------------
function status(text, isError = false) {
  const el = $('#status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function trainStatus(text, isError = false) {
  const el = $('#train-status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

// ---- the worker --------------------------------------------------------------------------------
let worker = null; // started once the service worker controls the page, so its model download is cached
const pending = new Map(); // request id → { resolve, reject }
let requestCounter = 0;
const listeners = { progress: [], epoch: [] };

function startWorker() {
  worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
}

function onWorkerMessage({ data }) {
  if (data.type === 'progress' || data.type === 'epoch') {
    listeners[data.type].forEach((f) => f(data));
    return;
  }
  const waiting = pending.get(data.id);
  if (!waiting) return;
  pending.delete(data.id);
  if (data.type === 'error') waiting.reject(new Error(data.message));
  else waiting.resolve(data);
}

/// Sends a request; resolves with the worker's answer (or rejects with its error).
function ask(message, transfer = []) {
  const id = `r${++requestCounter}`;
  message.id = id;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage(message, transfer);
  });
}

// ---- persistence (IndexedDB) -------------------------------------------------------------------
const DB_NAME = 'wick';
const STORE = 'projects';
let dbPromise = null;
let saveTimer = null;
let saveGeneration = 0;
let saving = Promise.resolve();

function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return dbPromise;
}

async function loadSaved() {
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
    tx.objectStore(STORE).put({ ...project, backbone, customBackbone, savedAt: Date.now() }, 'current');
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the save was aborted'));
  });
}

function scheduleSave() {
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

/// Every change goes through here: it redraws and saves.
function changed({ model = false } = {}) {
  if (model && project.model) {
    project.model = null;
    project.report = null;
    worker.postMessage({ type: 'unload-model' });
  }
  render();
  scheduleSave();
}

// ---- adding samples ----------------------------------------------------------------------------
const extraction = { queued: 0, done: 0, failed: [], started: 0 };

function showExtraction() {
  const bar = $('#extract-progress');
  const { queued, done, failed, started } = extraction;
  bar.hidden = queued === 0;
  $('#extract-text').dataset.pending = String(queued - done);
  bar.max = Math.max(queued, 1);
  bar.value = done;
  if (queued === 0) return;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? done / seconds : 0;
  $('#extract-text').textContent = done < queued
    ? `Reading images: ${done} / ${queued} (${rate.toFixed(1)} images/s)`
    : `Added ${done - failed.length} image${done - failed.length === 1 ? '' : 's'}`
      + (failed.length ? `; skipped ${failed.length}: ${failed.join('; ')}` : '');
  $('#extract-text').classList.toggle('error', failed.length > 0);
}

/// Embeds the files (in the worker) and adds them to the class; bad files are skipped and named.
/// A few files are read at a time, so a dropped folder of large photos never sits in memory at once.
async function addFiles(classId, files) {
  if (files.length === 0) return;
  if (extraction.done >= extraction.queued) Object.assign(extraction, { queued: 0, done: 0, failed: [], started: performance.now() });
  extraction.queued += files.length;
  showExtraction();
  const queue = [...files];
  const reader = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      const name = file.name || 'pasted image';
      try {
        const bytes = await file.arrayBuffer();
        addSample(classId, name, await ask({ type: 'embed', bytes }, [bytes]));
      } catch (e) {
        extraction.failed.push(`${name}: ${e.message}`);
      } finally {
        extraction.done += 1;
        showExtraction();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, files.length) }, reader));
}

function addSample(classId, name, { features, thumbnail }) {
  const cls = project.classes.find((c) => c.id === classId);
  if (!cls) return; // the class was deleted meanwhile
  cls.samples.push({ id: newId(), name, thumbnail, features });
  changed({ model: false });
}

/// Files and folders from a drop: folders are walked (all files inside, any depth).
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 0) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

// ---- the webcam --------------------------------------------------------------------------------
async function openCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  return stream;
}

function closeCamera(video, stream) {
  stream?.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  video.hidden = true;
}

function grabFrame(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const { data, width, height } = context.getImageData(0, 0, canvas.width, canvas.height);
  return { rgba: data.buffer, width, height };
}

/// "Hold to record": frames are captured while the button is held (pointer, Space or Enter).
function wireBurst(button, video, classId) {
  let timer = null;
  const capture = async () => {
    if (!video.videoWidth) return;
    const frame = grabFrame(video);
    try {
      const answer = await ask({ type: 'embed-rgba', ...frame }, [frame.rgba]);
      addSample(classId, 'webcam', answer);
    } catch (e) {
      status(`Webcam frame: ${e.message}`, true);
    }
  };
  const startBurst = (event) => {
    event.preventDefault();
    if (timer) return;
    capture();
    timer = setInterval(capture, BURST_INTERVAL_MS);
    button.classList.add('recording');
  };
  const stopBurst = () => {
    clearInterval(timer);
    timer = null;
    button.classList.remove('recording');
  };
  button.addEventListener('pointerdown', startBurst);
  ['pointerup', 'pointerleave', 'pointercancel', 'blur'].forEach((e) => button.addEventListener(e, stopBurst));
  button.addEventListener('keydown', (e) => { if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) startBurst(e); });
  button.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Enter') stopBurst(); });
}

// ---- rendering ---------------------------------------------------------------------------------
function thumbnailUrl(sample) {
  if (!thumbnailUrls.has(sample.id)) {
    thumbnailUrls.set(sample.id, URL.createObjectURL(new Blob([sample.thumbnail], { type: 'image/jpeg' })));
  }
  return thumbnailUrls.get(sample.id);
}

let lastFocusedClass = null;

function renderClass(cls) {
  let card = document.querySelector(`[data-class-id="${cls.id}"]`);
  if (!card) {
    card = $('#class-template').content.firstElementChild.cloneNode(true);
    card.dataset.classId = cls.id;
    const name = $('.class-name', card);
    name.addEventListener('change', () => renameClass(cls.id, name.value));
    $('.delete-class', card).addEventListener('click', () => deleteClass(cls.id));
    const picker = $('.class-files', card);
    picker.addEventListener('change', () => { addFiles(cls.id, [...picker.files]); picker.value = ''; });
    const zone = $('.drop-zone', card);
    zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', async (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      addFiles(cls.id, await droppedFiles(e.dataTransfer));
    });
    card.addEventListener('focusin', () => { lastFocusedClass = cls.id; });
    card.addEventListener('pointerdown', () => { lastFocusedClass = cls.id; });
    const video = $('.webcam-video', card);
    const record = $('.hold-record', card);
    let stream = null;
    $('.webcam', card).addEventListener('click', async (e) => {
      if (stream) {
        closeCamera(video, stream);
        stream = null;
        record.hidden = true;
        e.target.textContent = 'Webcam';
        return;
      }
      try {
        stream = await openCamera(video);
        record.hidden = false;
        e.target.textContent = 'Close webcam';
      } catch (err) {
        status(`The webcam is not available: ${err.message}`, true);
      }
    });
    wireBurst(record, video, cls.id);
    $('.thumbs', card).addEventListener('click', (e) => {
      const button = e.target.closest('button[data-sample-id]');
      if (button) removeSample(cls.id, button.dataset.sampleId);
    });
    $('#classes').append(card);
  }
  const name = $('.class-name', card);
  if (document.activeElement !== name) name.value = cls.name;
  $('.count', card).textContent = `${cls.samples.length} image${cls.samples.length === 1 ? '' : 's'}`;
  const list = $('.thumbs', card);
  const shown = new Set([...list.children].map((li) => li.dataset.sampleId));
  const wanted = new Set(cls.samples.map((s) => s.id));
  [...list.children].forEach((li) => { if (!wanted.has(li.dataset.sampleId)) li.remove(); });
  for (const sample of cls.samples) {
    if (shown.has(sample.id)) continue;
    const li = document.createElement('li');
    li.dataset.sampleId = sample.id;
    const img = document.createElement('img');
    img.src = thumbnailUrl(sample);
    img.alt = sample.name;
    img.title = sample.name;
    const remove = document.createElement('button');
    remove.dataset.sampleId = sample.id;
    remove.textContent = '×';
    remove.setAttribute('aria-label', `Remove ${sample.name}`);
    li.append(img, remove);
    list.append(li);
  }
}

function render() {
  const ids = new Set(project.classes.map((c) => c.id));
  document.querySelectorAll('[data-class-id]').forEach((card) => { if (!ids.has(card.dataset.classId)) card.remove(); });
  project.classes.forEach(renderClass);
  // Cards follow the project's class order.
  project.classes.forEach((c) => $('#classes').append(document.querySelector(`[data-class-id="${c.id}"]`)));

  const problem = trainingProblem();
  $('#train').disabled = training || !backbone || problem !== null;
  $('#train-hint').textContent = problem ?? '';
  $('#cancel').hidden = !training;
  $('#export-model').disabled = !project.model;
  $('#preview-file').disabled = !backbone;
  $('#preview-webcam').disabled = !backbone;
  for (const [key, value] of Object.entries(project.settings)) {
    const input = document.getElementById(key.replaceAll('_', '-'));
    if (input && document.activeElement !== input) input.value = value;
  }
  renderEvaluation();
}

/// Why training cannot start, or null.
function trainingProblem() {
  if (project.classes.length < 2) return 'Add a second class: a classifier tells classes apart.';
  const empty = project.classes.find((c) => c.samples.length === 0);
  if (empty) return `Add images to "${empty.name}" first.`;
  const names = project.classes.map((c) => c.name.trim());
  if (names.some((n) => n === '')) return 'Every class needs a name.';
  if (new Set(names).size !== names.length) return 'Two classes have the same name.';
  return null;
}

function renameClass(id, name) {
  const cls = project.classes.find((c) => c.id === id);
  const trimmed = name.trim();
  if (trimmed === '') {
    status('A class name cannot be empty.', true);
    render();
    return;
  }
  if (project.classes.some((c) => c.id !== id && c.name === trimmed)) {
    status(`There is already a class named "${trimmed}".`, true);
    render();
    return;
  }
  cls.name = trimmed;
  changed({ model: true });
}

function deleteClass(id) {
  const cls = project.classes.find((c) => c.id === id);
  if (cls.samples.length > 0 && !confirm(`Delete "${cls.name}" and its ${cls.samples.length} images?`)) return;
  cls.samples.forEach((s) => { URL.revokeObjectURL(thumbnailUrls.get(s.id)); thumbnailUrls.delete(s.id); });
  project.classes = project.classes.filter((c) => c.id !== id);
  changed({ model: true });
}

function removeSample(classId, sampleId) {
  const cls = project.classes.find((c) => c.id === classId);
  cls.samples = cls.samples.filter((s) => s.id !== sampleId);
  URL.revokeObjectURL(thumbnailUrls.get(sampleId));
  thumbnailUrls.delete(sampleId);
  changed({ model: false });
}

// ---- training ----------------------------------------------------------------------------------
let history = [];

function readSettings() {
  const number = (id) => Number(document.getElementById(id).value);
  const settings = {
    epochs: Math.round(number('epochs')),
    learning_rate: number('learning-rate'),
    batch_size: Math.round(number('batch-size')),
    hidden_units: Math.round(number('hidden-units')),
    validation_share: number('validation-share'),
  };
  const bad = Object.entries(settings).find(([, v]) => !Number.isFinite(v) || v < 0);
  if (bad) throw new Error(`the setting ${bad[0].replaceAll('_', ' ')} must be a number of at least 0`);
  if (settings.epochs < 1 || settings.batch_size < 1) throw new Error('epochs and batch size must be at least 1');
  if (!(settings.learning_rate > 0)) throw new Error('the learning rate must be above 0');
  return settings;
}

async function startTraining() {
  let settings;
  try {
    settings = readSettings();
  } catch (e) {
    trainStatus(`Cannot train: ${e.message}`, true);
    return;
  }
  project.settings = settings;
  const samples = project.classes.flatMap((c, label) => c.samples.map((s) => ({ sample: s, label })));
  const features = new Float32Array(samples.length * featureDim);
  samples.forEach(({ sample }, i) => features.set(sample.features, i * featureDim));
  const labels = new Uint32Array(samples.map((s) => s.label));
  const classNames = project.classes.map((c) => c.name);
  training = true;
  history = [];
  drawChart();
  render();
  await saving;
  scheduleSave();
  trainStatus('Training…');
  const started = performance.now();
  try {
    const answer = await ask({ type: 'train', features, labels, classNames, settings: { ...settings, seed: 0 } },
      [features.buffer, labels.buffer]);
    project.model = answer.wick;
    project.report = answer.report;
    project.trainedOn = samples.map((s) => s.sample.id);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const v = answer.report.validation;
    trainStatus(`Trained in ${seconds} s (${describe_stop(JSON.stringify(answer.report.stop))}; kept epoch ${answer.report.best_epoch}).`
      + (v ? ` Validation accuracy: ${(100 * v.accuracy).toFixed(1)}%.` : ' No validation images (classes too small to hold any out).'),
    answer.report.stop.kind === 'diverged');
  } catch (e) {
    trainStatus(`Training failed: ${e.message}`, true);
  } finally {
    training = false;
    changed();
  }
}

listeners.epoch.push(({ stats }) => {
  history.push(stats);
  drawChart();
  const v = stats.val_accuracy == null ? '' : `, validation accuracy ${(100 * stats.val_accuracy).toFixed(1)}%`;
  trainStatus(`Epoch ${stats.epoch}: loss ${stats.train_loss.toFixed(3)}${v}`);
});

function drawChart() {
  const canvas = $('#chart');
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const panels = [
    { title: 'loss', keys: ['train_loss', 'val_loss'], x: 0 },
    { title: 'accuracy', keys: ['train_accuracy', 'val_accuracy'], x: width / 2 },
  ];
  const colours = ['#0a66c2', '#d9480f'];
  context.font = '12px system-ui, sans-serif';
  for (const panel of panels) {
    const left = panel.x + 34, right = panel.x + width / 2 - 8, top = 20, bottom = height - 24;
    const values = history.flatMap((h) => panel.keys.map((k) => h[k])).filter((v) => v != null);
    const max = panel.title === 'accuracy' ? 1 : Math.max(...values, 0.1);
    context.strokeStyle = '#999';
    context.beginPath();
    context.moveTo(left, top);
    context.lineTo(left, bottom);
    context.lineTo(right, bottom);
    context.stroke();
    context.fillStyle = '#333';
    context.fillText(panel.title, left, 12);
    context.fillText(max.toFixed(panel.title === 'accuracy' ? 0 : 2), panel.x + 2, top + 4);
    context.fillText('0', panel.x + 20, bottom);
    context.fillText(`epoch ${history.length}`, right - 56, height - 6);
    const epochs = Math.max(history.length, 2);
    panel.keys.forEach((key, i) => {
      context.strokeStyle = colours[i];
      context.setLineDash(i ? [4, 3] : []);
      context.beginPath();
      history.forEach((h, e) => {
        if (h[key] == null) return;
        const px = left + ((right - left) * e) / (epochs - 1);
        const py = bottom - ((bottom - top) * h[key]) / max;
        if (e === 0) context.moveTo(px, py); else context.lineTo(px, py);
      });
      context.stroke();
    });
    context.setLineDash([]);
  }
  context.fillStyle = colours[0];
  context.fillText('— training', width - 150, 12);
  context.fillStyle = colours[1];
  context.fillText('- - validation', width - 80, 12);
}

function renderEvaluation() {
  const section = $('#evaluation');
  const v = project.report?.validation;
  section.hidden = !v;
  if (!v) return;
  $('#val-accuracy').textContent = `${(100 * v.accuracy).toFixed(1)}% of ${v.images} validation images correct.`;
  const perClass = $('#per-class');
  perClass.replaceChildren();
  const head = perClass.createTHead().insertRow();
  ['Class', 'Accuracy', 'Images'].forEach((t) => { const th = document.createElement('th'); th.textContent = t; head.append(th); });
  const body = perClass.createTBody();
  v.classes.forEach((c) => {
    const row = body.insertRow();
    [c.label, `${(100 * c.recall).toFixed(0)}%`, String(c.support)].forEach((t) => { row.insertCell().textContent = t; });
  });
  const confusion = $('#confusion');
  confusion.replaceChildren();
  const caption = confusion.createCaption();
  caption.textContent = 'Confusion matrix (rows: true class, columns: predicted)';
  const top = confusion.createTHead().insertRow();
  top.append(document.createElement('th'));
  v.classes.forEach((c) => { const th = document.createElement('th'); th.scope = 'col'; th.textContent = c.label; top.append(th); });
  const rows = confusion.createTBody();
  v.confusion.forEach((counts, i) => {
    const row = rows.insertRow();
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = v.classes[i].label;
    row.append(th);
    counts.forEach((n, j) => {
      const cell = row.insertCell();
      cell.textContent = n;
      if (n > 0) cell.className = i === j ? 'hit' : 'miss';
    });
  });
  const wrong = $('#misclassified');
  wrong.replaceChildren();
  const byId = new Map(project.classes.flatMap((c) => c.samples.map((s) => [s.id, s])));
  for (const m of v.misclassified) {
    const sample = byId.get(project.trainedOn[Number(m.name)]);
    const figure = document.createElement('figure');
    if (sample) {
      const img = document.createElement('img');
      img.src = thumbnailUrl(sample);
      img.alt = sample.name;
      figure.append(img);
    }
    const caption = document.createElement('figcaption');
    caption.textContent = `${m.truth} → ${m.predicted} (${(100 * m.confidence).toFixed(0)}%)`;
    figure.append(caption);
    wrong.append(figure);
  }
  if (v.misclassified.length === 0) wrong.textContent = 'None.';
}

// ---- preview -----------------------------------------------------------------------------------
/// A trained model's probabilities for the project's classes, or (before training) the top 5 of the
/// backbone's own classifier: ImageNet's, or the classes a fine-tuned backbone learned.
function renderPredictions({ probabilities, backbone: ownTop }) {
  const list = $('#predictions');
  list.replaceChildren();
  const own = backbone.own_classes === 1000 ? 'ImageNet classes' : 'classes the backbone was fine-tuned on';
  list.setAttribute('aria-label', ownTop ? `Top-5 ${own} (no model trained yet)` : 'Class probabilities');
  $('#preview-kind').textContent = ownTop ? `No model trained yet: these are the ${own}.` : '';
  const labels = ownTop ? ownTop.map((p) => p.label) : project.classes.map((c) => c.name);
  const order = ownTop ? ownTop.map((p, i) => [p.probability, i])
    : Array.from(probabilities, (p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  for (const [p, i] of order) {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.className = 'label';
    label.textContent = labels[i];
    const meter = document.createElement('meter');
    meter.value = p;
    meter.setAttribute('aria-label', `${labels[i]} probability`);
    const percent = document.createElement('span');
    percent.className = 'percent';
    percent.textContent = `${(100 * p).toFixed(1)}%`;
    li.append(label, meter, percent);
    list.append(li);
  }
}

async function previewFile(file) {
  try {
    const bytes = await file.arrayBuffer();
    const url = URL.createObjectURL(file);
    const img = $('#preview-image');
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = url;
    img.alt = file.name;
    renderPredictions(await ask({ type: 'classify', bytes }, [bytes]));
    status(`${file.name}: classified in this tab.`);
  } catch (e) {
    $('#predictions').replaceChildren();
    status(`${file.name}: ${e.message}`, true);
  }
}

async function togglePreviewWebcam() {
  const video = $('#preview-video');
  if (previewStream) {
    closeCamera(video, previewStream);
    previewStream = null;
    $('#preview-webcam').textContent = 'Use webcam';
    return;
  }
  try {
    previewStream = await openCamera(video);
    $('#preview-webcam').textContent = 'Stop webcam';
    const loop = async () => {
      if (!previewStream) return;
      if (video.videoWidth) {
        const frame = grabFrame(video);
        try {
          renderPredictions(await ask({ type: 'classify-rgba', ...frame }, [frame.rgba]));
        } catch (e) {
          status(e.message, true);
        }
      }
      setTimeout(loop, 100);
    };
    loop();
  } catch (e) {
    status(`The webcam is not available: ${e.message}`, true);
  }
}

// ---- files -------------------------------------------------------------------------------------
function downloadBytes(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function projectMeta() {
  // The report names validation images by their position in the list trained on; the file keeps that
  // list as positions in its own sample order.
  const position = new Map(project.classes.flatMap((c) => c.samples).map((s, i) => [s.id, i]));
  return {
    backbone,
    classes: project.classes.map((c) => ({ name: c.name, samples: c.samples.map((s) => ({ name: s.name, thumbnail_bytes: s.thumbnail.length })) })),
    settings: { ...project.settings, report: project.report, trained_on: project.trainedOn.map((id) => position.get(id) ?? -1) },
  };
}

function exportProject() {
  const samples = project.classes.flatMap((c) => c.samples);
  const features = new Float32Array(samples.length * featureDim);
  samples.forEach((s, i) => features.set(s.features, i * featureDim));
  const thumbnails = new Uint8Array(samples.reduce((n, s) => n + s.thumbnail.length, 0));
  let offset = 0;
  samples.forEach((s) => { thumbnails.set(s.thumbnail, offset); offset += s.thumbnail.length; });
  try {
    const bytes = encode_project(JSON.stringify(projectMeta()), features, thumbnails, project.model ?? undefined, featureDim);
    downloadBytes(bytes, 'wick-project.wickproject', 'application/octet-stream');
  } catch (e) {
    status(`Could not export the project: ${e.message}`, true);
  }
}

/// Replaces the project with a file's, only once the whole file has been read and checked.
async function openProject(file) {
  try {
    const parts = decode_project(new Uint8Array(await file.arrayBuffer()), backbone.sha256, featureDim);
    const meta = JSON.parse(parts.meta);
    const features = parts.features;
    const thumbnails = parts.thumbnails;
    const model = parts.model ?? null;
    parts.free();
    let row = 0;
    let offset = 0;
    const classes = meta.classes.map((c) => ({
      id: newId(),
      name: c.name,
      samples: c.samples.map((s) => {
        const sample = {
          id: newId(),
          name: s.name,
          thumbnail: thumbnails.slice(offset, offset + s.thumbnail_bytes),
          features: features.slice(row * featureDim, (row + 1) * featureDim),
        };
        offset += s.thumbnail_bytes;
        row += 1;
        return sample;
      }),
    }));
    const { report = null, trained_on: trainedOnIndices = [], ...settings } = meta.settings ?? {};
    if (model) await ask({ type: 'load-model', bytes: model.slice().buffer }, []);
    const ids = classes.flatMap((c) => c.samples.map((s) => s.id));
    replaceProject({
      classes,
      settings: { ...DEFAULT_SETTINGS, ...settings },
      model,
      report: model ? report : null,
      trainedOn: Array.isArray(trainedOnIndices) ? trainedOnIndices.map((i) => ids[i] ?? null) : [],
    });
    status(`Opened ${file.name}: ${classes.length} classes, ${ids.length} images${model ? ', with its trained model' : ''}.`);
  } catch (e) {
    status(`Could not open ${file.name}: ${e.message}. Your current project is unchanged.`, true);
  }
}

/// "Open model…": a `.wick` model (from the CLI or another browser), a backbone file (e.g. one
/// that `wick cifar10 --mode finetune` fine-tuned), or a backbone and its `.wick` together.
async function openModels(files) {
  const items = await Promise.all(files.map(async (file) => ({ file, bytes: new Uint8Array(await file.arrayBuffer()) })));
  const backbones = items.filter((item) => wick_format(item.bytes) === 'wick-model');
  const models = items.filter((item) => !backbones.includes(item));
  if (backbones.length > 1 || models.length > 1) {
    status('Open one backbone file, one .wick model, or one of each. Your current project is unchanged.', true);
    return;
  }
  if (backbones.length === 1 && !(await switchBackbone(backbones[0]))) return;
  if (models.length === 1) await openModel(models[0]);
}

function setBackbone(ready, bytes) {
  backbone = ready.backbone;
  featureDim = ready.dim;
  customBackbone = bytes;
  $('#backbone-name').textContent = bytes ? describeBackbone() : 'EfficientNet-Lite0 (ImageNet)';
}

const describeBackbone = () => backbone.own_classes === 1000
  ? backbone.architecture
  : `${backbone.architecture}, ${backbone.source}, with ${backbone.own_classes} classes of its own`;

/// Makes an opened backbone file the page's backbone. The project's features were computed by the
/// old backbone, so the project starts afresh (after asking, when it has images).
async function switchBackbone({ file, bytes }) {
  const hasImages = project.classes.some((c) => c.samples.length > 0);
  if (hasImages && !confirm(`Switch to the backbone in ${file.name}? This project's images were embedded by the current backbone, so the project starts afresh (use "Export project" first to keep it).`)) return false;
  try {
    setBackbone(await ask({ type: 'load-backbone', modelBytes: bytes.slice().buffer }, []), bytes);
  } catch (e) {
    status(`Could not open ${file.name}: ${e.message}. Your current project is unchanged.`, true);
    return false;
  }
  replaceProject(emptyProject());
  status(`Opened backbone ${file.name}: ${describeBackbone()}.`);
  return true;
}

/// Loads a `.wick` model (from the CLI or another browser); its classes become the project's labels
/// when the project has none of its own yet.
async function openModel({ file, bytes }) {
  try {
    const { meta } = await ask({ type: 'load-model', bytes: bytes.slice().buffer }, []);
    const names = project.classes.map((c) => c.name);
    const sameClasses = names.length === meta.labels.length && names.every((n, i) => n === meta.labels[i]);
    if (!sameClasses) {
      const hasImages = project.classes.some((c) => c.samples.length > 0);
      if (hasImages && !confirm(`This model's classes (${meta.labels.join(', ')}) differ from the project's. Replace the project's classes and images with the model's classes?`)) {
        // Put back the model the project had (or none).
        if (project.model) await ask({ type: 'load-model', bytes: project.model.slice().buffer }, []);
        else worker.postMessage({ type: 'unload-model' });
        return;
      }
      project.classes = meta.labels.map((name) => ({ id: newId(), name, samples: [] }));
    }
    project.model = bytes;
    project.report = null;
    project.trainedOn = [];
    changed();
    const v = meta.validation;
    status(`Opened model ${file.name}: ${meta.labels.length} classes` + (v ? `, ${(100 * v.accuracy).toFixed(1)}% validation accuracy when trained.` : '.'));
  } catch (e) {
    status(`Could not open ${file.name}: ${e.message}. Your current project is unchanged.`, true);
  }
}

function replaceProject(next) {
  thumbnailUrls.forEach((url) => URL.revokeObjectURL(url));
  thumbnailUrls.clear();
  document.querySelectorAll('[data-class-id]').forEach((card) => card.remove());
  project = next;
  history = next.report?.history ?? [];
  drawChart();
  changed();
}

// ---- start -------------------------------------------------------------------------------------
function wire() {
  $('#add-class').addEventListener('click', () => {
    let n = project.classes.length + 1;
    while (project.classes.some((c) => c.name === `Class ${n}`)) n += 1;
    project.classes.push({ id: newId(), name: `Class ${n}`, samples: [] });
    changed({ model: true });
    $(`[data-class-id="${project.classes.at(-1).id}"] .class-name`).focus();
  });
  $('#train').addEventListener('click', startTraining);
  $('#cancel').addEventListener('click', () => { worker.postMessage({ type: 'cancel' }); trainStatus('Cancelling…'); });
  $('#advanced').addEventListener('change', () => {
    try { project.settings = readSettings(); scheduleSave(); } catch (e) { trainStatus(e.message, true); }
  });
  $('#preview-file').addEventListener('change', (e) => { if (e.target.files[0]) previewFile(e.target.files[0]); e.target.value = ''; });
  const drop = $('#preview-drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) previewFile(e.dataTransfer.files[0]);
  });
  $('#preview-webcam').addEventListener('click', togglePreviewWebcam);
  $('#export-model').addEventListener('click', () => downloadBytes(project.model, 'model.wick', 'application/octet-stream'));
  $('#export-project').addEventListener('click', exportProject);
  $('#open-model').addEventListener('change', (e) => { if (e.target.files.length) openModels([...e.target.files]); e.target.value = ''; });
  $('#open-project').addEventListener('change', (e) => { if (e.target.files[0]) openProject(e.target.files[0]); e.target.value = ''; });
  $('#reset').addEventListener('click', async () => {
    const andBackbone = customBackbone ? ', and go back to the default backbone' : '';
    if (!confirm(`Reset: delete every class, image and the trained model from this browser${andBackbone}?`)) return;
    if (customBackbone) {
      try {
        setBackbone(await ask({ type: 'load-backbone', modelUrl: MODEL_URL }), null);
      } catch (e) {
        status(`Could not load the default backbone: ${e.message}. Your current project is unchanged.`, true);
        return;
      }
    }
    replaceProject(emptyProject());
    status('Started a new project.');
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length === 0) return;
    const target = project.classes.find((c) => c.id === lastFocusedClass) ?? project.classes[0];
    if (!target) return;
    e.preventDefault();
    addFiles(target.id, files);
  });
}

async function main() {
  await init({ module_or_path: new URL('../wick_bg.wasm', import.meta.url) });
  if ('serviceWorker' in navigator) {
    // Offline after the first visit: the service worker keeps the app and the model.
    try {
      await navigator.serviceWorker.register(new URL('../sw.js', import.meta.url));
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) {
        // First visit: the new service worker claims the page; the worker must start after that.
        await new Promise((resolve) => {
          navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true });
          setTimeout(resolve, 3000);
        });
      }
    } catch (e) {
      console.warn('no offline support:', e);
    }
  }
  startWorker();
  wire();
  let saved = null;
  try {
    saved = await loadSaved();
  } catch (e) {
    status(`Could not read the saved project: ${e.message}`, true);
  }
  listeners.progress.push(({ received, total }) => {
    $('#model-progress').value = total ? received / total : 0;
    status(`Downloading the model… ${(received / 1e6).toFixed(1)}${total ? ` / ${(total / 1e6).toFixed(1)}` : ''} MB`);
  });
  try {
    let ready = null;
    if (saved?.customBackbone) {
      try {
        ready = await ask({ type: 'start', modelBytes: saved.customBackbone.slice().buffer });
        setBackbone(ready, saved.customBackbone);
      } catch (e) {
        status(`Could not load the saved backbone (${e.message}): back to the default one.`, true);
      }
    }
    if (!ready) setBackbone(await ask({ type: 'start', modelUrl: MODEL_URL }), null);
    $('#model-progress').value = 1;
  } catch (e) {
    status(`Could not load the model: ${e.message}`, true);
    return;
  }
  project = emptyProject();
  const restored = saved && saved.backbone?.sha256 === backbone.sha256;
  if (restored) {
    const { backbone: _, savedAt: __, customBackbone: ___, ...rest } = saved;
    project = { ...emptyProject(), ...rest };
    if (project.model) {
      try {
        await ask({ type: 'load-model', bytes: project.model.slice().buffer }, []);
      } catch (e) {
        project.model = null;
        project.report = null;
      }
    }
  }
  // The chart of the run that trained the saved model, and the state of the copy just read.
  history = project.report?.history ?? [];
  if (restored) $('#save-state').replaceChildren('Saved in this browser');
  render();
  drawChart();
  status(`Model ready: ${describeBackbone()}. Add images to each class, then train.`);
  document.body.dataset.ready = 'true';
}

main();
