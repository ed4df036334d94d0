// Wick's drop-in image classifier: `load` a model exported by Wick (`wick export --format web`, or
// the page's Export model → web page), then `classify` images with it. The model runs in a Web
// Worker on WebAssembly, so the page stays responsive; nothing is sent anywhere — every file is
// fetched from where this module is served. Types: wick.d.ts.
//
//   import { load } from './wick.js';
//   const classifier = await load();
//   const ranked = await classifier.classify(document.querySelector('img'), { topK: 3 });
//   // [{ label: 'cat', probability: 0.93, index: 0 }, …]

const MANIFEST = 'wick-model.json';
// A manifest names files beside it, nothing else (it is data, and may come from anywhere).
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/// The classifier in the folder `baseUrl` (default: this module's folder), which holds
/// wick-model.json and the files it names.
export async function load(baseUrl = new URL('./', import.meta.url)) {
  const base = new URL(baseUrl, globalThis.location?.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const response = await fetch(new URL(MANIFEST, base));
  if (!response.ok) throw new Error(`${new URL(MANIFEST, base)}: HTTP ${response.status} (is this the folder of a Wick web export?)`);
  const manifest = await response.json();
  if (manifest?.format !== 'wick-web' || manifest.version !== 1) {
    throw new Error(`${MANIFEST}: not a Wick web export this runtime reads (format ${JSON.stringify(manifest?.format)}, version ${JSON.stringify(manifest?.version)})`);
  }
  const file = (key, optional) => {
    const name = manifest[key];
    if (name == null && optional) return undefined;
    if (typeof name !== 'string' || !PLAIN_NAME.test(name)) throw new Error(`${MANIFEST}: "${key}" must name a file beside it`);
    return new URL(name, base).href;
  };
  const worker = new Worker(new URL('./wick-worker.js', import.meta.url), { type: 'module' });
  const classifier = new Classifier(worker);
  try {
    const { labels, featureSize, simd } = await classifier.request({ type: 'load', backboneUrl: file('backbone'), classifierUrl: file('classifier', true) });
    classifier.labels = Object.freeze(labels);
    classifier.featureSize = featureSize;
    classifier.simd = simd;
  } catch (e) {
    classifier.dispose();
    throw e;
  }
  return classifier;
}

class Classifier {
  #worker;
  #disposed = false;
  #pending = new Map();
  #next = 0;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const pending = this.#pending.get(data.id);
      if (!pending) return;
      this.#pending.delete(data.id);
      if (data.error !== undefined) pending.reject(new Error(data.error));
      else pending.resolve(data.result);
    };
    worker.onerror = (event) => {
      event.preventDefault?.();
      this.#failAll(new Error(`Wick's worker failed: ${event.message || 'its script or WebAssembly did not load'}`));
    };
  }

  /// Classes ranked by probability, most likely first: `topK` of them (default: all).
  async classify(source, { topK = Infinity } = {}) {
    if (!(topK >= 1)) throw new RangeError(`topK must be at least 1, not ${topK}`);
    const probabilities = await this.request({ type: 'classify', image: await imageOf(source) });
    return Array.from(probabilities, (probability, index) => ({ label: this.labels[index], probability, index }))
      .sort((a, b) => b.probability - a.probability || a.index - b.index)
      .slice(0, topK);
  }

  /// The image's features: the numbers the classifier reads (`featureSize` of them).
  async features(source) {
    return this.request({ type: 'features', image: await imageOf(source) });
  }

  /// Stops the worker; the classifier answers no more.
  dispose() {
    this.#disposed = true;
    this.#worker.terminate();
    this.#failAll(new Error('the classifier was disposed'));
  }

  request(message) {
    if (this.#disposed) return Promise.reject(new Error('the classifier was disposed'));
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#pending.set(id, { resolve, reject });
      const transfer = message.image?.rgba ? [message.image.rgba] : [];
      this.#worker.postMessage({ ...message, id }, transfer);
    });
  }

  #failAll(error) {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

/// What the worker is sent for an image: a file's bytes as they are (the runtime decodes them, as
/// Wick's page does), or the RGBA pixels of anything drawable, at its own size.
async function imageOf(source) {
  if (typeof Blob !== 'undefined' && source instanceof Blob) return { blob: source };
  if (typeof ImageData !== 'undefined' && source instanceof ImageData) {
    return { rgba: source.data.slice().buffer, width: source.width, height: source.height };
  }
  let width;
  let height;
  if (typeof HTMLImageElement !== 'undefined' && source instanceof HTMLImageElement) {
    if (!source.complete || source.naturalWidth === 0) await source.decode();
    [width, height] = [source.naturalWidth, source.naturalHeight];
  } else if (typeof HTMLVideoElement !== 'undefined' && source instanceof HTMLVideoElement) {
    if (source.readyState < 2) throw new Error('the video has no frame yet (wait for its loadeddata event)');
    [width, height] = [source.videoWidth, source.videoHeight];
  } else if ((typeof HTMLCanvasElement !== 'undefined' && source instanceof HTMLCanvasElement)
    || (typeof OffscreenCanvas !== 'undefined' && source instanceof OffscreenCanvas)
    || (typeof ImageBitmap !== 'undefined' && source instanceof ImageBitmap)) {
    [width, height] = [source.width, source.height];
  } else {
    throw new TypeError('classify and features take an <img>, <canvas>, <video>, ImageBitmap, ImageData, OffscreenCanvas or Blob');
  }
  if (!(width > 0 && height > 0)) throw new Error('the image is empty (0 pixels wide or high)');
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d');
  context.drawImage(source, 0, 0);
  const { data } = context.getImageData(0, 0, width, height);
  return { rgba: data.buffer, width, height };
}
