// Runs the export build of the library (`export/wick.js`, scripts/build-web-export.sh) off the page's
// thread: a model and its backbone in, the bytes of one export format out.
import init, { export_model } from '../export/wick.js';

const ready = init();
self.onmessage = async ({ data }) => {
  try {
    await ready;
    const bytes = export_model(data.backbone, data.model, data.format, data.unixSeconds);
    self.postMessage({ bytes }, [bytes.buffer]);
  } catch (e) {
    self.postMessage({ error: e?.message ?? String(e) });
  }
};
