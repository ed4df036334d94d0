// The Wick page: classes and samples, training, evaluation, preview, persistence and files. The
// computing happens in the worker (static/worker.js) on the shared Rust library; the page's modules
// (static/app/) own the DOM, the webcam, IndexedDB and the messages. This one wires them and starts.
import { drawChart } from './app/chart.js';
import { applyPooling, applyPrecision, chooseBackbone, openModels, openProject, replaceProject, setBackbone, describeBackbone, switchPooling } from './app/files.js';
import { projectChanged, reconnect, wireKeeping } from './app/keep.js';
import { ask, listeners, post, startWorker } from './app/messages.js';
import { checkLabels, renderCheck } from './app/check.js';
import { mapChanged, wireMap, wireSampleDialog } from './app/map.js';
import { previewFile, switchPreviewCamera, togglePreviewWebcam, wireLooks } from './app/preview.js';
import { addFiles, embedAgain, renderClasses } from './app/classes.js';
import { renderEvaluation } from './app/evaluation.js';
import { $, state, newId, status, trainStatus, changed, emptyProject, onChange, onRedraw, redraw, BACKBONES } from './app/state.js';
import { holdSaves, loadSaved, releaseSaves, restoreSamples, scheduleSave } from './app/store.js';
import { cancelTraining, readSettings, showLayerCost, startTraining } from './app/training.js';

/// Every panel drawn from the state: the class cards and their controls, the evaluation, the label
/// check and the data map.
function render() {
  renderClasses();
  renderEvaluation();
  renderCheck();
  mapChanged();
}

function wire() {
  $('#add-class').addEventListener('click', () => {
    let n = state.project.classes.length + 1;
    while (state.project.classes.some((c) => c.name === `Class ${n}`)) n += 1;
    state.project.classes.push({ id: newId(), name: `Class ${n}`, samples: [] });
    changed({ model: true });
    $(`[data-class-id="${state.project.classes.at(-1).id}"] .class-name`).focus();
  });
  $('#train').addEventListener('click', startTraining);
  $('#check-labels').addEventListener('click', checkLabels);
  wireMap();
  wireSampleDialog();
  wireLooks();
  $('#cancel').addEventListener('click', () => { cancelTraining(); post({ type: 'cancel' }); trainStatus('Cancelling…'); });
  $('#advanced').addEventListener('change', async (e) => {
    if (e.target.id === 'pooling') {
      await switchPooling(e.target.value);
      return;
    }
    if (e.target.id === 'backbone') {
      await chooseBackbone(e.target.value);
      return;
    }
    try {
      state.project.settings = readSettings();
      changed();
      if (['train-layers', 'augment', 'validation-share'].includes(e.target.id)) showLayerCost();
      await applyPrecision(state.project.settings.precision);
    } catch (error) { trainStatus(error.message, true); }
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
  $('#preview-switch').addEventListener('click', switchPreviewCamera);
  // The export module loads on first use (see static/exports.js).
  const exports = () => import('./exports.js');
  $('#export-model').addEventListener('click', async () => (await exports()).exportModel($('#export-format').value));
  $('#export-format').addEventListener('change', async () => (await exports()).showExportHint());
  wireKeeping();
  $('#open-model').addEventListener('change', (e) => { if (e.target.files.length) openModels([...e.target.files]); e.target.value = ''; });
  $('#open-project').addEventListener('change', (e) => { if (e.target.files[0]) openProject(e.target.files[0]); e.target.value = ''; });
  $('#reset').addEventListener('click', async () => {
    const otherBackbone = state.builtinBackbone !== 'lite0';
    const andBackbone = otherBackbone ? ', and go back to the default backbone' : '';
    if (!confirm(`Reset: delete every class, image and the trained model from this browser${andBackbone}?`)) return;
    if (otherBackbone) {
      try {
        setBackbone(await ask({ type: 'load-backbone', backboneUrl: BACKBONES.lite0.url }));
      } catch (e) {
        status(`Could not load the default backbone: ${e.message}. Your current project is unchanged.`, true);
        return;
      }
    }
    try {
      await applyPooling(emptyProject().settings.pooling);
    } catch (e) {
      status(`Could not reset the features: ${e.message}. Your current project is unchanged.`, true);
      return;
    }
    releaseSaves();
    replaceProject(emptyProject());
    status('Started a new project.');
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length === 0 || $('main').inert) return;
    const target = state.project.classes.find((c) => c.id === state.lastFocusedClass) ?? state.project.classes[0];
    if (!target) return;
    e.preventDefault();
    addFiles(target.id, files);
  });
}

async function main() {
  if ('serviceWorker' in navigator) {
    // Offline after the first visit: the service worker keeps the app and the model.
    try {
      // A service worker that never activates (its install failed, or the browser holds it back)
      // must not hold the page up: after a few seconds the page starts without it.
      const registration = await Promise.race([
        navigator.serviceWorker.register(new URL('../sw.js', import.meta.url)).then(() => navigator.serviceWorker.ready),
        new Promise((_, reject) => setTimeout(() => reject(new Error('the service worker did not start')), 5000)),
      ]);
      // What this page loaded before the service worker was in control, its build of the library
      // among them, is kept for offline use too.
      const loaded = performance.getEntriesByType('resource').map((entry) => entry.name);
      registration.active.postMessage({ type: 'cache', urls: [location.href, ...loaded] });
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
  // Every change redraws the page, saves the project in this browser, and keeps its file.
  onRedraw(render);
  onChange(scheduleSave);
  onChange(projectChanged);
  wire();
  let saved = null;
  let loadProblem = null; // what the final status line adds, as an error
  try {
    saved = await loadSaved();
  } catch (e) {
    loadProblem = unreadable(e);
    status(loadProblem, true);
  }
  listeners.progress.push(({ received, total }) => {
    $('#backbone-progress').value = total ? received / total : 0;
    status(`Downloading the backbone… ${(received / 1e6).toFixed(1)}${total ? ` / ${(total / 1e6).toFixed(1)}` : ''} MB`);
  });
  try {
    let ready = null;
    if (saved?.customBackbone) {
      try {
        ready = await ask({ type: 'start', backboneBytes: saved.customBackbone.slice().buffer });
        setBackbone(ready, { bytes: saved.customBackbone });
      } catch (e) {
        status(`Could not load the saved backbone (${e.message}): back to the default one.`, true);
      }
    } else if (saved?.builtinBackbone === 'lite2') {
      // Chosen before: from the service worker's cache, or downloaded again.
      try {
        ready = await ask({ type: 'start', backboneUrl: BACKBONES.lite2.url });
        setBackbone(ready, { builtin: 'lite2' });
      } catch (e) {
        status(`Could not load ${BACKBONES.lite2.name} (${e.message}): back to the default backbone.`, true);
      }
    }
    if (!ready) setBackbone(await ask({ type: 'start', backboneUrl: BACKBONES.lite0.url }));
    $('#backbone-progress').value = 1;
  } catch (e) {
    status(`Could not load the backbone: ${e.message}`, true);
    return;
  }
  state.project = emptyProject();
  let restored = Boolean(saved);
  let notice = null; // what the final status line adds, not as an error
  if (saved) {
    const { backbone: _, savedAt: __, customBackbone: ___, format: ____, builtinBackbone: _____, ...rest } = saved;
    // Projects saved before features were a setting hold the last layer's.
    rest.settings = { ...rest.settings, pooling: rest.settings?.pooling ?? 'last' };
    // A project made with another backbone (one that no longer loads, or an older default) keeps
    // its images: they are embedded again by this one from their kept copies.
    const sameBackbone = saved.backbone?.sha256 === state.backbone.sha256;
    try {
      await applyPooling(rest.settings.pooling);
      const { classes, lost } = await restoreSamples(saved, sameBackbone ? state.featureDim : null);
      state.project = { ...emptyProject(), ...rest, classes };
      if (!sameBackbone) {
        status('The saved project was made with another backbone: embedding its images again with this one…');
        const { project, leftOut } = await embedAgain(state.project);
        state.project = project;
        const kept = project.classes.reduce((n, c) => n + c.samples.length, 0);
        notice = `The saved project was made with another backbone (${saved.backbone?.architecture ?? 'unknown'}): its ${kept} image${kept === 1 ? ' was' : 's were'} embedded again by this one from the copies kept of them${rest.model ? ', and its model, trained on the other backbone, was dropped: train again' : ''}.`;
        if (leftOut) loadProblem = `${notice} ${leftOut}`;
      }
      if (lost > 0) {
        loadProblem = `${loadProblem ?? notice ?? ''} ${lost} saved image${lost === 1 ? ' was' : 's were'} missing or damaged in this browser's storage and ${lost === 1 ? 'was' : 'were'} left out; the rest of the project is here.`.trim();
      }
    } catch (e) {
      restored = false;
      state.project = emptyProject();
      await applyPooling(state.project.settings.pooling).catch(() => {});
      loadProblem = unreadable(e);
    }
    if (state.project.model) {
      try {
        await ask({ type: 'load-model', bytes: state.project.model.slice().buffer, backboneBytes: state.project.modelBackbone?.slice().buffer }, []);
      } catch (e) {
        state.project.model = null;
        state.project.modelBackbone = null;
        state.project.report = null;
      }
    }
  }
  try {
    await applyPrecision(state.project.settings.precision ?? 'int8');
  } catch (e) {
    status(`Could not switch the backbone's arithmetic: ${e.message}`, true);
  }
  // The chart of the run that trained the saved model, and the state of the copy just read.
  state.history = state.project.report?.history ?? [];
  if (restored && !notice) $('#save-state').replaceChildren('Saved in this browser');
  redraw();
  drawChart();
  showLayerCost();
  await reconnect();
  // Images embedded again are saved under their new features now.
  if (notice) changed();
  status(`Backbone ready: ${describeBackbone()}. ${loadProblem ?? notice ?? 'Add images to each class, then train.'}`, loadProblem !== null);
  document.body.dataset.ready = 'true';
}

/// The saved project could not be read: this visit does not save over it, and says how to go on.
function unreadable(e) {
  holdSaves('the project saved in this browser could not be read');
  return `Could not read the project saved in this browser (${e.message}). So as not to replace it, nothing is saved in this visit: use "Save project to file" to keep new work, or Reset to replace the saved project.`;
}

main();
