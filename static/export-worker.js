// Runs the export build of the library (`export/wick.js`, scripts/build-web-feature.sh export) off the page's
// thread: a model and its backbone in, the bytes of one export format out, with a `stage` message
// before each step that takes a while (the page shows them).
import init, { export_model } from '../export/wick.js';

const ready = init();
self.onmessage = async ({ data }) => {
  try {
    await ready;
    // The web page format ships the runtime the page serves beside itself (runtime/, built with it:
    // the simd128 build and its relaxed-SIMD twin, in src/export/web.rs's RUNTIME_FILES order).
    if (data.format === 'web') self.postMessage({ stage: 'runtime' });
    const runtime = data.format === 'web'
      ? await Promise.all(['wick_runtime.js', 'wick_runtime_bg.wasm', 'wick_runtime_relaxed.js', 'wick_runtime_relaxed_bg.wasm'].map(async (name) => {
        const response = await fetch(new URL(`../runtime/${name}`, import.meta.url));
        if (!response.ok) throw new Error(`runtime/${name}: HTTP ${response.status}`);
        return new Uint8Array(await response.arrayBuffer());
      }))
      : [];
    self.postMessage({ stage: 'computing' });
    const bytes = export_model(data.backbone, data.model, data.format, data.unixSeconds, runtime);
    self.postMessage({ bytes }, [bytes.buffer]);
  } catch (e) {
    self.postMessage({ error: e?.message ?? String(e) });
  }
};
