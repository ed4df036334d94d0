// The Web Worker that computes (static/worker.js): requests and their answers, and its progress
// and epoch messages.
let worker = null; // started once the service worker controls the page, so its model download is cached
const pending = new Map(); // request id → { resolve, reject, message, transfer }
let requestCounter = 0;
export const listeners = { progress: [], epoch: [] };

/// A pool of threads not started after this long is given up (Firefox now and then never starts
/// it; a healthy one starts in under 1 s): the worker is started again on threads, and after a
/// second hang on one thread (docs/browsers.md, "Firefox's pool").
const POOL_START_MS = 5000;
let poolTimer = null;
let poolTries = 0;

export function startWorker({ oneThread = false } = {}) {
  worker = new Worker(new URL(`../worker.js${oneThread ? '?threads=1' : ''}`, import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
}

/// The worker whose pool did not start is replaced; what was asked of it is asked again.
function restartWorker() {
  worker.terminate();
  poolTries += 1;
  startWorker({ oneThread: poolTries > 1 });
  for (const { message, transfer, reject } of pending.values()) {
    if (transfer.length === 0) worker.postMessage(message);
    else reject(new Error('the worker was started again: try again'));
  }
}

function onWorkerMessage({ data }) {
  if (data.type === 'threads-starting') {
    poolTimer = setTimeout(restartWorker, POOL_START_MS);
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
