// The browser backbone benchmark: Wick (wasm + simd128, one thread; int8 products, and f32; and the
// relaxed-SIMD twin of each build, int8) against TF.js's wasm backend
// (SIMD, one thread: the page is not cross-origin isolated), then on a cross-origin isolated page
// Wick's multi-threaded build against TF.js's threaded backend (one thread per core each) and
// Wick's one-thread build, and last Wick's two builds alone on an isolated page (its scaling against
// itself, without TF.js's idle pool on the same cores), all running the same EfficientNet-Lite0
// architecture built from TF.js's fused ops (conv2d / depthwiseConv2d with bias and ReLU6 fused, TF
// 'same' padding, NHWC), random weights. Both run in the same page of headless Chromium on the
// `trunk build --release` output. Also reports the first-load size (gzipped wasm + backbone file).
//
//   node benches/tfjs_peer.mjs [--json]
import os from 'node:os';
import path from 'node:path';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';
import { pageFirstLoad } from './first_load.mjs';

const json = process.argv.includes('--json');
const BATCHES = [1, 8];
const ROUNDS = 5;
const OWN_ROUNDS = 8;
const HEAD_ROWS = 4000;
const headFit = {};
const tfjs = path.join(root, 'node_modules/@tensorflow');
const mounts = {
  '/bench/': path.join(root, 'benches/page'),
  '/tfjs/': path.join(tfjs, 'tfjs/dist'),
  '/tfjs-wasm/': path.join(tfjs, 'tfjs-backend-wasm/dist'),
};
const { server, origin } = await serveDist(undefined, mounts);
const { server: isolatedServer, origin: isolatedOrigin } = await serveDist(undefined, mounts, { isolated: true });
const browser = await launchChromium();
const records = [];
const report = (r) => {
  records.push(r);
  if (json) console.log(JSON.stringify(r));
};
/// Opens the benchmark page (not the app: TF.js needs string evaluation, which the app's CSP forbids)
/// with Wick's single-threaded build, TF.js and the model loaded; on an `isolated` page also Wick's
/// multi-threaded build and TF.js's threaded backend, each with one thread per core.
async function openBenchPage(serverOrigin, isolated, { withTfjs = true } = {}) {
  const page = await browser.newPage();
  // TF.js's threaded backend starts hardwareConcurrency / 2 threads; reporting twice this machine's
  // cores lets it use as many threads as Wick (set below), one per core.
  const cores = os.availableParallelism();
  if (isolated) {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Emulation.setHardwareConcurrencyOverride', { hardwareConcurrency: 2 * cores });
  }
  await page.goto(`${serverOrigin}/bench/index.html`);
  if (withTfjs) {
    await page.addScriptTag({ url: '/tfjs/tf.min.js' });
    await page.addScriptTag({ url: '/tfjs-wasm/tf-backend-wasm.min.js' });
  }
  await page.evaluate(async ([isolated, threads, withTfjs]) => {
    if (self.crossOriginIsolated !== isolated) throw new Error(`the page should${isolated ? '' : ' not'} be cross-origin isolated`);
    // Each Wick build in a worker of its own; `wickCall(build, message)` answers with its value.
    // `wickThreads[build]`: the threads that build computes on, as the library reports them.
    const workers = {};
    window.wickThreads = {};
    window.wickCall = (build, message) => new Promise((resolve, reject) => {
      workers[build].onmessage = ({ data }) => (data.error ? reject(new Error(data.error)) : resolve(data.value));
      workers[build].postMessage(message);
    });
    const builds = isolated ? { single: '/', threads: '/threads/', 'threads-relaxed': '/threads-relaxed/' }
      : { single: '/', relaxed: '/relaxed/' };
    for (const [build, dir] of Object.entries(builds)) {
      workers[build] = new Worker('/bench/wick-worker.js', { type: 'module' });
      const poolSize = build.startsWith('threads') ? threads : 0;
      window.wickThreads[build] = await window.wickCall(build, { type: 'init', module: `${dir}wick.js`, wasm: `${dir}wick_bg.wasm`, threads: poolSize });
    }

    if (!withTfjs) return;
    const tf = window.tf;
    tf.wasm.setWasmPaths('/tfjs-wasm/');
    if (isolated) tf.wasm.setThreadsCount(threads);
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
  }, [isolated, cores, withTfjs]);
  return page;
}

/// Rounds alternate the runtimes, and each keeps its best round: the machine is noisy, and a slow
/// moment should not land on one side only. `runtimes` maps a name to `(batch, iters) => ms/image`
/// evaluated in `page`. Returns each one's best (`best`) and every round's figures, in order (`each`).
async function bestOfRounds(runtimes, rounds = ROUNDS) {
  const best = {};
  const each = {};
  for (let round = 0; round < rounds; round++) {
    for (const batch of BATCHES) {
      const iters = batch === 1 ? 8 : 2;
      for (const [name, run] of Object.entries(runtimes)) {
        const ms = await run(batch, iters);
        best[`${name}/${batch}`] = Math.min(best[`${name}/${batch}`] ?? Infinity, ms);
        (each[`${name}/${batch}`] ??= []).push(ms);
      }
    }
  }
  return { best, each };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

const wickRun = (page, build, precision) => (batch, iters) => page
  .evaluate(([b, message]) => window.wickCall(b, message), [build, { type: 'bench', batch, iters, precision }]);
const tfjsRun = (page) => (batch, iters) => page.evaluate(([b, i]) => window.tfjsBench(b, i), [batch, iters]);

try {
  // One thread each: the page is not cross-origin isolated.
  const page = await openBenchPage(origin, false);
  const info = await page.evaluate(() => window.tfjsInfo());
  const { best } = await bestOfRounds({
    'wick-wasm-int8': wickRun(page, 'single', 'int8'),
    'tfjs-wasm': tfjsRun(page),
    'wick-relaxed-int8': wickRun(page, 'relaxed', 'int8'),
    'wick-wasm-f32': wickRun(page, 'single', 'f32'),
  });
  for (const runtime of ['wick-wasm-int8', 'wick-relaxed-int8', 'wick-wasm-f32', 'tfjs-wasm']) {
    for (const batch of BATCHES) {
      const extra = runtime === 'tfjs-wasm' ? { threads: info.threads, simd: info.simd } : {};
      report({ runtime, batch, ms_per_image: best[`${runtime}/${batch}`], rounds: ROUNDS, threads: 1, ...extra });
    }
  }
  await page.close();

  // All cores: a cross-origin isolated page, Wick's two builds and TF.js's threaded backend.
  const isolatedPage = await openBenchPage(isolatedOrigin, true);
  const isolatedInfo = await isolatedPage.evaluate(() => window.tfjsInfo());
  const threads = await isolatedPage.evaluate(() => window.wickThreads.threads);
  const { best: bestIsolated } = await bestOfRounds({
    'wick-threads-int8': wickRun(isolatedPage, 'threads', 'int8'),
    'tfjs-threads': tfjsRun(isolatedPage),
    'wick-threads-relaxed-int8': wickRun(isolatedPage, 'threads-relaxed', 'int8'),
    'wick-one-thread-int8': wickRun(isolatedPage, 'single', 'int8'),
  });
  for (const runtime of ['wick-threads-int8', 'wick-threads-relaxed-int8', 'wick-one-thread-int8', 'tfjs-threads']) {
    for (const batch of BATCHES) {
      const n = runtime === 'tfjs-threads' ? isolatedInfo.threads : runtime.startsWith('wick-threads') ? threads : 1;
      report({ runtime, batch, ms_per_image: bestIsolated[`${runtime}/${batch}`], rounds: ROUNDS, threads: n, isolated: true });
    }
  }
  await isolatedPage.close();

  // Wick's own scaling, its two builds alone on an isolated page: TF.js's idle thread pool (above)
  // shares the same two cores, and the ratio is Wick's against itself.
  const ownPage = await openBenchPage(isolatedOrigin, true, { withTfjs: false });
  const { best: bestOwn, each: eachOwn } = await bestOfRounds({
    'wick-threads-int8': wickRun(ownPage, 'threads', 'int8'),
    'wick-one-thread-int8': wickRun(ownPage, 'single', 'int8'),
  }, OWN_ROUNDS);
  for (const batch of BATCHES) {
    const ms = (runtime) => bestOwn[`${runtime}/${batch}`];
    // Each round's two builds ran back to back: the ratio within a round pairs like moments.
    const rounds = eachOwn[`wick-one-thread-int8/${batch}`];
    const ratios = eachOwn[`wick-threads-int8/${batch}`].map((t, i) => t / rounds[i]);
    report({
      what: 'own scaling', batch, threads, threads_ms: ms('wick-threads-int8'), one_thread_ms: ms('wick-one-thread-int8'), rounds: OWN_ROUNDS,
      round_ratios: ratios, median_round_ratio: median(ratios),
    });
  }

  // The head the page fits by default, on the same synthetic features in both builds.
  for (let round = 0; round < 2; round++) {
    for (const build of ['threads', 'single']) {
      const ms = await ownPage.evaluate(([b, rows]) => window.wickCall(b, { type: 'fit', rows, classes: 10 }), [build, HEAD_ROWS]);
      headFit[build] = Math.min(headFit[build] ?? Infinity, ms);
    }
  }
  report({ what: 'head fit', rows: HEAD_ROWS, classes: 10, threads_ms: headFit.threads, one_thread_ms: headFit.single, threads });
} finally {
  await browser.close();
  server.close();
  isolatedServer.close();
}

const loads = ['single', 'relaxed', 'threads', 'threads-relaxed'].map((build) => pageFirstLoad(path.join(root, 'dist'), build));
if (json) {
  loads.forEach((load) => console.log(JSON.stringify({ first_load_bytes: load })));
} else {
  console.log(`# EfficientNet-Lite0 forward in headless Chromium, ms/image, best of ${ROUNDS} alternating rounds`);
  console.log(`${'runtime'.padEnd(22)}${'threads'.padStart(8)}${'batch'.padStart(6)}${'ms/image'.padStart(10)}  ratio`);
  const find = (runtime, batch) => records.find((p) => p.runtime === runtime && p.batch === batch);
  for (const r of records.filter((x) => x.runtime)) {
    const ratios = [];
    const peer = r.isolated ? find('tfjs-threads', r.batch) : find('tfjs-wasm', r.batch);
    if (r.runtime.startsWith('wick')) ratios.push(`${(r.ms_per_image / peer.ms_per_image).toFixed(2)}x TF.js`);
    if (r.runtime === 'wick-relaxed-int8') ratios.push(`${(r.ms_per_image / find('wick-wasm-int8', r.batch).ms_per_image).toFixed(2)}x simd128`);
    if (r.runtime === 'wick-threads-relaxed-int8') ratios.push(`${(r.ms_per_image / find('wick-threads-int8', r.batch).ms_per_image).toFixed(2)}x simd128`);
    if (r.runtime === 'wick-threads-int8') ratios.push(`${(r.ms_per_image / find('wick-one-thread-int8', r.batch).ms_per_image).toFixed(2)}x one thread`);
    const note = r.runtime.startsWith('tfjs') ? ` (simd ${r.simd ?? true})` : '';
    console.log(`${r.runtime.padEnd(22)}${String(r.threads).padStart(8)}${String(r.batch).padStart(6)}${r.ms_per_image.toFixed(1).padStart(10)}  ${ratios.join(', ')}${note}`);
  }
  for (const r of records.filter((x) => x.what === 'own scaling')) {
    console.log(`wick alone on an isolated page, batch ${r.batch}, best of ${r.rounds} rounds: ${r.threads} threads ${r.threads_ms.toFixed(1)} ms/image, one thread ${r.one_thread_ms.toFixed(1)} = ${(r.threads_ms / r.one_thread_ms).toFixed(2)}x; `
      + `round by round ${r.round_ratios.map((x) => x.toFixed(2)).join(' ')}, median ${r.median_round_ratio.toFixed(2)}x`);
  }
  const fit = records.find((x) => x.what === 'head fit');
  console.log(`head fit (linear, L-BFGS path, ${fit.rows} synthetic 1280-d rows, 10 classes): ${fit.threads} threads ${(fit.threads_ms / 1000).toFixed(2)} s, one thread ${(fit.one_thread_ms / 1000).toFixed(2)} s = ${(fit.threads_ms / fit.one_thread_ms).toFixed(2)}x`);
  const mb = (n) => (n / 1e6).toFixed(2);
  for (const l of loads) {
    console.log(`first load (${l.build} build): wasm ${mb(l.wasm_gzip)} MB gzipped + scripts, page and manifest ${mb(l.scripts_gzip)} MB gzipped + model ${mb(l.model)} MB = ${mb(l.total)} MB`);
  }
}
