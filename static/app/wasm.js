// Which build of the library runs here. A cross-origin isolated page (served with COOP and COEP
// headers) may share memory between threads, so it loads the multi-threaded build (threads/: the
// backbone and the head on a pool of Web Workers); any other page loads the single-threaded one.
// The page and its worker import this module, and each falls back to the single-threaded build if
// the threaded one does not start (a browser that cannot reserve its shared memory, say).
const load = async (folder) => {
  const base = new URL(folder, import.meta.url);
  const module = await import(new URL('wick.js', base).href);
  await module.default({ module_or_path: new URL('wick_bg.wasm', base) });
  return module;
};

let chosen = self.crossOriginIsolated === true ? 'threads' : 'single';
let library;
if (chosen === 'threads') {
  try {
    library = await load('../../threads/');
  } catch (e) {
    console.warn('the multi-threaded build did not start; running on one thread:', e);
    chosen = 'single';
  }
}
library ??= await load('../../');

export const build = chosen;
export const wick = library;
