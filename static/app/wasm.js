// Which build of the library runs here. A cross-origin isolated page (served with COOP and COEP
// headers) may share memory between threads, so it loads the multi-threaded build (threads/: the
// backbone and the head on a pool of Web Workers); any other page loads the single-threaded one.
// The page and its worker import this module, so both run the same build.
export const build = self.crossOriginIsolated === true ? 'threads' : 'single';
const folder = new URL(build === 'threads' ? '../../threads/' : '../../', import.meta.url);
export const wick = await import(new URL('wick.js', folder).href);
await wick.default({ module_or_path: new URL('wick_bg.wasm', folder) });
