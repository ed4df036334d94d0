// The classifier's worker: runs Wick's runtime (wick_runtime.js + wick_runtime_bg.wasm) off the
// page's thread. wick.js sends `load` once, then `classify` / `features` with an image file (a Blob)
// or RGBA pixels; every answer echoes the request's `id`.
import init, { Runtime } from './wick_runtime.js';

const ready = init();
let runtime = null;

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function load({ backboneUrl, classifierUrl }) {
  const [backbone, classifier] = await Promise.all([fetchBytes(backboneUrl), classifierUrl ? fetchBytes(classifierUrl) : undefined]);
  runtime = new Runtime(backbone, classifier);
  return { labels: runtime.labels(), featureSize: runtime.feature_dim };
}

// One image: a file's bytes (decoded by the runtime, as Wick's page does) or a canvas's pixels.
async function answer(image, ofFile, ofPixels) {
  if (image.blob) return ofFile.call(runtime, new Uint8Array(await image.blob.arrayBuffer()));
  return ofPixels.call(runtime, new Uint8Array(image.rgba), image.width, image.height);
}

const handlers = {
  load,
  classify: ({ image }) => answer(image, Runtime.prototype.classify_file, Runtime.prototype.classify_rgba),
  features: ({ image }) => answer(image, Runtime.prototype.features_file, Runtime.prototype.features_rgba),
};

self.onmessage = async ({ data }) => {
  try {
    await ready;
    if (data.type !== 'load' && !runtime) throw new Error('the model is not loaded');
    const result = await handlers[data.type](data);
    self.postMessage({ id: data.id, result }, result instanceof Float32Array ? [result.buffer] : []);
  } catch (e) {
    self.postMessage({ id: data.id, error: e?.message ?? String(e) });
  }
};
