// The Web Worker that does all the computing, so the page never freezes: it downloads the backbone,
// embeds images, computes their activations for training the backbone's last layers, trains (one
// epoch per turn of the event loop, so Cancel is heard) and classifies.
// Every message from the page has a `type`; every answer echoes the request's `id`.
// The library is imported dynamically, so the message handler below exists from the start and
// requests that arrive while the library loads wait for it instead of being lost. The
// multi-threaded build then starts its pool of Web Workers, one per core.
const library = import('./app/wasm.js').then(async (loaded) => {
  // The page gives a pool that does not start a while, then starts this worker again on one thread.
  if (loaded.build === 'threads') self.postMessage({ type: 'threads-starting' });
  const threads = await loaded.startThreads(Math.max(1, navigator.hardwareConcurrency || 1));
  self.postMessage({ type: 'threads-started' });
  // After startThreads: a pool that did not start leaves the single-threaded build in `loaded.wick`.
  const { build, simd, oneThreadBecause, sharedMaximum } = loaded;
  return { ...loaded.wick, build, simd, threads, oneThreadBecause, sharedMaximum };
});
let wick = null;

let session = null; // the backbone and the loaded model (the library's `Session`)
let training = null;

const reply = (message, transfer = []) => self.postMessage(message, transfer);
const errorText = (e) => (e && e.message) || String(e);
const nextTurn = () => new Promise((resolve) => setTimeout(resolve, 0));

/// Makes the backbone from `backboneBytes` (a file the user opened), or downloaded from `backboneUrl`, the
/// session's. A file that does not load leaves the session as it was.
async function loadBackbone({ id, backboneUrl, backboneBytes }) {
  let bytes = backboneBytes && new Uint8Array(backboneBytes);
  if (!bytes) {
    let last = 0;
    bytes = await wick.download(backboneUrl, (received, total) => {
      const now = performance.now();
      if (now - last > 100 || received === total) {
        last = now;
        reply({ type: 'progress', received, total });
      }
    });
  }
  const next = new wick.Session(bytes);
  session?.free();
  session = next;
  reply({
    type: 'ready',
    id,
    backbone: JSON.parse(session.backbone()),
    dim: session.feature_dim,
    bytes: bytes.length,
    build: wick.build,
    simd: wick.simd,
    threads: wick.threads,
    oneThreadBecause: wick.oneThreadBecause,
    sharedMaximum: wick.sharedMaximum,
  });
}

// Files to embed, gathered while the worker is busy so they reach the library as a batch: one
// file per thread of the multi-threaded build (the single-threaded one takes them one by one).
const embedQueue = [];

function queueEmbed({ id, bytes }) {
  embedQueue.push({ id, bytes });
  if (embedQueue.length === 1) setTimeout(embedQueued, 0);
}

function embedQueued() {
  const batch = embedQueue.splice(0, wick.threads);
  try {
    const answers = session.embed_files(batch.map(({ bytes }) => new Uint8Array(bytes)));
    answers.forEach((answer, i) => (answer instanceof Error
      ? reply({ type: 'error', id: batch[i].id, message: answer.message })
      : embedded(batch[i].id, answer)));
  } catch (e) {
    batch.forEach(({ id }) => reply({ type: 'error', id, message: errorText(e) }));
  }
  if (embedQueue.length > 0) setTimeout(embedQueued, 0);
}

function embedded(id, embedding) {
  const { features, thumbnail, source } = embedding;
  embedding.free();
  reply({ type: 'embedded', id, features, thumbnail, source }, [features.buffer, thumbnail.buffer, source.buffer]);
}

/// Kept copies of images → their activations at the cut for training the last `depth` parts, in
/// `views` views each (f16 bits, image after image).
function activations({ id, sources, seeds, depth, views }) {
  const rows = session.activations(sources.map((b) => new Uint8Array(b)), Uint32Array.from(seeds), depth, views);
  const { bits, shape } = rows;
  rows.free();
  reply({ type: 'activations', id, bits, shape: Array.from(shape) }, [bits.buffer]);
}

async function train({ id, features, labels, classNames, settings, activations: rows, shape, rowsPerSample }) {
  const names = JSON.stringify(classNames);
  training = settings.train_layers > 0
    ? wick.Training.with_layers(session, features, labels, names, JSON.stringify(settings), rows, Uint32Array.from(shape), rowsPerSample)
    : new wick.Training(session, features, labels, names, JSON.stringify(settings));
  for (;;) {
    const started = performance.now();
    const stats = training.next_epoch();
    if (stats === undefined) break;
    reply({ type: 'epoch', stats: JSON.parse(stats), seconds: (performance.now() - started) / 1000 });
    await nextTurn(); // lets a 'cancel' message in
  }
  const model = training.finish(Date.now() / 1000);
  training.free();
  training = null;
  const bytes = model.wick;
  const backbone = model.backbone;
  const report = JSON.parse(model.report);
  model.free();
  session.load_model(bytes, backbone);
  reply({ type: 'trained', id, wick: bytes, backbone: backbone ?? null, report });
}

const handlers = {
  start: loadBackbone,
  'load-backbone': loadBackbone,
  embed: queueEmbed,
  'embed-rgba': ({ id, rgba, width, height }) => embedded(id, session.embed_rgba(new Uint8Array(rgba), width, height)),
  train,
  cancel: () => training?.cancel(),
  'unload-model': () => session?.unload_model(),
  'set-precision': ({ id, precision }) => {
    session.set_precision(precision);
    reply({ type: 'precision-set', id, backbone: JSON.parse(session.backbone()) });
  },
  'set-pooling': ({ id, pooling }) => {
    session.set_pooling(pooling);
    reply({ type: 'pooling-set', id, backbone: JSON.parse(session.backbone()), dim: session.feature_dim });
  },
  activations,
  'layer-cost': ({ id, depth, batch }) => reply({ type: 'layer-cost', id, cost: JSON.parse(session.layer_cost(depth, batch)) }),
  'load-model': ({ id, bytes, backboneBytes }) => reply({
    type: 'model-loaded',
    id,
    meta: JSON.parse(session.load_model(new Uint8Array(bytes), backboneBytes ? new Uint8Array(backboneBytes) : undefined)),
  }),
  'where-it-looks': ({ id, bytes, class: cls }) => {
    const looks = session.where_it_looks(new Uint8Array(bytes), cls ?? undefined);
    const { png, size, peak } = looks;
    const answer = { type: 'looked', id, png, class: looks.class, size: Array.from(size), peak: Array.from(peak) };
    looks.free();
    reply(answer, [png.buffer]);
  },
  'project-map': ({ id, features, dim }) => {
    const points = wick.project_map(features, dim);
    reply({ type: 'mapped', id, points }, [points.buffer]);
  },
  'check-labels': ({ id, features, labels, classes }) =>
    reply({ type: 'checked', id, ...JSON.parse(wick.check_project_labels(features, labels, classes, BigInt(0))) }),
  classify: ({ id, bytes }) => reply({ type: 'classified', id, ...JSON.parse(session.classify_file(new Uint8Array(bytes))) }),
  'classify-rgba': ({ id, rgba, width, height }) =>
    reply({ type: 'classified', id, ...JSON.parse(session.classify_rgba(new Uint8Array(rgba), width, height)) }),
};

self.onmessage = async ({ data }) => {
  try {
    wick ??= await library;
    await handlers[data.type](data);
  } catch (e) {
    if (data.type === 'train') {
      training?.free();
      training = null;
    }
    reply({ type: 'error', id: data.id, message: errorText(e) });
  }
};
