// Which build of the library runs here, and why. A cross-origin isolated page (served with COOP
// and COEP headers) in a browser that lets it share memory between threads loads the
// multi-threaded build (threads/: the backbone and the head on a pool of Web Workers); any other
// page loads the single-threaded one, and so does a page whose threaded build does not start. The
// page and its worker import this module; `oneThreadBecause` says in words why a page runs on one
// thread (the footer shows it), null when it runs on several.
//
// Each build has a twin with WebAssembly's relaxed SIMD (relaxed/, threads-relaxed/: the int8
// products' dot instruction), loaded where the browser compiles it; where it does not (Safari), or
// the twin does not start, the plain one runs instead, silently (`simd` says which).
const loadOne = async (folder, memory) => {
  const base = new URL(folder, import.meta.url);
  const module = await import(new URL('wick.js', base).href);
  await module.default({ module_or_path: new URL('wick_bg.wasm', base), memory: memory?.(module) });
  return module;
};

/// A module of one function with `i32x4.relaxed_dot_i8x16_i7x16_add_s`, the instruction the relaxed
/// builds multiply with: a browser that validates it compiles them.
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0,
  65, 0, 253, 15, 65, 0, 253, 15, 65, 0, 253, 15, 253, 147, 2, 11]);
const relaxedSimd = WebAssembly.validate(RELAXED_PROBE);

/// Which SIMD the running build uses: 'relaxed' or 'simd128'.
export let simd = 'simd128';

/// Each build's folder, and its relaxed twin's.
const FOLDERS = { single: ['../../', '../../relaxed/'], threads: ['../../threads/', '../../threads-relaxed/'] };

/// `build` ('single' or 'threads'): its relaxed twin where this browser runs it, else the plain one.
async function load(build, memory) {
  const [plain, relaxed] = FOLDERS[build];
  if (relaxedSimd) {
    try {
      const module = await loadOne(relaxed, memory);
      simd = 'relaxed';
      return module;
    } catch (e) {
      console.warn('the relaxed-SIMD build did not start; running the plain one:', e);
    }
  }
  const module = await loadOne(plain, memory);
  simd = 'simd128';
  return module;
}

/// The threaded build's shared memory is reserved whole, at its maximum, when it is made: desktops
/// reserve 4 GiB, iOS refuses more than about 0.6–1 GB. So smaller maximums are tried before one
/// thread (docs/browsers.md, "Threads and shared memory").
const MAXIMUM_PAGES = [65536, 16384, 8192]; // 4 GiB, 1 GiB, 512 MiB, in 64 KiB pages

/// The shared memory for `module` (its `initialPages`: scripts/build-web-threads.sh) with the
/// largest maximum this browser reserves; thrown where it reserves none.
function sharedMemory({ initialPages }) {
  for (const maximum of MAXIMUM_PAGES) {
    try {
      const memory = new WebAssembly.Memory({ initial: initialPages, maximum, shared: true });
      sharedMaximum = maximum * 65536;
      return memory;
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
    }
  }
  throw new NoSharedMemory();
}
class NoSharedMemory extends Error {}

export let build = 'single';
export let wick = null;
export let oneThreadBecause = null;
/// The threaded build's memory maximum in bytes (null in the single-threaded build).
export let sharedMaximum = null;

if (new URLSearchParams(self.location.search).get('threads') === '1') {
  // The page's worker started again after its pool of threads did not start (app/messages.js).
  oneThreadBecause = 'the pool of threads did not start in time (this browser held it up)';
} else if (self.crossOriginIsolated !== true) {
  oneThreadBecause = 'the page is not cross-origin isolated, so it cannot share memory between threads';
} else if (typeof SharedArrayBuffer !== 'function') {
  // WebKitGTK (and Safari in some settings) report isolation but give pages no SharedArrayBuffer:
  // its threaded build would start and then fail to hand its memory to the other threads
  // ("The object can not be cloned").
  oneThreadBecause = 'this browser does not let the page share memory between threads (no SharedArrayBuffer)';
} else {
  try {
    wick = await load('threads', sharedMemory);
    build = 'threads';
  } catch (e) {
    sharedMaximum = null;
    oneThreadBecause = e instanceof NoSharedMemory ? 'this device could not reserve memory to share between threads'
      : `the multi-threaded build did not start (${e.message})`;
  }
}
wick ??= await load('single');

/// Starts the threaded build's pool of `threads` Web Workers (the page's worker does, once). Where
/// the pool does not start, the single-threaded build takes over and says why. Resolves with the
/// number of threads computing.
export async function startThreads(threads) {
  if (build !== 'threads') return 1;
  try {
    await wick.initThreadPool(threads);
    return threads;
  } catch (e) {
    console.warn('the pool of threads did not start; running on one thread:', e);
    wick = await load('single');
    build = 'single';
    sharedMaximum = null;
    oneThreadBecause = `the pool of threads did not start (${e.message})`;
    return 1;
  }
}
