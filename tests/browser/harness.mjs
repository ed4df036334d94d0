// Shared by the browser tests and the browser benchmark: serve `dist/` (the `trunk build --release`
// output) on 127.0.0.1 and drive Debian's Chromium headless through playwright-core.
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
};

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/// The `wick` binary the tests compare the page with (`cargo build --release`).
export const wickBinary = path.join(process.env.CARGO_TARGET_DIR ?? path.join(root, 'target'), 'release', 'wick');

/// `mounts` maps extra URL prefixes to folders (e.g. `{ '/tfjs/': '…/node_modules/@tensorflow/tfjs/dist' }`).
/// `isolated` sends the cross-origin isolation headers (as `trunk serve` does), so the page may
/// share memory between threads and loads the multi-threaded build.
/// The returned `network.offline = true` makes the server drop every request, as a network that is
/// down does.
export async function serveDist(dir = path.join(root, 'dist'), mounts = {}, { isolated = false } = {}) {
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    throw new Error(`${dir}/index.html is missing: run \`trunk build --release\` first`);
  }
  // `requests`: every path asked for, in order (what reached the network, past the service worker).
  const network = { offline: false, requests: [] };
  const server = http.createServer((req, res) => {
    if (network.offline) {
      req.socket.destroy();
      return;
    }
    const url = new URL(req.url, 'http://localhost');
    const pathname = decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname);
    network.requests.push(pathname);
    const mount = Object.keys(mounts).find((prefix) => pathname.startsWith(prefix));
    const base = mount ? path.resolve(mounts[mount]) : dir;
    const file = path.join(base, mount ? pathname.slice(mount.length) : pathname);
    if (!file.startsWith(base) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end('not found');
      return;
    }
    const body = fs.readFileSync(file);
    const isolation = isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': body.length, ...isolation });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, network, origin: `http://127.0.0.1:${server.address().port}` };
}

export async function launchChromium() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: apt-get install chromium (or set CHROMIUM)`);
  }
  // playwright gives every launch a fresh, temporary profile (its own --user-data-dir).
  return chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A synthetic camera, granted without a prompt, for the webcam tests.
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      // performance.measureUserAgentSpecificMemory() answers at once instead of at the next GC.
      '--enable-blink-features=ForceEagerMeasureMemory'],
  });
}

/// Opens the app (in a new page of `browser` or of a context) and waits until the model is loaded;
/// `requests` collects every URL the page asks for. Unless `keepFiles`, the page sees no File
/// System Access API (as in Firefox and Safari), so "Save project to file" downloads the file, which
/// a test can catch; keep.test.mjs tests the kept file itself.
export async function openApp(browser, origin, { keepFiles = false } = {}) {
  const page = await browser.newPage();
  if (!keepFiles) await page.addInitScript(() => { delete window.showSaveFilePicker; });
  const requests = [];
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(origin + '/');
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.waitForFunction(() => document.body.dataset.ready === 'true'
    || document.querySelector('#status').classList.contains('error'), null, { timeout: 120_000 });
  return { page, requests, errors };
}

/// One isolated server and one Chromium for a test file: started before its tests, closed after.
/// The returned object's `origin` and `browser` are set once they are up.
export function isolatedBrowser() {
  const shared = { origin: null, browser: null, server: null };
  before(async () => {
    ({ server: shared.server, origin: shared.origin } = await serveDist(undefined, {}, { isolated: true }));
    shared.browser = await launchChromium();
  });
  after(async () => {
    await shared.browser?.close();
    shared.server?.close();
  });
  return shared;
}

/// Class card `i` of the page, and every card's image count.
export const card = (page, i) => page.locator('.class-card').nth(i);
export const counts = (page) => page.$$eval('.class-card .count', (els) => els.map((e) => parseInt(e.textContent.replace(/,/g, ''), 10)));

/// Adds `files` ({ name, mimeType, buffer }) to class `i` through its picker and waits until every
/// one is read.
export async function addImages(page, i, files, timeout = 300_000) {
  await card(page, i).locator('.class-files').setInputFiles(files.map(({ name, mimeType, buffer }) => ({ name, mimeType, buffer })));
  await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0', null, { timeout });
}

/// `count` `size` × `size` PNG crops (160 by default) of fixture `name` (scikit-image's brick, grass
/// or gravel photo) written by Pillow into `dir`, from its top 300 rows, starting at crop `first`:
/// their paths.
export function photoCrops(dir, name, count, first = 0, size = 160) {
  execFileSync('python3', ['-c', `
import sys
from PIL import Image
fixture, out, name, first, count, size = sys.argv[1:4] + [int(a) for a in sys.argv[4:7]]
image = Image.open(fixture).convert('RGB')
w = image.size[0]
for i in range(first, first + count):
    x, y = (37 * i * 7) % (w - size), (23 * i * 5) % (300 - size)
    image.crop((x, y, x + size, y + size)).save(f'{out}/{name}-{i}.png')
`, path.join(root, `tests/fixtures/${name}.png`), dir, name, String(first), String(count), String(size)]);
  return Array.from({ length: count }, (_, i) => path.join(dir, `${name}-${first + i}.png`));
}

/// PNG files as a file input takes them (playwright's setInputFiles).
export const picked = (paths) => paths.map((p) => ({ name: path.basename(p), mimeType: 'image/png', buffer: fs.readFileSync(p) }));

/// Trains the page on 6 photo crops of brick and 6 of grass (written into `dir`), one class each.
export async function trainBrickAndGrass(page, dir) {
  await addImages(page, 0, picked(photoCrops(dir, 'brick', 6)));
  await addImages(page, 1, picked(photoCrops(dir, 'grass', 6)));
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 120_000 });
}

/// `data/brick`, `data/grass` and `data/gravel`, each with `count` photo crops: a folder `wick train`
/// takes.
export function textureFolders(data, count) {
  for (const name of ['brick', 'grass', 'gravel']) {
    fs.mkdirSync(path.join(data, name), { recursive: true });
    photoCrops(path.join(data, name), name, count);
  }
}

/// The page's *Export model* in `format` (a value of #export-format): the download's name and bytes.
export async function exportFromPage(page, format) {
  await page.selectOption('#export-format', format);
  await page.waitForFunction((f) => f === 'wick' || !document.querySelector('#export-hint').textContent.startsWith('.wick'), format);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 300_000 }), page.click('#export-model')]);
  return { name: download.suggestedFilename(), bytes: fs.readFileSync(await download.path()) };
}

/// Extracts the .zip `bytes` into `dir` (Python's zipfile), returning `dir`.
export function unzip(bytes, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const zip = path.join(dir, '..', `${path.basename(dir)}.zip`);
  fs.writeFileSync(zip, bytes);
  execFileSync('python3', ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])', zip, dir]);
  return dir;
}
