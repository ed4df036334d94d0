// "Check these": images whose labels are probably wrong, or that the model finds hardest. Every image
// is judged by heads trained (in the worker, on the kept features) without it, in five folds; the
// list ranks them by how little probability those heads leave the given label, with one click to
// move an image to the class they suggest, or to remove it.
import { ask } from './messages.js';
import { moveSample, removeSampleById, thumbnailUrl } from './project.js';
import { $, state, trainStatus, projectRows } from './state.js';

/// Images listed at most.
const LISTED = 20;

/// Runs the check on the project as it is now; the data map marks what it finds too.
export async function checkLabels() {
  const { samples, features, labels } = projectRows();
  const classes = state.project.classes.length;
  if (classes < 2 || samples.length < 2) {
    trainStatus('Checking labels needs two classes with images.', true);
    return;
  }
  $('#check-labels').disabled = true;
  $('#check-state').textContent = `Checking ${samples.length.toLocaleString('en')} labels…`;
  try {
    const answer = await ask({ type: 'check-labels', features, labels, classes }, [features.buffer, labels.buffer]);
    state.check = {
      suspects: answer.suspects.map((s) => ({ ...s, id: samples[s.row].sample.id })),
      predicted: new Map(samples.map(({ sample }, i) => [sample.id, answer.predicted[i]])),
      classIds: state.project.classes.map((c) => c.id),
    };
    $('#check-state').textContent = '';
    renderCheck();
    document.dispatchEvent(new Event('wick-checked'));
  } catch (e) {
    $('#check-state').textContent = `Could not check the labels: ${e.message}`;
  } finally {
    $('#check-labels').disabled = false;
  }
}

/// The class a sample's out-of-fold heads predict (an index into the classes as they were when
/// checked), or undefined before a check.
export function checkedClass(sampleId) {
  return state.check?.predicted.get(sampleId);
}

export function renderCheck() {
  const section = $('#check');
  const list = $('#check-list');
  if (!state.check) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  const where = new Map(state.project.classes.flatMap((c) => c.samples.map((s) => [s.id, { cls: c, sample: s }])));
  const className = (index) => state.project.classes.find((c) => c.id === state.check.classIds[index])?.name ?? '(deleted class)';
  // Images removed since, or moved to the class the check suggested, are dealt with.
  const open = (s) => where.has(s.id) && !(s.probably_mislabelled && where.get(s.id).cls.id === state.check.classIds[s.suggested]);
  const rows = state.check.suspects.filter(open).slice(0, LISTED);
  list.replaceChildren(...rows.map((s) => {
    const { cls, sample } = where.get(s.id);
    const li = document.createElement('li');
    li.dataset.sampleId = s.id;
    const img = document.createElement('img');
    img.src = thumbnailUrl(sample);
    img.alt = sample.name;
    const text = document.createElement('span');
    const suggested = className(s.suggested);
    text.textContent = s.probably_mislabelled
      ? `${sample.name}: in "${cls.name}", looks like "${suggested}" (${(100 * s.suggested_probability).toFixed(0)}% against ${(100 * s.given_probability).toFixed(0)}%)`
      : `${sample.name}: "${cls.name}" is still the likeliest (${(100 * s.given_probability).toFixed(0)}%), but hard`;
    li.append(img, text);
    const targetId = state.check.classIds[s.suggested];
    if (s.probably_mislabelled && targetId !== cls.id && state.project.classes.some((c) => c.id === targetId)) {
      const move = document.createElement('button');
      move.type = 'button';
      move.textContent = `Move to ${suggested}`;
      move.addEventListener('click', () => { moveSample(s.id, targetId); renderCheck(); });
      li.append(move);
    }
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${sample.name}`);
    remove.addEventListener('click', () => { removeSampleById(s.id); renderCheck(); });
    li.append(remove);
    return li;
  }));
  if (rows.length === 0) list.textContent = 'Nothing to check.';
}
