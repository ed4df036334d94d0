// Runs a Wick TF.js export the way a page would, in one TF.js package — `@tensorflow/tfjs` (4.22)
// or `tfjs-1.3.1` (what Teachable Machine's snippet pins); one per process, since TF.js keeps its
// engine on the global object — on Node's CPU backend: tf.loadLayersModel, then predict on pixels
// Wick prepared (float32, N×S×S×3, Teachable Machine's x / 127 − 1). Writes the version and the
// probabilities as JSON to OUT (TF.js greets on stdout, so not there).
//
//   node tests/reference/tfjs_run.mjs PACKAGE EXPORT_DIR PIXELS.f32 N OUT.json
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const [pkg, dir, pixelsPath, count, outPath] = process.argv.slice(2);
const n = Number(count);
const bytes = readFileSync(pixelsPath);
const pixels = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const json = JSON.parse(readFileSync(`${dir}/model.json`, 'utf8'));
const weights = readFileSync(`${dir}/weights.bin`);
const side = json.modelTopology.config.layers[0].config.batch_input_shape[1];
const tf = require(pkg);
{
  await tf.setBackend('cpu');
  await tf.ready();
  const handler = {
    load: async () => ({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
    }),
  };
  const model = await tf.loadLayersModel(handler);
  const y = model.predict(tf.tensor4d(pixels, [n, side, side, 3]));
  writeFileSync(outPath, JSON.stringify({ version: tf.version.tfjs, probabilities: await y.array() }));
}
