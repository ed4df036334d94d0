// The demo page's script: wick.js's load and classify on a picked or dropped file, or on the
// camera's frames. Labels are shown as text (they are the model's data, not markup).
import { load } from './wick.js';

const $ = (selector) => document.querySelector(selector);
const status = (text, error = false) => {
  $('#status').textContent = text;
  $('#status').classList.toggle('error', error);
};

function show(ranked) {
  const list = $('#ranked');
  list.replaceChildren(...ranked.map(({ label, probability }) => {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = label;
    const percent = document.createElement('span');
    percent.textContent = `${(100 * probability).toFixed(1)}%`;
    const bar = document.createElement('meter');
    bar.value = probability;
    item.append(name, percent, bar);
    return item;
  }));
}

async function main() {
  let classifier;
  try {
    classifier = await load();
  } catch (e) {
    status(`The model did not load: ${e.message}`, true);
    return;
  }
  const shown = classifier.labels.slice(0, 20).join(', ');
  $('#classes').textContent = `${classifier.labels.length} classes: ${shown}${classifier.labels.length > 20 ? ', …' : ''}`;
  $('#engine').textContent = `Runs on WebAssembly ${classifier.simd === 'relaxed' ? 'relaxed SIMD' : 'SIMD'}, one thread, in a Web Worker.`;
  status('Ready.');
  let camera = null;

  async function classifyFile(file) {
    if (!file) return;
    camera?.getTracks().forEach((track) => track.stop());
    camera = null;
    $('#camera').hidden = true;
    const preview = $('#preview');
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    status(`Classifying ${file.name}…`);
    try {
      const started = performance.now();
      show(await classifier.classify(file, { topK: 5 }));
      status(`${file.name}: ${Math.round(performance.now() - started)} ms.`);
    } catch (e) {
      show([]);
      status(`${file.name} could not be classified: ${e.message}`, true);
    }
  }

  $('#file').addEventListener('change', (event) => classifyFile(event.target.files[0]));
  const drop = $('#drop');
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    classifyFile(event.dataTransfer.files[0]);
  });

  $('#camera-button').addEventListener('click', async () => {
    try {
      camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    } catch (e) {
      status(`The camera is not available: ${e.message}`, true);
      return;
    }
    const video = $('#camera');
    video.srcObject = camera;
    video.hidden = false;
    $('#preview').hidden = true;
    await video.play();
    const stream = camera;
    // One frame after another, each classified when the last answer is in.
    while (camera === stream) {
      try {
        show(await classifier.classify(video, { topK: 5 }));
        status('Camera: classifying its frames.');
      } catch (e) {
        status(`The camera's frame could not be classified: ${e.message}`, true);
        break;
      }
    }
  });
}

main();
