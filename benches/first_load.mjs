// What a first visit downloads: scripts, page and wasm gzipped (as a server sends them), and the
// backbone file as it is (already compressed: int8). Shared by benches/tfjs_peer.mjs (the page's two
// builds) and benches/web_export.mjs (the web export's runtime beside the page's).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

export const gzipped = (file) => zlib.gzipSync(fs.readFileSync(file)).length;

/// The page's first load from `dist` with its `build` ('single': `.`; 'relaxed', 'threads',
/// 'threads-relaxed': the folder of that name).
export function pageFirstLoad(dist, build) {
  const dir = build === 'single' ? '.' : build;
  const inDist = (f) => gzipped(path.join(dist, f));
  const pageModules = fs.readdirSync(path.join(dist, 'static/app')).map((f) => `static/app/${f}`);
  // The manifest is fetched on a first visit too (the icons only when the page is installed).
  const shared = ['static/app.js', 'static/worker.js', 'sw.js', 'index.html', 'style.css', 'static/manifest.webmanifest', ...pageModules];
  const snippetDir = path.join(dir, 'snippets');
  const snippets = fs.existsSync(path.join(dist, snippetDir)) ? fs.readdirSync(path.join(dist, snippetDir), { recursive: true })
    .map((f) => path.join(snippetDir, f)).filter((f) => f.endsWith('.js')) : [];
  const modelBytes = fs.statSync(path.join(dist, 'static/efficientnet-lite0-int8.safetensors')).size;
  const wasm = inDist(path.join(dir, 'wick_bg.wasm'));
  const scripts = [...shared, path.join(dir, 'wick.js'), ...snippets].reduce((n, f) => n + inDist(f), 0);
  return { build, wasm_gzip: wasm, scripts_gzip: scripts, model: modelBytes, total: wasm + scripts + modelBytes };
}
