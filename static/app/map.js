// The map of the data: every image's features projected to 2-D (PCA, computed by the library in the
// worker), one dot per image coloured by class on a canvas. Hovering a dot shows its thumbnail;
// clicking opens the image with its class, to move it to another class or remove it. Images that
// the label check's heads put in another class are ringed.
import { checkedClass } from './check.js';
import { ask } from './messages.js';
import { moveSample, removeSampleById, thumbnailUrl } from './project.js';
import { $, state, projectRows } from './state.js';

const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
export const classColour = (index) => COLOURS[index % COLOURS.length];
const RADIUS = 3;
/// A redraw waits this long after the last change (images arriving by the hundred).
const SETTLE_MS = 1000;

let dots = []; // { x, y, sample, classIndex } in canvas pixels
let pending = null;
let drawing = false;

export function wireMap() {
  const canvas = $('#feature-map');
  $('#map-panel').addEventListener('toggle', () => { if ($('#map-panel').open) drawMap(); });
  canvas.addEventListener('mousemove', (e) => hover(nearest(e)));
  canvas.addEventListener('mouseleave', () => hover(null));
  canvas.addEventListener('click', (e) => { const dot = nearest(e); if (dot) openSample(dot.sample.id); });
  document.addEventListener('wick-checked', () => paint());
  $('#sample-dialog').addEventListener('close', () => { $('#sample-dialog').dataset.sampleId = ''; });
}

/// Called on every change: redraws (settled) while the map is open.
export function mapChanged() {
  if (!$('#map-panel').open) return;
  clearTimeout(pending);
  pending = setTimeout(drawMap, SETTLE_MS);
}

async function drawMap() {
  if (drawing) {
    mapChanged();
    return;
  }
  const { samples, features } = projectRows();
  const canvas = $('#feature-map');
  if (samples.length === 0) {
    dots = [];
    paint();
    return;
  }
  drawing = true;
  try {
    const { points } = await ask({ type: 'project-map', features, dim: state.featureDim }, [features.buffer]);
    const xs = samples.map((_, i) => points[2 * i]);
    const ys = samples.map((_, i) => points[2 * i + 1]);
    const span = (v) => { const lo = Math.min(...v); const hi = Math.max(...v); return [lo, Math.max(hi - lo, 1e-6)]; };
    const [[x0, dx], [y0, dy]] = [span(xs), span(ys)];
    const pad = 8;
    dots = samples.map(({ sample, label }, i) => ({
      sample,
      classIndex: label,
      x: pad + ((xs[i] - x0) / dx) * (canvas.width - 2 * pad),
      y: canvas.height - pad - ((ys[i] - y0) / dy) * (canvas.height - 2 * pad),
    }));
    paint();
  } catch (e) {
    $('#map-state').textContent = `Could not draw the map: ${e.message}`;
  } finally {
    drawing = false;
  }
}

function paint() {
  const canvas = $('#feature-map');
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  let ringed = 0;
  for (const dot of dots) {
    g.fillStyle = classColour(dot.classIndex);
    g.beginPath();
    g.arc(dot.x, dot.y, RADIUS, 0, 2 * Math.PI);
    g.fill();
    const predicted = checkedClass(dot.sample.id);
    const predictedId = predicted === undefined ? undefined : state.check.classIds[predicted];
    if (predictedId !== undefined && predictedId !== state.project.classes[dot.classIndex].id) {
      ringed += 1;
      g.strokeStyle = '#000';
      g.lineWidth = 1.5;
      g.beginPath();
      g.arc(dot.x, dot.y, RADIUS + 2, 0, 2 * Math.PI);
      g.stroke();
    }
  }
  canvas.dataset.dots = String(dots.length);
  canvas.dataset.ringed = String(ringed);
  const legend = $('#map-legend');
  legend.replaceChildren(...state.project.classes.map((c, i) => {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = classColour(i);
    item.append(swatch, document.createTextNode(c.name));
    return item;
  }));
  $('#map-state').textContent = dots.length === 0 ? 'Add images to see them here.'
    : `${dots.length.toLocaleString('en')} images${ringed ? `; ${ringed} ringed: the label check's heads put them in another class` : ''}. Hover a dot to see the image, click to open it.`;
}

function nearest(e) {
  const canvas = $('#feature-map');
  const box = canvas.getBoundingClientRect();
  const x = ((e.clientX - box.left) * canvas.width) / box.width;
  const y = ((e.clientY - box.top) * canvas.height) / box.height;
  let best = null;
  let bestDistance = (3 * RADIUS) ** 2;
  for (const dot of dots) {
    const d = (dot.x - x) ** 2 + (dot.y - y) ** 2;
    if (d < bestDistance) [best, bestDistance] = [dot, d];
  }
  return best;
}

function hover(dot) {
  const tip = $('#map-tip');
  tip.hidden = !dot;
  if (!dot) return;
  const canvas = $('#feature-map');
  $('img', tip).src = thumbnailUrl(dot.sample);
  $('img', tip).alt = dot.sample.name;
  $('span', tip).textContent = `${dot.sample.name} (${state.project.classes[dot.classIndex]?.name ?? ''})`;
  tip.style.left = `${(dot.x / canvas.width) * canvas.clientWidth + 10}px`;
  tip.style.top = `${(dot.y / canvas.height) * canvas.clientHeight + 10}px`;
}

/// The image with its class, to move it or remove it.
export function openSample(sampleId) {
  const cls = state.project.classes.find((c) => c.samples.some((s) => s.id === sampleId));
  if (!cls) return;
  const sample = cls.samples.find((s) => s.id === sampleId);
  const dialog = $('#sample-dialog');
  dialog.dataset.sampleId = sampleId;
  const img = $('img', dialog);
  if (img.src.startsWith('blob:') && img.dataset.own === 'true') URL.revokeObjectURL(img.src);
  // The kept copy (up to 256 px) when there is one, else the thumbnail.
  if (sample.source) {
    img.src = URL.createObjectURL(new Blob([sample.source]));
    img.dataset.own = 'true';
  } else {
    img.src = thumbnailUrl(sample);
    img.dataset.own = 'false';
  }
  img.alt = sample.name;
  $('#sample-name').textContent = sample.name;
  const select = $('#sample-class');
  select.replaceChildren(...state.project.classes.map((c) => new Option(c.name, c.id, false, c.id === cls.id)));
  if (!dialog.open) dialog.showModal();
}

export function wireSampleDialog() {
  const dialog = $('#sample-dialog');
  $('#sample-move').addEventListener('click', () => {
    moveSample(dialog.dataset.sampleId, $('#sample-class').value);
    dialog.close();
  });
  $('#sample-remove').addEventListener('click', () => {
    removeSampleById(dialog.dataset.sampleId);
    dialog.close();
  });
  $('#sample-close').addEventListener('click', () => dialog.close());
}
