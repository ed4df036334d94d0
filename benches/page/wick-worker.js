// Wick's backbone benchmark in a Web Worker, where the app runs it too: there the multi-threaded
// build's calling thread sleeps while its pool works (a page's main thread may not block, so it
// would spin and take a core from the pool).
let wick = null;
let model = null;

onmessage = async ({ data }) => {
  try {
    if (data.type === 'init') {
      wick = await import(data.module);
      await wick.default({ module_or_path: data.wasm });
      if (data.threads) await wick.initThreadPool(data.threads);
      model = new Uint8Array(await (await fetch('/static/efficientnet-lite0-int8.safetensors')).arrayBuffer());
      postMessage({ value: wick.available_threads() });
    } else if (data.type === 'fit') {
      postMessage({ value: fitHead(data.rows, data.classes) });
    } else {
      const record = JSON.parse(wick.bench_backbone(model, data.batch, data.iters, data.precision));
      postMessage({ value: record.ms_per_image });
    }
  } catch (e) {
    postMessage({ error: String(e) });
  }
};

/// The page's default head (linear, L-BFGS along the regularisation path, 15% held out) fitted on
/// `rows` synthetic 1280-d features of `classes` classes (class means plus noise, seeded): ms.
function fitHead(rows, classes) {
  const session = new wick.Session(model);
  const dim = session.feature_dim;
  let state = 7;
  const random = () => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648 - 0.5; };
  const means = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, random));
  const features = new Float32Array(rows * dim);
  const labels = new Uint32Array(rows);
  for (let i = 0; i < rows; i++) {
    labels[i] = i % classes;
    for (let d = 0; d < dim; d++) features[i * dim + d] = means[labels[i]][d] + 2 * random();
  }
  const names = JSON.stringify(Array.from({ length: classes }, (_, c) => `class ${c}`));
  const settings = JSON.stringify({ epochs: 50, batch_size: 16, learning_rate: 0.001, hidden_units: 0, validation_share: 0.15 });
  const start = performance.now();
  const training = new wick.Training(session, features, labels, names, settings);
  while (training.next_epoch() !== undefined);
  training.finish(0).free();
  const ms = performance.now() - start;
  training.free();
  session.free();
  return ms;
}
