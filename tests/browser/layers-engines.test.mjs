// *Layers to train* in every engine — Chromium, Firefox ESR and WebKitGTK — on a plain server (one
// thread; WebKitGTK never shares memory, so this is the build Safari runs): the page measures what
// one layer costs on this device, trains it on real photos (crops of scikit-image's brick and grass),
// shows each layer epoch's time and their mean, and the model answers a held-out photo. layers.test.mjs
// covers the rest (CIFAR-10 photos, the CLI's answers, persistence) in Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { photoCrops, serveDist } from './harness.mjs';
import { inEachEngine, waitFor } from './engines.mjs';

const PER_CLASS = 8;

/// In the page: each status line of #train-status from now on, in order.
const recordStatus = () => {
  window.statusLines = [];
  const status = document.querySelector('#train-status');
  new MutationObserver(() => window.statusLines.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
};

test('layers to train in Chromium, Firefox and WebKitGTK: the cost measured, each layer epoch timed, the model answers', { timeout: 900_000 }, async () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-layers-engines-'));
  const brick = photoCrops(scratch, 'brick', PER_CLASS);
  const grass = photoCrops(scratch, 'grass', PER_CLASS);
  const heldOut = photoCrops(scratch, 'brick', 1, PER_CLASS + 3)[0];
  const { server, origin } = await serveDist();
  try {
    await inEachEngine(async (browser, engine) => {
      const profile = await browser.profile();
      const tab = await profile.open(`${origin}/`);
      await waitFor(tab, () => document.body.dataset.ready === 'true' || document.querySelector('#status').classList.contains('error'), null, { what: `${engine}: the backbone` });
      await tab.evaluate(() => document.querySelectorAll('.class-card .class-name').forEach((input, i) => {
        input.value = ['brick', 'grass'][i];
        input.dispatchEvent(new Event('change'));
      }));
      for (const [i, files] of [brick, grass].entries()) {
        await tab.setFiles(`#classes > .class-card:nth-child(${i + 1}) .class-files`, files);
        await waitFor(tab, ([i, n]) => document.querySelector('#extract-text').dataset.pending === '0'
          && parseInt(document.querySelectorAll('.class-card .count')[i]?.textContent, 10) === n, [i, PER_CLASS], { what: `${engine}: class ${i + 1}'s photos` });
      }

      await tab.evaluate(() => {
        const select = document.querySelector('#train-layers');
        select.value = '1';
        select.dispatchEvent(new Event('change', { bubbles: true }));
      });
      const cost = await waitFor(tab, () => {
        const hint = document.querySelector('#layers-cost').textContent;
        return /^(Measured here|Could not)/.test(hint) && hint;
      }, null, { what: `${engine}: the layer's cost` });
      assert.match(cost, /^Measured here: about [\d.]+ s per epoch for \d+ training images \(\d+ ms each\)/, `${engine}: ${cost}`);

      await tab.evaluate(recordStatus);
      await tab.evaluate(() => document.querySelector('#train').click());
      await waitFor(tab, () => /^(Trained|Training failed)/.test(document.querySelector('#train-status').textContent), null, { what: `${engine}: training`, timeout: 600_000 });
      const status = await tab.evaluate(() => document.querySelector('#train-status').textContent);
      assert.match(status, /^Trained in .*The layers' \d+ epochs? took \d+\.\d\d s each\./, `${engine}: ${status}`);
      const epochLines = (await tab.evaluate(() => window.statusLines)).filter((line) => / \(\d+\.\d\d s\)$/.test(line));
      assert.ok(epochLines.length >= 1, `${engine}: each layer epoch's line gives its time`);

      await tab.setFiles('#preview-file', [heldOut]);
      await waitFor(tab, (name) => document.querySelector('#status').textContent.startsWith(name), path.basename(heldOut), { what: `${engine}: the preview` });
      assert.equal(await tab.evaluate(() => document.querySelector('#predictions li:first-child .label').textContent), 'brick', `${engine}: the held-out photo`);
      const threads = await tab.evaluate(() => document.querySelector('#threads-name').textContent);
      const simd = await tab.evaluate(() => document.querySelector('#simd-name').textContent);
      console.log(`# ${browser.name} ${browser.version} (${simd}, ${threads.split(' because')[0]}): ${cost.match(/^Measured here: (about [\d.]+ s per epoch)/)[1]} estimated; ${status.match(/The layers' .*? each\./)[0]}`);
      await profile.close();
    });
  } finally {
    server.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
});
