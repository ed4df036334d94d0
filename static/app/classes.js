// The class cards and the images coming in: files, folders, paste and webcam bursts embedded by the
// worker (a few in flight at a time, with a progress line), the cards with their paged thumbnails,
// renaming and deleting classes, and the controls that depend on them. The data operations are
// project.js's; app.js redraws every panel.
import { ask } from './messages.js';
import { Camera, wireBurst } from './camera.js';
import { addSample, forgetThumbnail, removeSample, thumbnailUrl, trainingProblem } from './project.js';
import { $, state, newId, status, changed, redraw } from './state.js';

// Enough files in flight to give every thread of the worker's pool one while the next are read.
const READS_IN_FLIGHT = Math.max(4, 2 * (navigator.hardwareConcurrency || 1));

// `again`: the images being embedded are the project's own, by a new backbone ([`embedAgain`]).
const extraction = { queued: 0, done: 0, failed: [], started: 0, again: false };

export function showExtraction() {
  const bar = $('#extract-progress');
  const { queued, done, failed, started } = extraction;
  bar.hidden = queued === 0;
  $('#extract-text').dataset.pending = String(queued - done);
  bar.max = Math.max(queued, 1);
  bar.value = done;
  if (queued === 0) return;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? done / seconds : 0;
  const kept = done - failed.length;
  $('#extract-text').textContent = done < queued
    ? `${extraction.again ? 'Embedding the images again' : 'Reading images'}: ${done.toLocaleString('en')} / ${queued.toLocaleString('en')} (${rate.toFixed(1)} images/s${rate > 0 && done >= 8 ? `, about ${timeLeft((queued - done) / rate)} left` : ''})`
    : `${extraction.again ? 'Embedded' : 'Added'} ${kept.toLocaleString('en')} image${kept === 1 ? '' : 's'}${extraction.again ? ' again' : ''}`
      + (failed.length ? `; skipped ${failed.length}: ${failed.slice(0, 20).join('; ')}${failed.length > 20 ? `; and ${failed.length - 20} more` : ''}` : '');
  $('#extract-text').classList.toggle('error', failed.length > 0);
}

function timeLeft(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/// Embeds the files (in the worker) and adds them to the class; bad files are skipped and named.
/// A few files are read at a time, so a dropped folder of large photos never sits in memory at once.
export async function addFiles(classId, files) {
  if (files.length === 0) return;
  if (extraction.done >= extraction.queued) Object.assign(extraction, { queued: 0, done: 0, failed: [], started: performance.now(), again: false });
  extraction.queued += files.length;
  showExtraction();
  await embedEach(files, (file) => file.name || 'pasted image', async (file, name) => {
    const bytes = await file.arrayBuffer();
    if (addSample(classId, name, await ask({ type: 'embed', bytes }, [bytes]))) redrawSoon();
  }, redrawSoon);
}

/// `embed(item, name)` for each item, a few in flight at a time (enough to give every thread of
/// the worker's pool one), each counted in the progress line as done, or as failed with its name
/// and why; `after()` once each has ended.
async function embedEach(items, nameOf, embed, after) {
  const queue = [...items];
  const embedder = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const name = nameOf(item);
      try {
        await embed(item, name);
      } catch (e) {
        extraction.failed.push(`${name}: ${e.message}`);
      } finally {
        extraction.done += 1;
        after();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, items.length) }, embedder));
}

/// Whether images are still being read into the project (their features come from the backbone the
/// worker has when each one's turn comes).
export const stillReading = () => extraction.done < extraction.queued;

/// `project`'s images embedded again by the worker's backbone, from the copies kept of them: the
/// project when a new backbone replaced the one its features came from. Resolves with the project
/// as it then is — new features under new ids (the next save writes them and deletes the old
/// records in one transaction), without the model the old features trained — and `leftOut`, a
/// sentence naming the images that could not be embedded again (no kept copy, or one that no longer
/// decodes), empty when there are none.
///
/// The page's controls are inert meanwhile, so that no image is added, trained on or checked while
/// the features of two backbones are mixed.
export async function embedAgain(project) {
  const samples = project.classes.flatMap((c) => c.samples);
  Object.assign(extraction, { queued: samples.length, done: 0, failed: [], started: performance.now(), again: true });
  showExtraction();
  const features = new Map(); // sample → its new features
  $('main').inert = true;
  try {
    await embedEach(samples, (sample) => sample.name, async (sample) => {
      if (!(sample.source?.length > 0)) throw new Error('no copy of it was kept (added before this version)');
      const bytes = sample.source.slice().buffer;
      features.set(sample, (await ask({ type: 'embed', bytes }, [bytes])).features);
    }, showExtraction);
  } finally {
    $('main').inert = false;
  }
  const classes = project.classes.map((c) => ({
    ...c,
    samples: c.samples.filter((s) => features.has(s)).map((s) => ({ ...s, id: newId(), features: features.get(s) })),
  }));
  const { failed } = extraction;
  const leftOut = failed.length === 0 ? ''
    : `${failed.length} could not be embedded again and ${failed.length === 1 ? 'was' : 'were'} left out (${failed.slice(0, 3).join('; ')}).`;
  return { project: { ...project, classes, model: null, modelBackbone: null, report: null, trainedOn: [] }, leftOut };
}

// While files are being read the page redraws a few times a second, not once a photo: the class
// card's redraw took the main thread ~20 ms a photo (Chromium's profile of 200 photos), time the
// worker's threads share the cores with. The last file of a batch redraws at once.
const REDRAW_MS = 250;
let redrawTimer = null;

function redrawSoon() {
  if (extraction.done >= extraction.queued) redrawNow();
  else redrawTimer ??= setTimeout(redrawNow, REDRAW_MS);
}

function redrawNow() {
  clearTimeout(redrawTimer);
  redrawTimer = null;
  changed({ model: false });
  showExtraction();
}

/// Files and folders from a drop: folders are walked (all files inside, any depth). A dropped file
/// whose entry cannot be read (WebKit's, for a file a script put in the drop) is taken from the
/// drop's file list instead.
export async function droppedFiles(dataTransfer) {
  // Read at once: the browser empties a drop's data once its event has been handled.
  const dropped = [...dataTransfer.files];
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 0) return dropped;
  const files = [];
  const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await fileOf(entry));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) {
    const listed = entry.isFile && dropped.find((f) => f.name === entry.name);
    try {
      await walk(entry);
    } catch (e) {
      if (!listed) throw new Error(`could not read ${entry.name}: ${e.message}`);
      files.push(listed);
    }
  }
  return files;
}

/// Thumbnails a class card shows at a time: a class of 5,000 images pages through them.
export const PAGE = 48;
const pages = new Map(); // class id → page shown

export function renderClass(cls) {
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
      try {
        addFiles(cls.id, await droppedFiles(e.dataTransfer));
      } catch (error) {
        status(`The dropped files: ${error.message}`, true);
      }
    });
    card.addEventListener('focusin', () => { state.lastFocusedClass = cls.id; });
    card.addEventListener('pointerdown', () => { state.lastFocusedClass = cls.id; });
    const camera = new Camera($('.webcam-video', card));
    const record = $('.hold-record', card);
    const switcher = $('.switch-camera', card);
    $('.webcam', card).addEventListener('click', async (e) => {
      if (camera.isOpen) {
        camera.close();
        record.hidden = true;
        switcher.hidden = true;
        e.target.textContent = 'Webcam';
        return;
      }
      try {
        await camera.open();
        record.hidden = false;
        switcher.hidden = (await Camera.count()) < 2;
        e.target.textContent = 'Close webcam';
      } catch (err) {
        status(`The webcam is not available: ${err.message}`, true);
      }
    });
    switcher.addEventListener('click', () => camera.switchCamera().catch((err) => status(`Could not switch the camera: ${err.message}`, true)));
    wireBurst(record, camera.video, (embedding) => { if (addSample(cls.id, 'webcam', embedding)) redrawSoon(); });
    $('.thumbs', card).addEventListener('click', (e) => {
      const button = e.target.closest('button[data-sample-id]');
      if (button) removeSample(cls.id, button.dataset.sampleId);
    });
    const turn = (by) => {
      pages.set(cls.id, (pages.get(cls.id) ?? 0) + by);
      renderClass(state.project.classes.find((c) => c.id === cls.id));
    };
    $('.page-back', card).addEventListener('click', () => turn(-1));
    $('.page-next', card).addEventListener('click', () => turn(1));
    $('#classes').append(card);
  }
  const name = $('.class-name', card);
  if (document.activeElement !== name) name.value = cls.name;
  $('.count', card).textContent = `${cls.samples.length} image${cls.samples.length === 1 ? '' : 's'}`;
  // Only one page of thumbnails is in the page: a class of thousands stays a few dozen elements.
  const pageCount = Math.max(1, Math.ceil(cls.samples.length / PAGE));
  const page = Math.min(Math.max(pages.get(cls.id) ?? 0, 0), pageCount - 1);
  pages.set(cls.id, page);
  const visible = cls.samples.slice(page * PAGE, (page + 1) * PAGE);
  const pager = $('.pager', card);
  pager.hidden = pageCount === 1;
  $('.page-back', card).disabled = page === 0;
  $('.page-next', card).disabled = page === pageCount - 1;
  $('.page-text', card).textContent = `${(page * PAGE + 1).toLocaleString('en')}–${(page * PAGE + visible.length).toLocaleString('en')} of ${cls.samples.length.toLocaleString('en')}`;
  const list = $('.thumbs', card);
  const shownIds = [...list.children].map((li) => li.dataset.sampleId);
  if (shownIds.length === visible.length && visible.every((s, i) => s.id === shownIds[i])) return;
  const shown = new Map([...list.children].map((li) => [li.dataset.sampleId, li]));
  list.replaceChildren(...visible.map((sample) => shown.get(sample.id) ?? thumbnailItem(sample)));
}

function thumbnailItem(sample) {
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
  return li;
}

/// The class cards (in the project's order) and the controls that depend on the classes.
export function renderClasses() {
  const ids = new Set(state.project.classes.map((c) => c.id));
  document.querySelectorAll('[data-class-id]').forEach((card) => { if (!ids.has(card.dataset.classId)) card.remove(); });
  state.project.classes.forEach(renderClass);
  // Cards follow the project's class order.
  state.project.classes.forEach((c) => $('#classes').append(document.querySelector(`[data-class-id="${c.id}"]`)));

  const problem = trainingProblem();
  $('#train').disabled = state.training || !state.backbone || problem !== null;
  $('#train-hint').textContent = problem ?? '';
  $('#cancel').hidden = !state.training;
  $('#export-model').disabled = !state.project.model;
  $('#preview-file').disabled = !state.backbone;
  $('#preview-webcam').disabled = !state.backbone;
  for (const [key, value] of Object.entries(state.project.settings)) {
    const input = document.getElementById(key.replaceAll('_', '-'));
    if (!input || document.activeElement === input) continue;
    if (input.type === 'checkbox') input.checked = value;
    else input.value = value;
  }
  // Epochs only mean something for a hidden-layer head (AdamW); learning rate and batch size also for
  // the backbone's layers; layer epochs and augmentation only for those.
  const linear = Number(state.project.settings.hidden_units) === 0;
  const layers = Number(state.project.settings.train_layers) > 0;
  document.getElementById('epochs').disabled = linear;
  for (const id of ['learning-rate', 'batch-size']) document.getElementById(id).disabled = linear && !layers;
  for (const id of ['layer-epochs', 'augment']) document.getElementById(id).disabled = !layers;
  $('#check-labels').disabled = state.training || !state.backbone || problem !== null;
}

export function renameClass(id, name) {
  const cls = state.project.classes.find((c) => c.id === id);
  const trimmed = name.trim();
  if (trimmed === '') {
    status('A class name cannot be empty.', true);
    redraw();
    return;
  }
  if (state.project.classes.some((c) => c.id !== id && c.name === trimmed)) {
    status(`There is already a class named "${trimmed}".`, true);
    redraw();
    return;
  }
  cls.name = trimmed;
  changed({ model: true });
}

export function deleteClass(id) {
  const cls = state.project.classes.find((c) => c.id === id);
  if (cls.samples.length > 0 && !confirm(`Delete "${cls.name}" and its ${cls.samples.length} images?`)) return;
  cls.samples.forEach((s) => forgetThumbnail(s.id));
  state.project.classes = state.project.classes.filter((c) => c.id !== id);
  changed({ model: true });
}
