import path from 'node:path';
import { serveDist, launchChromium, root } from '../tests/browser/harness.mjs';
const { server, origin } = await serveDist('/tmp/wasmprof', { '/bench/': path.join(root, 'benches/page'), '/static/': path.join(root, 'static') });
const browser = await launchChromium();
const page = await browser.newPage();
await page.goto(`${origin}/bench/index.html`);
await page.evaluate(async () => {
  const wick = await import('/wick.js');
  await wick.default({ module_or_path: '/wick_bg.wasm' });
  window.wick = wick;
  window.model = new Uint8Array(await (await fetch('/static/efficientnet-lite0-int8.safetensors')).arrayBuffer());
  wick.bench_backbone(window.model, 1, 2, 'int8');
});
const cdp = await page.context().newCDPSession(page);
await cdp.send('Profiler.enable');
await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
await cdp.send('Profiler.start');
const r = await page.evaluate(() => window.wick.bench_backbone(window.model, 1, 20, 'int8'));
const { profile } = await cdp.send('Profiler.stop');
console.log(r);
const self = new Map();
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const dt = profile.timeDeltas; let i = 0;
const counts = new Map();
for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
let total = 0;
for (const [id, c] of counts) { const n = byId.get(id); const name = n.callFrame.functionName || n.callFrame.url; self.set(name, (self.get(name) ?? 0) + c); total += c; }
[...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).forEach(([n, c]) => console.log((100 * c / total).toFixed(1).padStart(6), n.slice(0, 140)));
await browser.close(); server.close();
