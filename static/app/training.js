// Training in the worker, epoch by epoch, with the live chart; Cancel keeps the best weights.
import { wick } from './wasm.js';
import { drawChart, stepName } from './chart.js';
import { ask, listeners } from './messages.js';
import { render } from './samples.js';
import { state, trainStatus, changed } from './state.js';
import { scheduleSave, savesDone } from './store.js';

export function readSettings() {
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
  return { ...settings, precision: document.getElementById('precision').value };
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
  const samples = state.project.classes.flatMap((c, label) => c.samples.map((s) => ({ sample: s, label })));
  const features = new Float32Array(samples.length * state.featureDim);
  samples.forEach(({ sample }, i) => features.set(sample.features, i * state.featureDim));
  const labels = new Uint32Array(samples.map((s) => s.label));
  const classNames = state.project.classes.map((c) => c.name);
  state.training = true;
  state.history = [];
  drawChart();
  render();
  await savesDone();
  scheduleSave();
  trainStatus('Training…');
  const started = performance.now();
  try {
    const answer = await ask({ type: 'train', features, labels, classNames, settings: { ...settings, seed: 0 } },
      [features.buffer, labels.buffer]);
    state.project.model = answer.wick;
    state.project.report = answer.report;
    state.project.trainedOn = samples.map((s) => s.sample.id);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const v = answer.report.validation;
    const kept = stepName(answer.report.history[answer.report.best_epoch - 1]) ?? `epoch ${answer.report.best_epoch}`;
    trainStatus(`Trained in ${seconds} s (${wick.describe_stop(JSON.stringify(answer.report.stop))}; kept ${kept}).`
      + (v ? ` Validation accuracy: ${(100 * v.accuracy).toFixed(1)}%.` : ' No validation images (classes too small to hold any out).'),
    answer.report.stop.kind === 'diverged');
  } catch (e) {
    trainStatus(`Training failed: ${e.message}`, true);
  } finally {
    state.training = false;
    changed();
  }
}

listeners.epoch.push(({ stats }) => {
  state.history.push(stats);
  drawChart();
  const v = stats.val_accuracy == null ? '' : `, validation accuracy ${(100 * stats.val_accuracy).toFixed(1)}%`;
  const step = stepName(stats);
  trainStatus(`${step[0].toUpperCase()}${step.slice(1)}: loss ${stats.train_loss.toFixed(3)}${v}`);
});
