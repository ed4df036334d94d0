// The classifier's worker: runs Wick's runtime off the page's thread. wick.js sends `load` once, then
// `classify` / `features` with an image file (a Blob) or RGBA pixels; every answer echoes the
// request's `id`.
//
// The runtime comes in two builds: wick_runtime_relaxed.js + _bg.wasm multiplies int8 with
// WebAssembly relaxed SIMD's dot instruction, which Chrome/Edge ≥ 114 and Firefox ≥ 145 compile and
// Safari refuses (the whole module fails); wick_runtime.js + _bg.wasm (simd128) runs everywhere. The
// relaxed one is loaded where the browser validates that instruction, the plain one where it does not
// or the relaxed one does not start — silently, with the same answers (its int8 sums are exact).

/// A module of one function with `i32x4.relaxed_dot_i8x16_i7x16_add_s` (Wick's page probes with the
/// same bytes, static/app/wasm.js).
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0,
  65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 147, 2, 11]);

/// The runtime's bindings, started, and which SIMD they run: 'relaxed' or 'simd128'.
async function start() {
  if (WebAssembly.validate(RELAXED_PROBE)) {
    try {
      const bindings = await import('./wick_runtime_relaxed.js');
      await bindings.default();
      return { Runtime: bindings.Runtime, simd: 'relaxed' };
    } catch (e) {
      console.warn('Wick: the relaxed-SIMD runtime did not start; running the plain one:', e);
    }
  }
  const bindings = await import('./wick_runtime.js');
  await bindings.default();
  return { Runtime: bindings.Runtime, simd: 'simd128' };
}

const ready = start();
let runtime = null;

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function load({ backboneUrl, classifierUrl }) {
  const [backbone, classifier] = await Promise.all([fetchBytes(backboneUrl), classifierUrl ? fetchBytes(classifierUrl) : undefined]);
  const { Runtime, simd } = await ready;
  runtime = new Runtime(backbone, classifier);
  return { labels: runtime.labels(), featureSize: runtime.feature_dim, simd };
}

// One image: a file's bytes (decoded by the runtime, as Wick's page does) or a canvas's pixels, given
// to the runtime's method `ofFile` or `ofPixels`.
async function answer(image, ofFile, ofPixels) {
  if (image.blob) return runtime[ofFile](new Uint8Array(await image.blob.arrayBuffer()));
  return runtime[ofPixels](new Uint8Array(image.rgba), image.width, image.height);
}

const handlers = {
  load,
  classify: ({ image }) => answer(image, 'classify_file', 'classify_rgba'),
  features: ({ image }) => answer(image, 'features_file', 'features_rgba'),
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
