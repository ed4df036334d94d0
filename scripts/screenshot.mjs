// Makes docs/screenshot.png (the README's picture): the built app with three classes of real photos,
// trained. Needs `make dist` and the test setup (`scripts/setup.sh test`).
import path from 'node:path';
import { serveDist, launchChromium, openApp, root } from '../tests/browser/harness.mjs';

const { server, origin } = await serveDist(undefined, { '/fixtures/': path.join(root, 'tests/fixtures') });
const browser = await launchChromium();
try {
  const { page } = await openApp(browser, origin);
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.click('#add-class');
  for (const [i, name] of ['brick', 'grass', 'gravel'].entries()) {
    const files = await page.evaluate(async ([name, seed]) => {
      const bitmap = await createImageBitmap(await (await fetch(`/fixtures/${name}.png`)).blob());
      const out = [];
      for (let k = 0; k < 8; k++) {
        const canvas = new OffscreenCanvas(160, 160);
        canvas.getContext('2d').drawImage(bitmap, (k * 37 + seed) % 350, (k * 53) % 140, 160, 160, 0, 0, 160, 160);
        const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
        out.push(btoa(String.fromCharCode(...bytes)));
      }
      return out;
    }, [name, i * 11]);
    const card = page.locator('.class-card').nth(i);
    await card.locator('.class-name').fill(name);
    await card.locator('.class-name').press('Tab');
    await card.locator('.class-files').setInputFiles(files.map((b, k) => ({ name: `${name}-${k}.png`, mimeType: 'image/png', buffer: Buffer.from(b, 'base64') })));
    await page.waitForFunction(() => document.querySelector('#extract-text').dataset.pending === '0');
  }
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'));
  await page.setInputFiles('#preview-file', path.join(root, 'tests/fixtures/gravel.png'));
  await page.waitForFunction(() => document.querySelector('#status').textContent.startsWith('gravel.png'));
  await page.screenshot({ path: path.join(root, 'docs/screenshot.png'), fullPage: true });
  console.log('wrote docs/screenshot.png');
} finally {
  await browser.close();
  server.close();
}
