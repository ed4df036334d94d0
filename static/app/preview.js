// The preview: classify a picked or dropped image, or the live webcam.
import { openCamera, closeCamera, grabFrame } from './camera.js';
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

export async function previewFile(file) {
  try {
    const bytes = await file.arrayBuffer();
    const url = URL.createObjectURL(file);
    const img = $('#preview-image');
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = url;
    img.alt = file.name;
    renderPredictions(await ask({ type: 'classify', bytes }, [bytes]));
    status(`${file.name}: classified in this tab.`);
  } catch (e) {
    $('#predictions').replaceChildren();
    status(`${file.name}: ${e.message}`, true);
  }
}

export async function togglePreviewWebcam() {
  const video = $('#preview-video');
  if (state.previewStream) {
    closeCamera(video, state.previewStream);
    state.previewStream = null;
    $('#preview-webcam').textContent = 'Use webcam';
    return;
  }
  try {
    state.previewStream = await openCamera(video);
    $('#preview-webcam').textContent = 'Stop webcam';
    const loop = async () => {
      if (!state.previewStream) return;
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
