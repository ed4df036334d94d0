// Hostile images in the tab (headless Chromium, cross-origin isolated): PNGs whose colour profile
// inflates to half a gigabyte each cost bounded memory and time — their profile is dropped, the
// pixels decode — and the tab goes on working.
import { test, after as afterAll } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addImages, counts, isolatedBrowser, openApp, root } from './harness.mjs';

const shared = isolatedBrowser();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-hostile-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/// Eight small PNGs, each with an iCCP chunk of about 0.5 MB that inflates to 512 MB (Python's
/// zlib writes the bomb; the PNG around it is a crop of a real photo).
function bombs() {
  execFileSync('python3', ['-c', `
import io, struct, sys, zlib
from PIL import Image
photo = Image.open(sys.argv[1]).convert('RGB')
out = sys.argv[2]
compressor = zlib.compressobj(9)
zeros = bytes(1 << 20)
profile = b''.join(compressor.compress(zeros) for _ in range(512)) + compressor.flush()
chunk = b'bomb\\0\\0' + profile
for i in range(8):
    buffer = io.BytesIO()
    photo.crop((i * 20, 0, i * 20 + 64, 64)).save(buffer, 'PNG')
    png = buffer.getvalue()
    body = b'iCCP' + chunk
    inserted = struct.pack('>I', len(chunk)) + body + struct.pack('>I', zlib.crc32(body) & 0xffffffff)
    with open(f'{out}/bomb-{i}.png', 'wb') as f:
        f.write(png[:33] + inserted + png[33:])
`, path.join(root, 'tests/fixtures/brick.png'), scratch]);
  return Array.from({ length: 8 }, (_, i) => path.join(scratch, `bomb-${i}.png`));
}

test('eight PNGs whose colour profiles inflate to 512 MB each: bounded memory and time, the pixels kept, the tab working', async () => {
  const files = bombs();
  assert.ok(fs.statSync(files[0]).size < 1e6, 'half a megabyte on disk');
  const { page, errors } = await openApp(shared.browser, shared.origin);
  const before = await page.evaluate(async () => (await performance.measureUserAgentSpecificMemory()).bytes);
  const started = Date.now();
  const picked = [...files, path.join(root, 'tests/fixtures/grass.png')]
    .map((f) => ({ name: path.basename(f), mimeType: 'image/png', buffer: fs.readFileSync(f) }));
  await addImages(page, 0, picked, 120_000);
  const seconds = (Date.now() - started) / 1000;
  const after = await page.evaluate(async () => (await performance.measureUserAgentSpecificMemory()).bytes);
  console.log(`# 8 iCCP bombs and a photo added in ${seconds.toFixed(1)} s; the page and its workers went from ${(before / 1e6).toFixed(0)} to ${(after / 1e6).toFixed(0)} MB`);
  assert.deepEqual(await counts(page), [9, 0], 'all nine added: the profiles dropped, the pixels decoded');
  assert.ok(seconds < 30, `${seconds} s`);
  assert.ok(after < 600e6, `${(after / 1e6).toFixed(0)} MB`);
  // The tab goes on: a photo previews.
  await page.setInputFiles('#preview-file', path.join(root, 'tests/fixtures/coffee.png'));
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('coffee.png'));
  assert.equal(await page.textContent('#predictions li:first-child .label'), 'espresso');
  assert.deepEqual(errors, []);
  await page.close();
});
