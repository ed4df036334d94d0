// The browser backbone benchmark: Wick (wasm + simd128, one thread; int8 products, and f32) against TF.js's wasm backend
// (SIMD, one thread: the page is not cross-origin isolated) running the same EfficientNet-Lite0
// architecture built from TF.js's fused ops (conv2d / depthwiseConv2d with bias and ReLU6 fused, TF
// 'same' padding, NHWC), random weights. Both run in the same page of headless Chromium on the
// `trunk build --release` output. Also reports the first-load size (gzipped wasm + model file).
//
//   node benches/tfjs_peer.mjs [--json]
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';

const json = process.argv.includes('--json');
const BATCHES = [1, 8];
const ROUNDS = 3;
const tfjs = path.join(root, 'node_modules/@tensorflow');
const { server, origin } = await serveDist(undefined, {
  '/bench/': path.join(root, 'benches/page'),
  '/tfjs/': path.join(tfjs, 'tfjs/dist'),
  '/tfjs-wasm/': path.join(tfjs, 'tfjs-backend-wasm/dist'),
});
const browser = await launchChromium();
const records = [];
const report = (r) => {
  records.push(r);
  if (json) console.log(JSON.stringify(r));
};
try {
  // The benchmark page, not the app: TF.js needs string evaluation, which the app's CSP forbids.
  const page = await browser.newPage();
  await page.goto(`${origin}/bench/index.html`);
  await page.addScriptTag({ url: '/tfjs/tf.min.js' });
  await page.addScriptTag({ url: '/tfjs-wasm/tf-backend-wasm.min.js' });
  await page.evaluate(async () => {
    const wick = await import('/wick.js');
    await wick.default({ module_or_path: '/wick_bg.wasm' });
    window.wick = wick;
    window.wickModel = new Uint8Array(await (await fetch('/static/efficientnet-lite0-int8.safetensors')).arrayBuffer());

    const tf = window.tf;
    tf.wasm.setWasmPaths('/tfjs-wasm/');
    await tf.setBackend('wasm');
    await tf.ready();
    // EfficientNet-Lite0: (kernel, stride, expansion, output channels, repeats) per stage.
    const stages = [[3, 1, 1, 16, 1], [3, 2, 6, 24, 2], [5, 2, 6, 40, 2], [3, 2, 6, 80, 3],
      [5, 1, 6, 112, 3], [5, 2, 6, 192, 4], [3, 1, 6, 320, 1]];
    const weights = (shape) => tf.randomNormal(shape, 0, 0.05);
    const conv = (cin, cout, k) => ({ filter: weights([k, k, cin, cout]), bias: weights([cout]) });
    const stem = conv(3, 32, 3);
    const blocks = [];
    let cin = 32;
    for (const [k, s, e, cout, repeats] of stages) {
      for (let j = 0; j < repeats; j++) {
        const hidden = cin * e;
        blocks.push({
          stride: j === 0 ? s : 1, cin, cout,
          expand: e === 1 ? null : conv(cin, hidden, 1),
          depthwise: { filter: weights([k, k, hidden, 1]), bias: weights([hidden]) },
          project: conv(hidden, cout, 1),
        });
        cin = cout;
      }
    }
    const head = conv(320, 1280, 1);
    const forward = (x) => tf.tidy(() => {
      let h = tf.fused.conv2d({ x, ...stem, strides: 2, pad: 'same', activation: 'relu6' });
      for (const b of blocks) {
        let y = b.expand ? tf.fused.conv2d({ x: h, ...b.expand, strides: 1, pad: 'same', activation: 'relu6' }) : h;
        y = tf.fused.depthwiseConv2d({ x: y, ...b.depthwise, strides: b.stride, pad: 'same', activation: 'relu6' });
        y = tf.fused.conv2d({ x: y, ...b.project, strides: 1, pad: 'same', activation: 'linear' });
        h = b.stride === 1 && b.cin === b.cout ? tf.add(h, y) : y;
      }
      h = tf.fused.conv2d({ x: h, ...head, strides: 1, pad: 'same', activation: 'relu6' });
      return tf.mean(h, [1, 2]);
    });
    window.tfjsBench = async (batch, iters) => {
      const x = tf.randomNormal([batch, 224, 224, 3]);
      const once = async () => { const y = forward(x); await y.data(); y.dispose(); };
      await once(); // warm-up
      const start = performance.now();
      for (let i = 0; i < iters; i++) await once();
      x.dispose();
      return (performance.now() - start) / (iters * batch);
    };
    window.tfjsInfo = async () => ({ threads: tf.wasm.getThreadsCount?.() ?? 1, simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT') });
  });
  const info = await page.evaluate(() => window.tfjsInfo());
  // Rounds alternate the two runtimes, and each keeps its best round: the machine is noisy, and
  // a slow moment should not land on one side only.
  const best = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const batch of BATCHES) {
      const iters = batch === 1 ? 8 : 2;
      const wick = (precision) => page.evaluate(([b, i, p]) => window.wick.bench_backbone(window.wickModel, b, i, p), [batch, iters, precision])
        .then((r) => JSON.parse(r).ms_per_image);
      const int8 = await wick('int8');
      const tfjsMs = await page.evaluate(([b, i]) => window.tfjsBench(b, i), [batch, iters]);
      const f32 = await wick('f32');
      for (const [runtime, ms] of [['wick-wasm-int8', int8], ['tfjs-wasm', tfjsMs], ['wick-wasm-f32', f32]]) {
        const key = `${runtime}/${batch}`;
        best[key] = Math.min(best[key] ?? Infinity, ms);
      }
    }
  }
  for (const runtime of ['wick-wasm-int8', 'wick-wasm-f32', 'tfjs-wasm']) {
    for (const batch of BATCHES) {
      const extra = runtime === 'tfjs-wasm' ? { threads: info.threads, simd: info.simd } : {};
      report({ runtime, batch, ms_per_image: best[`${runtime}/${batch}`], rounds: ROUNDS, ...extra });
    }
  }
} finally {
  await browser.close();
  server.close();
}

const dist = path.join(root, 'dist');
const wasmGzip = zlib.gzipSync(fs.readFileSync(path.join(dist, 'wick_bg.wasm'))).length;
const pageModules = fs.readdirSync(path.join(dist, 'static/app')).map((f) => `static/app/${f}`);
const jsGzip = ['wick.js', 'static/app.js', 'static/worker.js', 'sw.js', 'index.html', 'style.css', ...pageModules]
  .reduce((n, f) => n + zlib.gzipSync(fs.readFileSync(path.join(dist, f))).length, 0);
const modelBytes = fs.statSync(path.join(dist, 'static/efficientnet-lite0-int8.safetensors')).size;
const firstLoad = { wasm_gzip: wasmGzip, scripts_gzip: jsGzip, model: modelBytes, total: wasmGzip + jsGzip + modelBytes };
if (json) {
  console.log(JSON.stringify({ first_load_bytes: firstLoad }));
} else {
  console.log(`# EfficientNet-Lite0 forward in headless Chromium, ms/image, best of ${ROUNDS} alternating rounds (one thread each)`);
  console.log(`${'runtime'.padEnd(16)}${'batch'.padStart(6)}${'ms/image'.padStart(10)}  ratio`);
  for (const r of records) {
    const peer = records.find((p) => p.runtime === 'tfjs-wasm' && p.batch === r.batch);
    const ratio = r.runtime.startsWith('wick-wasm') && peer ? `${(r.ms_per_image / peer.ms_per_image).toFixed(2)}x TF.js` : '';
    const note = r.runtime === 'tfjs-wasm' ? ` (threads ${r.threads}, simd ${r.simd})` : '';
    console.log(`${r.runtime.padEnd(16)}${String(r.batch).padStart(6)}${r.ms_per_image.toFixed(1).padStart(10)}  ${ratio}${note}`);
  }
  const mb = (n) => (n / 1e6).toFixed(2);
  console.log(`first load: wasm ${mb(wasmGzip)} MB gzipped + scripts ${mb(jsGzip)} MB gzipped + model ${mb(modelBytes)} MB = ${mb(firstLoad.total)} MB`);
}
