// The Web Worker that computes (static/worker.js): requests and their answers, and its progress
// and epoch messages.
let worker = null; // started once the service worker controls the page, so its model download is cached
const pending = new Map(); // request id → { resolve, reject, message, transfer }
let requestCounter = 0;
export const listeners = { progress: [], epoch: [] };

/// A pool of threads that has not started after this long is given up. Firefox, now and then
/// (about 1 load in 10 on an isolated page here, 2026-12-06), never starts the worker's pool: the
/// worker stops answering while it makes its threads. The page then replaces the worker with one
/// on a single thread, which says why in the footer.
const POOL_START_MS = 10_000;
let poolTimer = null;

export function startWorker({ oneThread = false } = {}) {
  worker = new Worker(new URL(`../worker.js${oneThread ? '?threads=1' : ''}`, import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
}

/// The worker whose pool did not start is replaced; what was asked of it is asked again.
function restartOnOneThread() {
  worker.terminate();
  startWorker({ oneThread: true });
  for (const { message, transfer, reject } of pending.values()) {
    if (transfer.length === 0) worker.postMessage(message);
    else reject(new Error('the worker was restarted on one thread: try again'));
  }
}

function onWorkerMessage({ data }) {
  if (data.type === 'threads-starting') {
    poolTimer = setTimeout(restartOnOneThread, POOL_START_MS);
    return;
  }
  if (data.type === 'threads-started') {
    clearTimeout(poolTimer);
    return;
  }
  if (data.type === 'progress' || data.type === 'epoch') {
    listeners[data.type].forEach((f) => f(data));
    return;
  }
  const waiting = pending.get(data.id);
  if (!waiting) return;
  pending.delete(data.id);
  if (data.type === 'error') waiting.reject(new Error(data.message));
  else waiting.resolve(data);
}

/// Sends a request; resolves with the worker's answer (or rejects with its error).
export function ask(message, transfer = []) {
  const id = `r${++requestCounter}`;
  message.id = id;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, message, transfer });
    worker.postMessage(message, transfer);
  });
}

/// A message that needs no answer (cancel, unload-model).
export function post(message) {
  worker.postMessage(message);
}
