import path from 'node:path';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';
const { server, origin } = await serveDist('/tmp/wasmprof', { '/bench/': path.join(root, 'benches/page'), '/static/': path.join(root, 'static') });
const browser = await launchChromium();
const page = await browser.newPage();
await page.goto(`${origin}/bench/index.html`);
const out = await page.evaluate(async () => {
  const wick = await import('/wick.js');
  await wick.default({ module_or_path: '/wick_bg.wasm' });
  const model = new Uint8Array(await (await fetch('/static/efficientnet-lite0-int8.safetensors')).arrayBuffer());
  const r = [];
  for (let i = 0; i < 5; i++) r.push(JSON.parse(wick.bench_backbone(model, 1, 10, 'int8')).ms_per_image);
  return r;
});
console.log(out.map((x) => x.toFixed(1)).join(' '), 'min', Math.min(...out).toFixed(1));
await browser.close(); server.close();
