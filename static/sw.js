// Offline support: the app's files and the model are kept in the Cache API. The model (5 MB, named
// by its content) is served from the cache once there; everything else is fetched fresh when the
// network answers and from the cache when it does not. Only this origin's GET requests are handled.
// The library's build is not in the shell: the page picks one (single- or multi-threaded) and tells
// this worker which files it loaded before it was in control.
const CACHE = 'wick-v6';
const MODULES = ['camera', 'chart', 'check', 'classes', 'evaluation', 'files', 'keep', 'map', 'messages', 'preview', 'project', 'state', 'store', 'training', 'wasm'];
// The manifest too: the page, added to a home screen, opens offline as an app (the home screen
// keeps its own copy of the icons).
const SHELL = ['./', 'index.html', 'style.css', 'static/app.js', 'static/worker.js', ...MODULES.map((m) => `static/app/${m}.js`),
  'static/manifest.webmanifest'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'cache' || !Array.isArray(event.data.urls)) return;
  const ours = event.data.urls.filter((url) => URL.canParse(url) && new URL(url).origin === self.location.origin);
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(ours)));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

async function cacheFirst(request) {
  const cached = await caches.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) (await caches.open(CACHE)).put(request, response.clone());
  return response;
}

async function networkFirst(request) {
  try {
    const response = await fetch(request);
    if (response.ok) (await caches.open(CACHE)).put(request, response.clone());
    return response;
  } catch (e) {
    const cached = await caches.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin) return;
  event.respondWith(url.pathname.endsWith('.safetensors') ? cacheFirst(event.request) : networkFirst(event.request));
});
