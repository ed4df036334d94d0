// Files in and out: the .wick, the project file, a backbone file; and replacing the project.
import { wick } from './wasm.js';
import { drawChart } from './chart.js';
import { ask, post } from './messages.js';
import { embedAgain, stillReading } from './classes.js';
import { thumbnailUrls } from './project.js';
import { $, state, newId, status, changed, DEFAULT_SETTINGS, projectRows, BACKBONES } from './state.js';

const { encode_project, decode_project, project_pooling, wick_format, backbone_source } = wick;

export function downloadBytes(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function projectMeta() {
  // The report names validation images by their position in the list trained on; the file keeps that
  // list as positions in its own sample order.
  const position = new Map(state.project.classes.flatMap((c) => c.samples).map((s, i) => [s.id, i]));
  return {
    backbone: state.backbone,
    classes: state.project.classes.map((c) => ({
      name: c.name,
      samples: c.samples.map((s) => ({ name: s.name, thumbnail_bytes: s.thumbnail.length, source_bytes: s.source?.length ?? 0 })),
    })),
    settings: { ...state.project.settings, report: state.project.report, trained_on: state.project.trainedOn.map((id) => position.get(id) ?? -1) },
  };
}

/// The whole project as a `.wickproject` file's bytes (throws what the library refuses).
export function projectBytes() {
  const rows = projectRows();
  const { features } = rows;
  const samples = rows.samples.map(({ sample }) => sample);
  const concat = (parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    parts.forEach((p) => { out.set(p, offset); offset += p.length; });
    return out;
  };
  const thumbnails = concat(samples.map((s) => s.thumbnail));
  const sources = concat(samples.map((s) => s.source ?? new Uint8Array(0)));
  return encode_project(JSON.stringify(projectMeta()), features, thumbnails, sources,
    state.project.model ?? undefined, state.project.modelBackbone ?? undefined, state.featureDim);
}

/// Replaces the project with a file's, only once the whole file has been read and checked.
export async function openProject(file) {
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const pooling = project_pooling(bytes);
    const dim = state.backbone.dims[pooling];
    const parts = decode_project(bytes, state.backbone.sha256, dim);
    const meta = JSON.parse(parts.meta);
    const features = parts.features;
    const thumbnails = parts.thumbnails;
    const sources = parts.sources;
    const model = parts.model ?? null;
    const modelBackbone = parts.model_backbone ?? null;
    parts.free();
    let row = 0;
    let offset = 0;
    let sourceOffset = 0;
    const classes = meta.classes.map((c) => ({
      id: newId(),
      name: c.name,
      samples: c.samples.map((s) => {
        const sample = {
          id: newId(),
          name: s.name,
          thumbnail: thumbnails.slice(offset, offset + s.thumbnail_bytes),
          features: features.slice(row * dim, (row + 1) * dim),
          source: s.source_bytes ? sources.slice(sourceOffset, sourceOffset + s.source_bytes) : undefined,
        };
        offset += s.thumbnail_bytes;
        sourceOffset += s.source_bytes ?? 0;
        row += 1;
        return sample;
      }),
    }));
    const { report = null, trained_on: trainedOnIndices = [], ...settings } = meta.settings ?? {};
    await applyPooling(pooling);
    if (model) await ask({ type: 'load-model', bytes: model.slice().buffer, backboneBytes: modelBackbone?.slice().buffer }, []);
    const ids = classes.flatMap((c) => c.samples.map((s) => s.id));
    replaceProject({
      classes,
      settings: { ...DEFAULT_SETTINGS, ...settings, pooling },
      model,
      modelBackbone: model ? modelBackbone : null,
      report: model ? report : null,
      trainedOn: Array.isArray(trainedOnIndices) ? trainedOnIndices.map((i) => ids[i] ?? null) : [],
    });
    // The project is the file's as it stands: saved to a file, not yet kept in one by the page.
    state.project.file = { name: file.name, savedAt: Date.now() };
    await applyPrecision(state.project.settings.precision ?? 'int8');
    status(`Opened ${file.name}: ${classes.length} classes, ${ids.length} images${model ? ', with its trained model' : ''}.`);
  } catch (e) {
    await applyPooling(state.project.settings.pooling).catch(() => {});
    status(`Could not open ${file.name}: ${e.message}. Your current project is unchanged.`, true);
  }
}

/// "Open model…": a `.wick` model (from the CLI or another browser), a backbone file (e.g. one
/// that `wick cifar10 --mode finetune` fine-tuned), or a backbone and its `.wick` together. A
/// backbone whose last layers trained from this page's backbone (the page's Export model, `wick
/// train --train-layers`) comes with its `.wick` as the model: the project stays.
export async function openModels(files) {
  const items = await Promise.all(files.map(async (file) => ({ file, bytes: new Uint8Array(await file.arrayBuffer()) })));
  const backbones = items.filter((item) => wick_format(item.bytes) === 'wick-backbone');
  const models = items.filter((item) => !backbones.includes(item));
  if (backbones.length > 1 || models.length > 1) {
    status('Open one backbone file, one .wick model, or one of each. Your current project is unchanged.', true);
    return;
  }
  if (backbones.length === 1 && models.length === 1 && backbone_source(backbones[0].bytes) === state.backbone.sha256) {
    await openModel(models[0], backbones[0].bytes);
    return;
  }
  if (backbones.length === 1 && !(await switchBackbone(backbones[0]))) return;
  if (models.length === 1) await openModel(models[0]);
}

/// Makes the worker's answer to a backbone load the page's backbone: a file the user opened
/// (`bytes`), or else one of the site's (`builtin`, a key of BACKBONES).
export function setBackbone(ready, { bytes = null, builtin = 'lite0' } = {}) {
  state.backbone = ready.backbone;
  state.featureDim = ready.dim;
  state.customBackbone = bytes;
  state.builtinBackbone = bytes ? null : builtin;
  $('#backbone-name').textContent = bytes ? describeBackbone() : `${BACKBONES[builtin].name} (ImageNet)`;
  $('#backbone option[value="file"]').hidden = !bytes;
  $('#backbone').value = bytes ? 'file' : builtin;
  $('#precision-name').textContent = ready.backbone.precision;
  $('#simd-name').textContent = ready.simd === 'relaxed' ? 'WebAssembly relaxed SIMD' : 'WebAssembly SIMD';
  $('#threads-name').textContent = ready.build === 'threads'
    ? `${ready.threads} threads${ready.sharedMaximum < 4 * 2 ** 30 ? ` (up to ${ready.sharedMaximum / 2 ** 20} MiB of memory: this device reserves no more to share)` : ''}`
    : `one thread because ${ready.oneThreadBecause}`;
}

/// Makes the images the worker embeds from now on give `pooling`'s features ('stages' or 'last'),
/// and `state.featureDim` their length.
export async function applyPooling(pooling) {
  if (state.backbone?.pooling === pooling) return;
  const answer = await ask({ type: 'set-pooling', pooling });
  state.backbone = answer.backbone;
  state.featureDim = answer.dim;
}

/// Makes the worker's backbone multiply in `precision` ('int8' or 'f32'), as the footer then says.
export async function applyPrecision(precision) {
  if (state.backbone?.precision === precision) return;
  const answer = await ask({ type: 'set-precision', precision });
  state.backbone = answer.backbone;
  $('#precision-name').textContent = state.backbone.precision;
}

export const describeBackbone = () => state.builtinBackbone ? BACKBONES[state.builtinBackbone].name
  : state.backbone.own_classes === 1000 ? state.backbone.architecture
  : `${state.backbone.architecture}, ${state.backbone.source}, with ${state.backbone.own_classes} classes of its own`;

const POOLING_NAMES = { stages: 'last stages pooled', last: 'last layer only' };

/// Makes the project's features `pooling`'s ('stages' or 'last') ([`embedWith`]).
export async function switchPooling(pooling) {
  const before = state.project.settings.pooling;
  if (pooling === before) return;
  const changed = await embedWith({
    question: `Describe images by "${POOLING_NAMES[pooling]}"?`,
    action: 'change the features',
    done: () => `Features: ${POOLING_NAMES[pooling]}.`,
    by: '',
    announce: false,
    apply: async () => {
      await applyPooling(pooling);
      state.project.settings.pooling = pooling;
    },
  });
  if (!changed) $('#pooling').value = before;
}

/// Makes an opened backbone file the page's backbone ([`embedWith`]).
export const switchBackbone = ({ file, bytes }) => embedWith({
  question: `Switch to the backbone in ${file.name}?`,
  action: `open ${file.name}`,
  done: () => `Opened backbone ${file.name}: ${describeBackbone()}.`,
  by: ' by it',
  announce: true,
  apply: () => loadBackbone({ backboneBytes: bytes.slice().buffer }, { bytes }),
});

/// Makes one of the site's backbones (a key of BACKBONES) the page's: Lite2 is downloaded the first
/// time, with progress, and kept for offline use ([`embedWith`]).
export async function chooseBackbone(builtin) {
  const before = state.customBackbone ? 'file' : state.builtinBackbone;
  if (builtin === before) return;
  const { name, url } = BACKBONES[builtin];
  const changed = await embedWith({
    question: `Switch to ${name}${builtin === 'lite2' ? ' (a 6.5 MB download the first time)' : ''}?`,
    action: `switch to ${name}`,
    done: () => `Backbone: ${name}.`,
    by: ' by it',
    announce: true,
    apply: () => loadBackbone({ backboneUrl: url }, { builtin }),
  });
  if (!changed) $('#backbone').value = before;
}

/// The worker's backbone from `request` (a file's bytes, or a URL to download), the page's from
/// then on, giving the project's features.
async function loadBackbone(request, loaded) {
  setBackbone(await ask({ type: 'load-backbone', ...request }, []), loaded);
  await applyPooling(state.project.settings.pooling);
  $('#backbone-progress').value = 1;
}

/// Changes what the project's features are (`apply`: a new backbone, or another pooling). The
/// project keeps its classes and images: they are embedded again from the copies kept of them, and
/// the model, which the old features trained, is dropped (after asking, when there is one or there
/// are images). `done` says what changed: while the images are embedded too where `announce`
/// (a new backbone), after they are in any case. Resolves with whether the change was made.
async function embedWith({ question, action, done, by, announce, apply }) {
  if (stillReading()) {
    // The images in flight would be embedded one way or the other, depending on timing.
    status(`Images are still being read: ${action} once they are added. Your current project is unchanged.`, true);
    return false;
  }
  const images = state.project.classes.reduce((n, c) => n + c.samples.length, 0);
  if ((images > 0 || state.project.model) && !confirm(`${question} `
    + `The project's ${images} image${images === 1 ? '' : 's'} will be embedded again${by}${state.project.model ? ', and the trained model dropped (use "Export model" first to keep it)' : ''}.`)) return false;
  try {
    await apply();
  } catch (e) {
    status(`Could not ${action}: ${e.message}. Your current project is unchanged.`, true);
    return false;
  }
  if (state.project.model) post({ type: 'unload-model' });
  const embedding = images > 0 && 'Embedding the project\'s images again…';
  if (announce || embedding) status([announce && done(), embedding].filter(Boolean).join(' '));
  const { project, leftOut } = await embedAgain(state.project);
  replaceProject(project);
  status(`${done()}${images > 0 ? ` The project's images were embedded again${by}. ${leftOut}` : ''}`.trim(), leftOut !== '');
  return true;
}

/// Loads a `.wick` model (from the CLI or another browser), running on `backboneBytes` when given;
/// its classes become the project's labels when the project has none of its own yet.
export async function openModel({ file, bytes }, backboneBytes = null) {
  try {
    const { meta } = await ask({ type: 'load-model', bytes: bytes.slice().buffer, backboneBytes: backboneBytes?.slice().buffer }, []);
    const names = state.project.classes.map((c) => c.name);
    const sameClasses = names.length === meta.labels.length && names.every((n, i) => n === meta.labels[i]);
    if (!sameClasses) {
      const hasImages = state.project.classes.some((c) => c.samples.length > 0);
      if (hasImages && !confirm(`This model's classes (${meta.labels.join(', ')}) differ from the project's. Replace the project's classes and images with the model's classes?`)) {
        // Put back the model the project had (or none).
        if (state.project.model) await ask({ type: 'load-model', bytes: state.project.model.slice().buffer, backboneBytes: state.project.modelBackbone?.slice().buffer }, []);
        else post({ type: 'unload-model' });
        return;
      }
      state.project.classes = meta.labels.map((name) => ({ id: newId(), name, samples: [] }));
    }
    state.project.model = bytes;
    state.project.modelBackbone = backboneBytes;
    state.project.report = null;
    state.project.trainedOn = [];
    changed();
    const v = meta.validation;
    status(`Opened model ${file.name}: ${meta.labels.length} classes` + (v ? `, ${(100 * v.accuracy).toFixed(1)}% validation accuracy when trained.` : '.'));
  } catch (e) {
    status(`Could not open ${file.name}: ${e.message}. Your current project is unchanged.`, true);
  }
}

export function replaceProject(next) {
  thumbnailUrls.forEach((url) => URL.revokeObjectURL(url));
  thumbnailUrls.clear();
  document.querySelectorAll('[data-class-id]').forEach((card) => card.remove());
  state.project = next;
  state.check = null;
  state.history = next.report?.history ?? [];
  drawChart();
  changed();
}
