// The page's state, the one funnel every change goes through (its subscribers redraw and save:
// app.js wires them), and the status lines. Imports nothing of the page's but the worker's
// messages.
import { post } from './messages.js';

/// The backbones this site serves: Lite0, the first load's, and Lite2, downloaded only when chosen
/// (both kept for offline use by the service worker).
export const BACKBONES = {
  lite0: { url: new URL('../efficientnet-lite0-int8.safetensors', import.meta.url).href, name: 'EfficientNet-Lite0' },
  lite2: { url: new URL('../efficientnet-lite2-int8.safetensors', import.meta.url).href, name: 'EfficientNet-Lite2' },
};
export const $ = (selector, root = document) => root.querySelector(selector);
export const DEFAULT_SETTINGS = {
  epochs: 50, learning_rate: 0.001, batch_size: 16, hidden_units: 0, validation_share: 0.15, precision: 'int8', pooling: 'stages', train_layers: 0, layer_epochs: 10, augment: true,
};

export const state = {
  // { classes: [{ id, name, samples: [{ id, name, thumbnail: Uint8Array, features: Float32Array,
  //   source: Uint8Array (the kept copy its views are made from) }] }], settings,
  //   model: Uint8Array | null, modelBackbone: Uint8Array | null (the backbone file the model runs on,
  //   when the backbone's last layers trained), report: object | null, trainedOn: [sample ids],
//   changedAt: ms, file: the project file it is kept in ({ name, savedAt: ms, handle: a
//   FileSystemFileHandle where the page writes to it itself } | null) }
  project: null,
  backbone: null, // { id, architecture, sha256, own_classes, source, precision, pooling, dims: { last, stages } }
  featureDim: 0,
  // A backbone file the user opened (e.g. fine-tuned by `wick cifar10 --mode finetune`), kept with the
  // project so a reload comes back to it; null for the default backbone.
  customBackbone: null,
  // Which of the site's BACKBONES the page runs ('lite0', 'lite2'), kept with the project; null
  // while a backbone file the user opened runs.
  builtinBackbone: 'lite0',
  training: false,
  history: [], // the training chart's epochs
  lastFocusedClass: null, // where a paste goes
  // The last label check: { suspects, predicted: Map(sample id → class index), classIds }.
  check: null,
};

let nextId = 1;
export const newId = () => `s${Date.now().toString(36)}${(nextId++).toString(36)}`;

export function emptyProject() {
  return {
    classes: [{ id: newId(), name: 'Class 1', samples: [] }, { id: newId(), name: 'Class 2', samples: [] }],
    settings: { ...DEFAULT_SETTINGS },
    model: null,
    modelBackbone: null,
    report: null,
    trainedOn: [],
    changedAt: Date.now(),
    file: null,
  };
}

/// Every image of the project with its class index, class by class, with their features as one
/// row-major block and their labels: what the worker's training, label check and map take.
export function projectRows() {
  const samples = state.project.classes.flatMap((c, label) => c.samples.map((sample) => ({ sample, label })));
  const features = new Float32Array(samples.length * state.featureDim);
  samples.forEach(({ sample }, i) => features.set(sample.features, i * state.featureDim));
  return { samples, features, labels: new Uint32Array(samples.map((s) => s.label)) };
}

// ---- status ------------------------------------------------------------------------------------
export function status(text, isError = false) {
  const el = $('#status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

export function trainStatus(text, isError = false) {
  const el = $('#train-status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

const redrawers = [];
const subscribers = [];
/// `f()` draws the page from the state: on every `redraw()` and every change.
export const onRedraw = (f) => redrawers.push(f);
/// `f()` runs after every change (saving, keeping the file), in the order subscribed.
export const onChange = (f) => subscribers.push(f);

/// Draws the page again without a change to the project (a status of its own changed).
export const redraw = () => redrawers.forEach((f) => f());

/// Every change goes through here: it stamps the project, redraws, and tells the subscribers.
export function changed({ model = false } = {}) {
  if (model && state.project.model) {
    state.project.model = null;
    state.project.modelBackbone = null;
    state.project.report = null;
    post({ type: 'unload-model' });
  }
  state.project.changedAt = Date.now();
  redraw();
  subscribers.forEach((f) => f());
}
