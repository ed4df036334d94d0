// Export model: the trained model as a .wick (with the backbone file its layers trained, if they
// did), or in another tool's format, computed in this tab by the library's export build (loaded in
// a worker of its own the first time, then kept by the service worker): nothing leaves the device.
// The page imports this module when the format menu is first used, so a first visit does not load
// it (the first load is held under 6 MB: BENCHMARKS.md).
import { $, state, status, BACKBONES } from './app/state.js';
import { downloadBytes } from './app/files.js';

export const FORMATS = {
  wick: { hint: 'Wick\'s own .wick (and, when the backbone\'s layers trained, its backbone file): opens in this page and in wick predict.' },
  onnx: { name: 'model.onnx', type: 'application/octet-stream',
    hint: 'One ONNX file (float32, about 13 MB for EfficientNet-Lite0): onnxruntime in Python, C++, Node or a browser; onnx2tf for TFLite.' },
  'onnx-int8': { name: 'model-int8.onnx', type: 'application/octet-stream',
    hint: 'ONNX with int8 weights (about 4 MB): the same runtimes, probabilities within a few hundredths of the float32 file\'s.' },
  tfjs: { name: 'model.zip', type: 'application/zip',
    hint: 'A .zip of a TensorFlow.js model with Teachable Machine\'s metadata (about 13 MB): tmImage.load, ml5 and the Scratch and p5 extensions load it.' },
  web: { name: 'wick-classifier.zip', type: 'application/zip',
    hint: 'A .zip of a folder for any web page (about 9 MB): put it on a static host and open its index.html, or import its wick.js (load, classify) in your own page. It runs in the visitor\'s browser.' },
};

/// What the export worker says it is doing (its `stage` messages).
const STAGES = {
  runtime: 'fetching Wick\'s runtime from this site',
  computing: 'computing the files in this tab',
};

export function showExportHint() {
  $('#export-hint').textContent = FORMATS[$('#export-format').value].hint;
}

export async function exportModel(format) {
  if (format === 'wick') {
    downloadBytes(state.project.model, 'model.wick', 'application/octet-stream');
    if (state.project.modelBackbone) downloadBytes(state.project.modelBackbone, 'model.backbone.safetensors', 'application/octet-stream');
    return;
  }
  const button = $('#export-model');
  button.disabled = true;
  $('#export-progress').hidden = false;
  const started = performance.now();
  const worker = new Worker(new URL('./export-worker.js', import.meta.url), { type: 'module' });
  try {
    status('Exporting the model: loading the export module (about 2.5 MB, the first time)…');
    // The model runs on the backbone its layers trained, or else on the page's own.
    const backbone = state.project.modelBackbone ?? state.customBackbone
      ?? new Uint8Array(await (await fetch(BACKBONES[state.builtinBackbone].url)).arrayBuffer());
    const bytes = await new Promise((resolve, reject) => {
      worker.onmessage = ({ data }) => {
        if (data.stage) status(`Exporting the model: ${STAGES[data.stage]}…`);
        else if (data.error) reject(new Error(data.error));
        else resolve(data.bytes);
      };
      worker.onerror = (e) => reject(new Error(e.message || 'the export module did not load'));
      worker.postMessage({ backbone, model: state.project.model, format, unixSeconds: Date.now() / 1000 });
    });
    const { name, type } = FORMATS[format];
    downloadBytes(bytes, name, type);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    status(`Exported the model as ${name} (${(bytes.length / 1e6).toFixed(2)} MB in ${seconds} s), computed in this tab.`);
  } catch (e) {
    status(`Could not export the model: ${e.message}`, true);
  } finally {
    $('#export-progress').hidden = true;
    worker.terminate();
    button.disabled = !state.project.model;
  }
}
