// The validation report: accuracy per class, the confusion matrix, the misclassified images.
import { thumbnailUrl } from './project.js';
import { $, state } from './state.js';

/// Misclassified images shown at most (a large project can have thousands).
const SHOWN = 60;
let rendered = null; // the report drawn last: redraws while images are added skip the rest

export function renderEvaluation() {
  const section = $('#evaluation');
  const v = state.project.report?.validation;
  section.hidden = !v;
  if (!v || rendered === state.project.report) return;
  rendered = state.project.report;
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
  const byId = new Map(state.project.classes.flatMap((c) => c.samples.map((s) => [s.id, s])));
  for (const m of v.misclassified.slice(0, SHOWN)) {
    const sample = byId.get(state.project.trainedOn[Number(m.name)]);
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
  if (v.misclassified.length > SHOWN) {
    const more = document.createElement('p');
    more.className = 'hint';
    more.textContent = `and ${v.misclassified.length - SHOWN} more`;
    wrong.append(more);
  }
}
