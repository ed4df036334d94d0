// The web export in every engine: `wick export --format web` served from a plain static server and
// opened in Chromium, Firefox ESR and WebKitGTK (which always runs it on one thread, as every engine
// does: it needs no cross-origin isolation). Its demo page classifies a picked photo, and wick.js's
// classify() on each held-out photo (as a Blob and as an <img>) gives `wick predict`'s top-1 with
// probabilities within 0.01 of the CLI's (the same library, natively).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { serveDist, photoCrops, wickBinary, textureFolders } from './harness.mjs';
import { inEachEngine, waitFor } from './engines.mjs';


async function classifyEach(names) {
  const { load } = await import('./wick.js');
  const classifier = await load();
  const answers = { simd: classifier.simd, photos: [] };
  for (const name of names) {
    const blob = await (await fetch(`/photos/${name}`)).blob();
    const img = new Image();
    img.src = `/photos/${name}`;
    await img.decode();
    answers.photos.push({ blob: await classifier.classify(blob), img: await classifier.classify(img) });
  }
  classifier.dispose();
  return answers;
}

test('the web export runs in Chromium, Firefox and WebKitGTK with wick predict\'s answers', { timeout: 900_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-web-engines-'));
  const data = path.join(dir, 'data');
  const photos = path.join(dir, 'photos');
  fs.mkdirSync(photos);
  textureFolders(data, 6);
  const held = [...photoCrops(photos, 'brick', 2, 20), ...photoCrops(photos, 'grass', 2, 20), ...photoCrops(photos, 'gravel', 2, 20)];
  const model = path.join(dir, 'textures.wick');
  const bundle = path.join(dir, 'web');
  execFileSync(wickBinary, ['train', '--data', data, '--out', model, '--no-cache', '--quiet']);
  execFileSync(wickBinary, ['export', '--model', model, '--format', 'web', '--out', bundle], { stdio: 'ignore' });
  const cli = execFileSync(wickBinary, ['predict', '--model', model, '--json', ...held]).toString().trim().split('\n')
    .map((line) => Object.fromEntries(JSON.parse(line).classes.map(({ label, probability }) => [label, probability])));
  const top1 = (answer) => Object.entries(answer).sort((a, b) => b[1] - a[1])[0][0];
  const { server, origin } = await serveDist(bundle, { '/photos/': photos });
  try {
    await inEachEngine(async (browser, engine) => {
      const profile = await browser.profile();
      const tab = await profile.open(`${origin}/index.html`);
      await waitFor(tab, () => document.querySelector('#status').textContent === 'Ready.', null, { what: `${engine}: the demo` });
      await tab.setFiles('#file', [held[0]]);
      await waitFor(tab, () => /ms\.$/.test(document.querySelector('#status').textContent), null, { what: `${engine}: the demo's answer` });
      const demoTop = await tab.evaluate(() => document.querySelector('#ranked li:first-child span').textContent);
      assert.equal(demoTop, top1(cli[0]), `${engine}: the demo's top-1`);
      const answers = await tab.evaluate(classifyEach, held.map((p) => path.basename(p)));
      // The relaxed-SIMD runtime where the engine compiles it (Chromium, Firefox ≥ 145), the
      // simd128 one in WebKitGTK (as in Safari), as the page picks its own builds.
      assert.equal(answers.simd, browser.name === 'WebKitGTK' ? 'simd128' : 'relaxed', `${engine}: the runtime's build`);
      let gap = 0;
      for (const [i, answer] of answers.photos.entries()) {
        for (const source of ['blob', 'img']) {
          const theirs = Object.fromEntries(answer[source].map(({ label, probability }) => [label, probability]));
          assert.equal(top1(theirs), top1(cli[i]), `${engine}, ${path.basename(held[i])} as ${source}`);
          gap = Math.max(gap, ...Object.keys(cli[i]).map((label) => Math.abs(theirs[label] - cli[i][label])));
        }
      }
      console.log(`# ${browser.name} ${browser.version} (${answers.simd} runtime): the web export's demo and wick.js give wick predict's top-1 on ${held.length} of ${held.length} (Blob and <img>), probabilities within ${gap.toExponential(1)}`);
      assert.ok(gap <= 0.01, `${engine}: ${gap}`);
      await profile.close();
    });
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
