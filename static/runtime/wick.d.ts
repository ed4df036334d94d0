// Types of wick.js, Wick's drop-in image classifier.

/** Anything `classify` and `features` take. A `Blob` (or `File`) is decoded by Wick itself, as Wick's
 * page decodes the files dropped on it (JPEG, PNG, WebP, GIF, BMP); anything else is read as the RGBA
 * pixels the browser draws for it, at its own size. */
export type ImageSource =
  | HTMLImageElement
  | HTMLCanvasElement
  | HTMLVideoElement
  | ImageBitmap
  | ImageData
  | OffscreenCanvas
  | Blob;

/** One class and how likely the image is to show it. */
export interface Prediction {
  label: string;
  /** In [0, 1]; over all classes they sum to 1. */
  probability: number;
  /** The class's position in `Classifier.labels`. */
  index: number;
}

export interface ClassifyOptions {
  /** How many classes to return, most likely first (default: all). */
  topK?: number;
}

export interface Classifier {
  /** The classes, in the model's order. */
  readonly labels: readonly string[];
  /** How many numbers `features` returns. */
  readonly featureSize: number;
  /** Which build of Wick's runtime runs: `'relaxed'` (WebAssembly relaxed SIMD, where the browser
   * compiles it: Chrome/Edge 114+, Firefox 145+) or `'simd128'` (everywhere else). Same answers. */
  readonly simd: 'relaxed' | 'simd128';
  /** Classes ranked by probability, most likely first. Runs in a Web Worker. */
  classify(source: ImageSource, options?: ClassifyOptions): Promise<Prediction[]>;
  /** The image's features: what the classifier reads (e.g. for your own nearest-neighbour search). */
  features(source: ImageSource): Promise<Float32Array>;
  /** Stops the worker; later calls reject. */
  dispose(): void;
}

/** Loads the model in the folder `baseUrl` (default: the folder wick.js is served from), which holds
 * `wick-model.json` and the files it names. Rejects with an Error naming what is missing or wrong. */
export function load(baseUrl?: string | URL): Promise<Classifier>;
