// The preview: classify a picked or dropped image, or the live webcam.
import { Camera, grabFrame } from './camera.js';
import { ask } from './messages.js';
import { $, state, status } from './state.js';

/// A trained model's probabilities for the project's classes, or (before training) the top 5 of the
/// backbone's own classifier: ImageNet's, or the classes a fine-tuned backbone learned.
export function renderPredictions({ probabilities, backbone: ownTop }) {
  const list = $('#predictions');
  list.replaceChildren();
  const own = state.backbone.own_classes === 1000 ? 'ImageNet classes' : 'classes the backbone was fine-tuned on';
  list.setAttribute('aria-label', ownTop ? `Top-5 ${own} (no model trained yet)` : 'Class probabilities');
  $('#preview-kind').textContent = ownTop ? `No model trained yet: these are the ${own}.` : '';
  const labels = ownTop ? ownTop.map((p) => p.label) : state.project.classes.map((c) => c.name);
  const order = ownTop ? ownTop.map((p, i) => [p.probability, i])
    : Array.from(probabilities, (p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  for (const [p, i] of order) {
    const li = document.createElement('li');
    // The class the map of where the model looks is drawn for, when this row is clicked.
    li.dataset.classIndex = String(ownTop ? ownTop[i].index : i);
    li.title = 'Show where the model looks for this class';
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

let previewBytes = null; // the file in the preview, for the map of where the model looks

export async function previewFile(file) {
  try {
    const bytes = await file.arrayBuffer();
    previewBytes = bytes.slice(0);
    const url = URL.createObjectURL(file);
    const img = $('#preview-image');
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = url;
    img.alt = file.name;
    renderPredictions(await ask({ type: 'classify', bytes }, [bytes]));
    status(`${file.name}: classified in this tab.`);
    await showLooks(null);
  } catch (e) {
    $('#predictions').replaceChildren();
    status(`${file.name}: ${e.message}`, true);
  }
}

/// With "Show where the model looks" on: the previewed image as the network saw it, with the map of
/// where the model looks for `classIndex` (by default the class it predicts) drawn over it.
export async function showLooks(classIndex) {
  const figure = $('#looks');
  if (!$('#show-looks').checked || !previewBytes) {
    figure.hidden = true;
    return;
  }
  try {
    const bytes = previewBytes.slice(0);
    const answer = await ask({ type: 'where-it-looks', bytes, class: classIndex }, [bytes]);
    const img = $('#looks-image');
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(new Blob([answer.png], { type: 'image/png' }));
    img.dataset.classIndex = String(answer.class);
    img.dataset.peak = answer.peak.join(',');
    img.dataset.size = answer.size.join(',');
    document.querySelectorAll('#predictions li').forEach((li) => li.classList.toggle('chosen', li.dataset.classIndex === String(answer.class)));
    const chosen = document.querySelector(`#predictions li[data-class-index="${answer.class}"] .label`)?.textContent ?? `class ${answer.class}`;
    $('#looks-caption').textContent = `Where the model looks for "${chosen}": red counts most for it, blue least (the part of the image the network sees). Click another class above to see its map.`;
    figure.hidden = false;
  } catch (e) {
    figure.hidden = true;
    status(`Could not draw where the model looks: ${e.message}`, true);
  }
}

export function wireLooks() {
  $('#show-looks').addEventListener('change', () => showLooks(null));
  $('#predictions').addEventListener('click', (e) => {
    const li = e.target.closest('li[data-class-index]');
    if (li && $('#show-looks').checked) showLooks(Number(li.dataset.classIndex));
  });
}

let camera = null; // the preview's webcam, once opened

export async function togglePreviewWebcam() {
  camera ??= new Camera($('#preview-video'));
  if (camera.isOpen) {
    camera.close();
    $('#preview-webcam').textContent = 'Use webcam';
    $('#preview-switch').hidden = true;
    return;
  }
  try {
    await camera.open();
    $('#preview-webcam').textContent = 'Stop webcam';
    $('#preview-switch').hidden = (await Camera.count()) < 2;
    const video = camera.video;
    const loop = async () => {
      if (!camera.isOpen) return;
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

export function switchPreviewCamera() {
  camera?.switchCamera().catch((e) => status(`Could not switch the camera: ${e.message}`, true));
}
