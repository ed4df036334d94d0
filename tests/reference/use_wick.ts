// wick.d.ts as a TypeScript user meets it: every call the docs show, type-checked against the
// types shipped with the web export (tests/browser/web-export.test.mjs compiles it with tsc).
import { load, type Classifier, type Prediction } from '../../static/runtime/wick.js';

export async function demo(img: HTMLImageElement, video: HTMLVideoElement, file: File): Promise<string> {
  const classifier: Classifier = await load();
  const fromFolder: Classifier = await load(new URL('./my-model/', location.href));
  const ranked: Prediction[] = await classifier.classify(img, { topK: 3 });
  const live = await classifier.classify(video);
  const fromBitmap = await classifier.classify(await createImageBitmap(file));
  const features: Float32Array = await classifier.features(file);
  const first: readonly string[] = classifier.labels;
  const simd: 'relaxed' | 'simd128' = classifier.simd;
  fromFolder.dispose();
  return `${ranked[0].label} ${ranked[0].probability.toFixed(2)} ${ranked[0].index} ${live.length} ${fromBitmap.length} ${features.length} ${first.length} ${classifier.featureSize} ${simd}`;
}

// @ts-expect-error: a number is not an image source.
export const refused = (classifier: Classifier) => classifier.classify(42);
