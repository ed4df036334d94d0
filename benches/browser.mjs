// Wick's backbone forward pass in headless Chromium (wasm + simd128, one thread), on the
// `trunk build --release` output. Prints ms/image for each batch size (`--batches 1,16`, the default);
// `--json` prints one record per line.
import path from 'node:path';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';

const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const batches = arg('--batches', '1,16').split(',').map(Number);
const json = process.argv.includes('--json');
const { server, origin } = await serveDist(undefined, { '/bench/': path.join(root, 'benches/page') });
const browser = await launchChromium();
try {
  // The benchmark page, not the app: TF.js needs string evaluation, which the app's CSP forbids.
  const page = await browser.newPage();
  await page.goto(`${origin}/bench/index.html`);
  for (const precision of ['int8', 'f32']) {
    for (const batch of batches) {
      const record = JSON.parse(await page.evaluate(async ([batch, precision]) => {
        const wick = await import('/wick.js');
        await wick.default({ module_or_path: '/wick_bg.wasm' });
        const model = new Uint8Array(await (await fetch('/static/efficientnet-lite0-int8.safetensors')).arrayBuffer());
        return wick.bench_backbone(model, batch, batch === 1 ? 10 : Math.max(1, Math.round(16 / batch)), precision);
      }, [batch, precision]));
      record.precision = precision;
      console.log(json ? JSON.stringify(record)
        : `wick wasm (Chromium, 1 thread, ${precision}) batch ${batch}: ${record.ms_per_image.toFixed(2)} ms/image`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
