// Training in the worker, epoch by epoch, with the live chart; Cancel keeps the best weights. With
// "Layers to train", each image's input to those layers is computed once per view, kept in
// IndexedDB, and only the trained layers run in each epoch.
import { wick } from './wasm.js';
import { drawChart, stepName } from './chart.js';
import { checkLabels } from './check.js';
import { ask, listeners } from './messages.js';
import { $, state, trainStatus, changed, projectRows, redraw } from './state.js';
import { getActivations, putActivations, pruneActivations, scheduleSave, savesDone } from './store.js';

/// Views of each training image when augmenting: plain, mirrored, and two crops with colour jitter.
const AUGMENTED_VIEWS = wick.augmented_views();
/// The seed of every run's split, initialisation and shuffling: the same images and settings give
/// the same model.
const SEED = 0;
/// Images per request for their activations: one per thread of the worker's pool, twice over.
const ACTIVATION_BATCH = Math.max(4, 2 * (navigator.hardwareConcurrency || 1));

export function readSettings() {
  const number = (id) => Number(document.getElementById(id).value);
  const settings = {
    epochs: Math.round(number('epochs')),
    learning_rate: number('learning-rate'),
    batch_size: Math.round(number('batch-size')),
    hidden_units: Math.round(number('hidden-units')),
    validation_share: number('validation-share'),
    train_layers: Math.round(number('train-layers')),
    layer_epochs: Math.round(number('layer-epochs')),
  };
  const bad = Object.entries(settings).find(([, v]) => !Number.isFinite(v) || v < 0);
  if (bad) throw new Error(`the setting ${bad[0].replaceAll('_', ' ')} must be a number of at least 0`);
  if (settings.epochs < 1 || settings.batch_size < 1) throw new Error('epochs and batch size must be at least 1');
  if (settings.layer_epochs < 1) throw new Error('layer epochs must be at least 1');
  if (!(settings.learning_rate > 0)) throw new Error('the learning rate must be above 0');
  return { ...settings, augment: document.getElementById('augment').checked, precision: document.getElementById('precision').value, pooling: document.getElementById('pooling').value };
}

/// A sample's views are drawn from a seed of its own (FNV-1a of its id), so a cached view stays valid.
function viewSeed(id) {
  let hash = 0x811c9dc5;
  for (const ch of id) hash = Math.imul(hash ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return hash;
}

const activationPrefix = (depth) => `${state.backbone.sha256}|${state.backbone.precision}|d${depth}|`;

let preparing = null; // { cancelled } while activations are computed
/// How long each of the current run's layer epochs took, in seconds (the worker times them).
let layerEpochSeconds = [];

/// Cancel pressed while the layers' inputs were being prepared, after `done` images.
class Cancelled extends Error {
  constructor(done) {
    super('cancelled');
    this.done = done;
  }
}

/// Every sample's activations at the cut, from the cache or computed now: training samples in
/// `views` views, validation samples (the library's split) in their plain view. Resolves with the
/// rows sample after sample, their shape and the rows per sample.
async function prepareActivations(samples, labels, settings) {
  const missing = samples.filter(({ sample }) => !sample.source);
  if (missing.length > 0) {
    throw new Error(`${missing.length} image${missing.length === 1 ? ' has' : 's have'} no kept copy to train the backbone's layers on `
      + `(added before this version, or from an older project file), e.g. "${missing[0].sample.name}": add ${missing.length === 1 ? 'it' : 'them'} again, or train the head only`);
  }
  const validation = new Set(wick.validation_split(labels, JSON.stringify(state.project.classes.map((c) => c.name)), settings.validation_share, BigInt(SEED)));
  const views = settings.augment ? AUGMENTED_VIEWS : 1;
  const prefix = activationPrefix(settings.train_layers);
  const wanted = samples.map(({ sample }, i) => {
    const count = validation.has(i) ? 1 : views;
    return { sample, count, keys: Array.from({ length: count }, (_, v) => `${prefix}${sample.id}|${v}`) };
  });
  const cached = await getActivations(wanted.flatMap((w) => w.keys));
  // What storage gives back is checked like a file: a row of the wrong length, or of another shape
  // than the rest, is computed again.
  const sameShape = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  const wellFormed = (row) => Array.isArray(row?.shape) && row.bits instanceof Uint16Array
    && row.bits.length === row.shape.reduce((a, b) => a * b, 1);
  let cachedShape = null;
  for (const [key, row] of cached) {
    if (wellFormed(row) && (cachedShape === null || sameShape(row.shape, cachedShape))) cachedShape ??= row.shape;
    else cached.delete(key);
  }
  const todo = wanted.filter((w) => w.keys.some((k) => !cached.has(k)));
  const started = performance.now();
  for (let done = 0; done < todo.length;) {
    if (preparing.cancelled) throw new Cancelled(done);
    // One request per view count (training and validation images differ).
    const count = todo[done].count;
    const batch = [];
    while (done < todo.length && batch.length < ACTIVATION_BATCH && todo[done].count === count) batch.push(todo[done++]);
    const answer = await ask({
      type: 'activations',
      sources: batch.map((w) => w.sample.source.slice().buffer),
      seeds: batch.map((w) => viewSeed(w.sample.id)),
      depth: settings.train_layers,
      views: count,
    }).catch((e) => {
      // The library names a copy that does not decode by its place in the batch: name the image.
      const bad = e.message.match(/^image (\d+)'s kept copy: (.*)$/);
      throw bad ? new Error(`the kept copy of "${batch[Number(bad[1])].sample.name}" cannot be read (${bad[2]}): remove that image and add it again`) : e;
    });
    const rowLength = answer.shape.reduce((a, b) => a * b, 1);
    const entries = batch.flatMap((w, i) => w.keys.map((key, v) => {
      const start = (i * count + v) * rowLength;
      return [key, { shape: answer.shape, bits: answer.bits.slice(start, start + rowLength) }];
    }));
    entries.forEach(([key, value]) => cached.set(key, value));
    await putActivations(entries);
    const rate = done / ((performance.now() - started) / 1000);
    trainStatus(`Preparing the layers' inputs (once per image and view, then kept): ${done} / ${todo.length} images, ${rate.toFixed(1)} images/s`);
  }
  const shape = cached.get(wanted[0].keys[0]).shape;
  const rowLength = shape.reduce((a, b) => a * b, 1);
  const rows = new Uint16Array(wanted.reduce((n, w) => n + w.count, 0) * rowLength);
  let offset = 0;
  for (const w of wanted) {
    for (const key of w.keys) {
      rows.set(cached.get(key).bits, offset);
      offset += rowLength;
    }
  }
  // Cached rows of images no longer in the project, or of another backbone, go.
  const live = new Set(state.project.classes.flatMap((c) => c.samples.map((s) => s.id)));
  pruneActivations((key) => key.startsWith(`${state.backbone.sha256}|`) && live.has(key.split('|')[3])).catch(() => {});
  return { rows, shape, rowsPerSample: Uint32Array.from(wanted.map((w) => w.count)) };
}

/// Shows what the chosen "Layers to train" costs on this device, measured by the worker now.
export async function showLayerCost() {
  const depth = Number($('#train-layers').value);
  const hint = $('#layers-cost');
  if (depth === 0 || !state.backbone) {
    hint.textContent = '';
    return;
  }
  hint.textContent = 'Measuring what this costs on this device…';
  try {
    const images = state.project.classes.reduce((n, c) => n + c.samples.length, 0);
    const share = Number($('#validation-share').value) || 0;
    const trainImages = Math.round(images * (1 - share));
    // Measured at the batch size training will use (up to 32: larger ones cost about the same per
    // image, and the measure would take longer).
    const batch = Math.max(1, Math.min(32, Math.round(Number($('#batch-size').value)) || 32, trainImages));
    const { cost } = await ask({ type: 'layer-cost', depth, batch });
    if (Number($('#train-layers').value) !== depth) return; // changed meanwhile
    const views = $('#augment').checked ? AUGMENTED_VIEWS : 1;
    const viewsToPrepare = trainImages * views + (images - trainImages);
    // An epoch: a training step per training image, a forward pass per validation image.
    const epoch = (trainImages * cost.step_ms_per_image + (images - trainImages) * cost.forward_ms_per_image) / 1000;
    const prepare = (viewsToPrepare * cost.prepare_ms_per_view) / 1000;
    hint.textContent = `Measured here: about ${epoch.toFixed(epoch < 1 ? 2 : 1)} s per epoch for ${trainImages} training images `
      + `(${cost.step_ms_per_image.toFixed(0)} ms each), after preparing their inputs once: about ${prepare.toFixed(0)} s for `
      + `${viewsToPrepare} views, ${((viewsToPrepare * cost.bytes_per_view) / 1e6).toFixed(1)} MB kept in this browser `
      + `(${(cost.bytes_per_view / 1000).toFixed(0)} KB per view). Head only takes well under a second per epoch.`;
  } catch (e) {
    hint.textContent = `Could not measure the cost: ${e.message}`;
  }
}

/// Cancel: stops preparing the layers' inputs, or training after its current epoch.
export function cancelTraining() {
  if (preparing) preparing.cancelled = true;
}

export async function startTraining() {
  let settings;
  try {
    settings = readSettings();
  } catch (e) {
    trainStatus(`Cannot train: ${e.message}`, true);
    return;
  }
  state.project.settings = settings;
  const { samples, features, labels } = projectRows();
  const classNames = state.project.classes.map((c) => c.name);
  state.training = true;
  state.history = [];
  layerEpochSeconds = [];
  drawChart();
  redraw();
  await savesDone();
  scheduleSave();
  trainStatus('Training…');
  const started = performance.now();
  let trained = false;
  try {
    let message = { type: 'train', features, labels, classNames, settings: { ...settings, seed: SEED } };
    const transfer = [features.buffer, labels.buffer];
    if (settings.train_layers > 0) {
      preparing = { cancelled: false };
      trainStatus('Preparing the layers\' inputs…');
      const { rows, shape, rowsPerSample } = await prepareActivations(samples, labels, settings);
      preparing = null;
      message = { ...message, activations: rows, shape, rowsPerSample };
      transfer.push(rows.buffer, rowsPerSample.buffer);
      trainStatus('Training…');
    }
    const answer = await ask(message, transfer);
    state.project.model = answer.wick;
    state.project.modelBackbone = answer.backbone;
    state.project.report = answer.report;
    state.project.trainedOn = samples.map((s) => s.sample.id);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const v = answer.report.validation;
    const keptStep = answer.report.history[answer.report.best_epoch - 1];
    const kept = stepName(keptStep) ?? `epoch ${answer.report.best_epoch}`;
    const headKept = settings.train_layers > 0 && keptStep?.regularization != null;
    const perEpoch = layerEpochSeconds.length
      ? ` The layers' ${layerEpochSeconds.length} epoch${layerEpochSeconds.length === 1 ? '' : 's'} took ${(layerEpochSeconds.reduce((a, b) => a + b, 0) / layerEpochSeconds.length).toFixed(2)} s each.`
      : '';
    trainStatus(`Trained in ${seconds} s (${wick.describe_stop(JSON.stringify(answer.report.stop))}; kept ${kept}).${perEpoch}`
      + (v ? ` Validation accuracy: ${(100 * v.accuracy).toFixed(1)}%.` : ' No validation images (classes too small to hold any out).')
      + (headKept ? ' The layers\' epochs did not beat the head alone on the validation images, so the head fit is kept and the layers are as pretrained.' : ''),
    answer.report.stop.kind === 'diverged');
    trained = true;
  } catch (e) {
    // The chart goes back to the run that made the model, which is unchanged.
    state.history = state.project.report?.history ?? [];
    drawChart();
    if (e instanceof Cancelled) {
      trainStatus(`Cancelled while preparing the layers' inputs; the ${e.done} image${e.done === 1 ? '' : 's'} prepared so far are kept for next time. The model is as it was.`);
    } else {
      trainStatus(`Training failed: ${e.message}`, true);
    }
  } finally {
    preparing = null;
    state.training = false;
    changed();
  }
  // The label check comes with every model: it costs a few head fits on the same features.
  if (trained) await checkLabels();
}

listeners.epoch.push(({ stats, seconds }) => {
  state.history.push(stats);
  drawChart();
  const v = stats.val_accuracy == null ? '' : `, validation accuracy ${(100 * stats.val_accuracy).toFixed(1)}%`;
  const step = stepName(stats);
  // The layers' epochs (the head fit's steps take milliseconds): how long each took, to set
  // against the estimate shown before training.
  const layers = state.project.settings.train_layers > 0 && stats.regularization == null;
  if (layers) layerEpochSeconds.push(seconds);
  trainStatus(`${step[0].toUpperCase()}${step.slice(1)}: loss ${stats.train_loss.toFixed(3)}${v}${layers ? ` (${seconds.toFixed(2)} s)` : ''}`);
});
