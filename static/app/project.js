// The project's data operations: images added, moved and removed, and their thumbnails' object
// URLs. Imports the state alone; whoever calls redraws (through `changed`, or the reading loop's
// own throttled redraw).
import { state, newId, changed } from './state.js';

export const thumbnailUrls = new Map(); // sample id → object URL

/// Adds an image (its embedding from the worker) to a class; false when the class was deleted
/// meanwhile. The caller redraws.
export function addSample(classId, name, { features, thumbnail, source }) {
  const cls = state.project.classes.find((c) => c.id === classId);
  if (!cls) return false;
  cls.samples.push({ id: newId(), name, thumbnail, features, source });
  return true;
}

/// Why training cannot start, or null.
export function trainingProblem() {
  if (state.project.classes.length < 2) return 'Add a second class: a classifier tells classes apart.';
  const empty = state.project.classes.find((c) => c.samples.length === 0);
  if (empty) return `Add images to "${empty.name}" first.`;
  const names = state.project.classes.map((c) => c.name.trim());
  if (names.some((n) => n === '')) return 'Every class needs a name.';
  if (new Set(names).size !== names.length) return 'Two classes have the same name.';
  return null;
}

export function removeSample(classId, sampleId) {
  const cls = state.project.classes.find((c) => c.id === classId);
  cls.samples = cls.samples.filter((s) => s.id !== sampleId);
  forgetThumbnail(sampleId);
  changed({ model: false });
}

/// Moves a sample to another class (from the data map or the label check). The model no longer fits
/// its training labels, but stays until the next training, like a removal.
export function moveSample(sampleId, toClassId) {
  const from = state.project.classes.find((c) => c.samples.some((s) => s.id === sampleId));
  const to = state.project.classes.find((c) => c.id === toClassId);
  if (!from || !to || from === to) return;
  const sample = from.samples.find((s) => s.id === sampleId);
  from.samples = from.samples.filter((s) => s.id !== sampleId);
  to.samples.push(sample);
  changed({ model: false });
}

/// Removes a sample wherever it is.
export function removeSampleById(sampleId) {
  const cls = state.project.classes.find((c) => c.samples.some((s) => s.id === sampleId));
  if (cls) removeSample(cls.id, sampleId);
}

export function forgetThumbnail(id) {
  const url = thumbnailUrls.get(id);
  if (url) URL.revokeObjectURL(url);
  thumbnailUrls.delete(id);
}

/// Object URLs kept for thumbnails at most: older ones are revoked (an image already shown keeps
/// its pixels), so paging through 10,000 images does not keep 10,000 blobs.
const KEPT_URLS = 1000;

export function thumbnailUrl(sample) {
  let url = thumbnailUrls.get(sample.id);
  if (url) {
    thumbnailUrls.delete(sample.id); // most recently used last
  } else {
    url = URL.createObjectURL(new Blob([sample.thumbnail], { type: 'image/jpeg' }));
    if (thumbnailUrls.size >= KEPT_URLS) {
      const [oldest, oldUrl] = thumbnailUrls.entries().next().value;
      URL.revokeObjectURL(oldUrl);
      thumbnailUrls.delete(oldest);
    }
  }
  thumbnailUrls.set(sample.id, url);
  return url;
}
