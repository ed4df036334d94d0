// The Web Worker that computes (static/worker.js): requests and their answers, and its progress
// and epoch messages.
let worker = null; // started once the service worker controls the page, so its model download is cached
const pending = new Map(); // request id → { resolve, reject }
let requestCounter = 0;
export const listeners = { progress: [], epoch: [] };

export function startWorker() {
  worker = new Worker(new URL('../worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = onWorkerMessage;
}

function onWorkerMessage({ data }) {
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
    pending.set(id, { resolve, reject });
    worker.postMessage(message, transfer);
  });
}

/// A message that needs no answer (cancel, unload-model).
export function post(message) {
  worker.postMessage(message);
}
