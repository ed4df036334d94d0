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
    } else {
      const record = JSON.parse(wick.bench_backbone(model, data.batch, data.iters, data.precision));
      postMessage({ value: record.ms_per_image });
    }
  } catch (e) {
    postMessage({ error: String(e) });
  }
};
