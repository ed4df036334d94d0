// Wick's backbone forward pass in headless Chromium (wasm + simd128, one thread), on the
// `trunk build --release` output. Prints ms/image for batch 1 and 16; `--json` prints one record per line.
import { serveDist, launchChromium, openApp } from '../tests/browser/harness.mjs';

const json = process.argv.includes('--json');
const { server, origin } = await serveDist();
const browser = await launchChromium();
try {
  const { page } = await openApp(browser, origin);
  for (const [batch, iters] of [[1, 10], [16, 1]]) {
    const record = JSON.parse(await page.evaluate(([b, i]) => window.wasmBindings.bench_backbone(b, i), [batch, iters]));
    console.log(json ? JSON.stringify(record) : `wick wasm (Chromium, 1 thread) batch ${batch}: ${record.ms_per_image.toFixed(2)} ms/image`);
  }
} finally {
  await browser.close();
  server.close();
}
