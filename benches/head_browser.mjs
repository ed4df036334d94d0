// Head training in headless Chromium: Wick (wasm + simd128, one thread) against TF.js (a Dense
// softmax layer + Adam, the same recipe) on its wasm backend (SIMD, one thread: the page is not
// cross-origin isolated) and its plain-JS cpu backend, on the same features, in the same page.
//
//   node benches/head_browser.mjs --data DIR [--iters N] [--json]
// DIR holds features.f32 (N×dim little-endian f32) and labels.u8 (N class indices), as benches/head.py
// writes them. Prints the best-of-N time of each; `--json` prints one record per line.
import path from 'node:path';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const data = arg('--data');
if (!data) throw new Error('--data DIR is required (benches/head.py writes it)');
const iters = Number(arg('--iters', '2'));
const json = process.argv.includes('--json');
const EPOCHS = 50;
const BATCH = 64;

const tfjs = path.join(root, 'node_modules/@tensorflow');
const { server, origin } = await serveDist(undefined, {
  '/bench/': path.join(root, 'benches/page'),
  '/bench-data/': data,
  '/tfjs/': path.join(tfjs, 'tfjs/dist'),
  '/tfjs-wasm/': path.join(tfjs, 'tfjs-backend-wasm/dist'),
});
const browser = await launchChromium();
const report = (record) => console.log(json ? JSON.stringify(record)
  : `${record.runtime.padEnd(28)} ${record.ms.toFixed(0).padStart(7)} ms  (train accuracy ${record.train_accuracy.toFixed(3)})`);
try {
  // The benchmark page, not the app: TF.js needs string evaluation, which the app's CSP forbids.
  const page = await browser.newPage();
  await page.goto(`${origin}/bench/index.html`);
  await page.evaluate(async () => {
    const get = async (name) => (await fetch(`/bench-data/${name}`)).arrayBuffer();
    window.benchFeatures = new Float32Array(await get('features.f32'));
    window.benchLabels = new Uint8Array(await get('labels.u8'));
  });

  const wick = JSON.parse(await page.evaluate(async ([epochs, batch, n]) => {
    const wick = await import('/wick.js');
    await wick.default({ module_or_path: '/wick_bg.wasm' });
    return wick.bench_head(window.benchFeatures, window.benchLabels, epochs, batch, n);
  }, [EPOCHS, BATCH, iters]));
  report({ runtime: 'wick-wasm', threads: 1, ...wick });

  await page.addScriptTag({ url: '/tfjs/tf.min.js' });
  await page.addScriptTag({ url: '/tfjs-wasm/tf-backend-wasm.min.js' });
  for (const backend of ['wasm', 'cpu']) {
    const record = await page.evaluate(async ([backend, epochs, batch, n]) => {
      const tf = window.tf;
      if (backend === 'wasm') tf.wasm.setWasmPaths('/tfjs-wasm/');
      await tf.setBackend(backend);
      await tf.ready();
      const rows = window.benchLabels.length;
      const dim = window.benchFeatures.length / rows;
      const classes = Math.max(...window.benchLabels) + 1;
      const x = tf.tensor2d(window.benchFeatures, [rows, dim]);
      const y = tf.oneHot(tf.tensor1d(window.benchLabels, 'int32'), classes).toFloat();
      const run = async () => {
        const model = tf.sequential({ layers: [tf.layers.dense({ units: classes, inputShape: [dim], activation: 'softmax' })] });
        model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
        const start = performance.now();
        const history = await model.fit(x, y, { epochs, batchSize: batch, shuffle: true, verbose: 0, yieldEvery: 'never' });
        const ms = performance.now() - start;
        model.dispose();
        const acc = history.history.acc ?? history.history.accuracy;
        return { ms, train_accuracy: acc[acc.length - 1] };
      };
      await run(); // warm-up: kernel set-up and compilation
      let best = { ms: Infinity };
      for (let i = 0; i < n; i++) {
        const r = await run();
        if (r.ms < best.ms) best = r;
      }
      return { runtime: `tfjs-${backend}`, threads: backend === 'wasm' ? tf.wasm.getThreadsCount?.() ?? 1 : 1, ...best };
    }, [backend, EPOCHS, BATCH, iters]);
    report(record);
  }
} finally {
  await browser.close();
  server.close();
}
