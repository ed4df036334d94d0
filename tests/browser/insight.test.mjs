// Seeing the data and the model in the tab, on real photos (CIFAR-10's JPEG copy in ../shared/data):
// "Check these" puts a photo filed under the wrong class at the top of its list, and moves it with
// one click; the map of the data has one dot per image, shows a thumbnail on hover and opens an
// image to move or remove it; the map of where the model looks, on a picture of a cat beside a ship,
// sits on the cat for "cat" and on the ship for "ship".
import { test, after as afterAll } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, openApp, isolatedBrowser, card, counts, addImages } from './harness.mjs';

const CLASSES = ['automobile', 'cat', 'ship'];
const PER_CLASS = 20;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wick-insight-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const tarball = process.env.WICK_CIFAR10_JPEG ?? path.join(root, '../shared/data/cifar10-train-jpeg.tar.gz');
const skip = !fs.existsSync(tarball) && `no CIFAR-10 JPEG copy at ${tarball}`;

function photos() {
  const names = CLASSES.flatMap((c) => Array.from({ length: PER_CLASS + 1 }, (_, i) => `train/${c}/${String(i).padStart(4, '0')}.jpg`));
  execFileSync('tar', ['-xzf', tarball, '-C', scratch, ...names]);
  const file = (c, i) => ({ name: `${c}-${i}.jpg`, mimeType: 'image/jpeg', buffer: fs.readFileSync(path.join(scratch, 'train', c, `${String(i).padStart(4, '0')}.jpg`)) });
  return Object.fromEntries(CLASSES.map((c) => [c, Array.from({ length: PER_CLASS + 1 }, (_, i) => file(c, i))]));
}

const shared = isolatedBrowser();



async function project(page, files) {
  await page.click('#add-class');
  for (const [i, c] of CLASSES.entries()) {
    await card(page, i).locator('.class-name').fill(c);
    await card(page, i).locator('.class-name').dispatchEvent('change');
    await addImages(page, i, files[c]);
  }
}

test('check these: a photo filed under the wrong class comes first, and one click moves it', { skip }, async () => {
  const files = photos();
  const { page, errors } = await openApp(shared.browser, shared.origin);
  // The 21st cat photo goes in among the automobiles.
  const planted = { ...files.cat[PER_CLASS], name: 'planted-cat.jpg' };
  await project(page, { automobile: [...files.automobile.slice(0, PER_CLASS), planted], cat: files.cat.slice(0, PER_CLASS), ship: files.ship.slice(0, PER_CLASS) });
  assert.deepEqual(await counts(page), [21, 20, 20]);
  await page.click('#train');
  // The check runs by itself after training.
  await page.waitForSelector('#check:not([hidden]) #check-list li', { timeout: 300_000 });
  const listed = await page.$$eval('#check-list li', (items) => items.map((li) => li.textContent));
  const rank = listed.findIndex((t) => t.startsWith('planted-cat.jpg'));
  console.log(`planted photo: rank ${rank + 1} of ${listed.length} listed; first: ${listed[0]}`);
  assert.ok(rank >= 0 && rank < 3, `the planted photo is in the top three: ${listed.slice(0, 5).join(' | ')}`);
  assert.match(listed[rank], /in "automobile", looks like "cat"/);
  // The map rings the images the check's heads put in another class: the planted one among them.
  await page.click('#map-panel summary');
  await page.waitForFunction(() => Number(document.querySelector('#feature-map').dataset.dots) === 61, null, { timeout: 60_000 });
  const ringed = Number(await page.getAttribute('#feature-map', 'data-ringed'));
  assert.ok(ringed >= 1 && ringed < 61, `${ringed} ringed`);
  assert.match(await page.textContent('#map-state'), /61 images; \d+ ringed/);
  await page.locator('#check-list li', { hasText: 'planted-cat.jpg' }).getByRole('button', { name: 'Move to cat' }).click();
  assert.deepEqual(await counts(page), [20, 21, 20]);
  assert.equal(await page.locator('#check-list li', { hasText: 'planted-cat.jpg' }).count(), 0, 'a moved image leaves the list');

  // The map: one dot per image; hovering shows the image; clicking opens it to move or remove.
  await page.waitForFunction(() => Number(document.querySelector('#feature-map').dataset.dots) === 61, null, { timeout: 60_000 });
  assert.equal(await page.getAttribute('#feature-map', 'aria-label'), 'Feature map');
  const dot = await page.evaluate(() => {
    // Find a pixel painted by a dot: the canvas keeps no DOM per dot.
    const canvas = document.querySelector('#feature-map');
    canvas.scrollIntoView({ block: 'center' });
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let y = 0; y < canvas.height; y += 1) {
      for (let x = 0; x < canvas.width; x += 1) {
        if (data[(y * canvas.width + x) * 4 + 3] === 255) {
          const box = canvas.getBoundingClientRect();
          return { x: box.left + ((x + 1) * box.width) / canvas.width, y: box.top + ((y + 2) * box.height) / canvas.height };
        }
      }
    }
    return null;
  });
  assert.ok(dot, 'dots are drawn');
  await page.mouse.move(dot.x, dot.y);
  await page.waitForSelector('#map-tip:not([hidden]) img[src^="blob:"]');
  const hovered = await page.textContent('#map-tip span');
  await page.mouse.click(dot.x, dot.y);
  await page.waitForSelector('#sample-dialog[open]');
  assert.ok(hovered.startsWith(await page.textContent('#sample-name')), `${hovered} opened`);
  // Move it to the next class, then open it again and remove it.
  const before = await counts(page);
  const from = await page.$eval('#sample-class', (select) => select.selectedIndex);
  await page.selectOption('#sample-class', { index: (from + 1) % 3 });
  await page.click('#sample-move');
  const moved = await counts(page);
  assert.equal(moved[(from + 1) % 3], before[(from + 1) % 3] + 1, `moved: ${before} → ${moved}`);
  assert.equal(moved[from], before[from] - 1);
  await page.waitForTimeout(1500); // the map redraws a second after the last change
  await page.mouse.click(dot.x, dot.y);
  await page.waitForSelector('#sample-dialog[open]');
  assert.equal(await page.$eval('#sample-class', (select) => select.selectedIndex), (from + 1) % 3, 'it is in its new class');
  await page.click('#sample-remove');
  assert.equal((await counts(page)).reduce((a, b) => a + b), 60);
  await page.waitForFunction(() => Number(document.querySelector('#feature-map').dataset.dots) === 60, null, { timeout: 60_000 });
  // Reloading keeps the project as edited.
  await page.waitForFunction(() => document.querySelector('#save-state').textContent === 'Saved in this browser');
  await page.reload();
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 120_000 });
  assert.equal((await counts(page)).reduce((a, b) => a + b), 60);
  assert.deepEqual(errors, []);
  await page.close();
});

test('where the model looks: on a cat beside a ship, the map sits on the cat for "cat" and on the ship for "ship"', { skip }, async () => {
  const files = photos();
  const { page, errors } = await openApp(shared.browser, shared.origin);
  await project(page, { automobile: files.automobile.slice(0, PER_CLASS), cat: files.cat.slice(0, PER_CLASS), ship: files.ship.slice(0, PER_CLASS) });
  await page.click('#train');
  await page.waitForFunction(() => document.querySelector('#train-status').textContent.startsWith('Trained'), null, { timeout: 300_000 });
  // Grey, with a held-out cat photo in the top-left quarter and a ship photo in the bottom-right one.
  const picture = await page.evaluate(async ([cat, ship]) => {
    const bitmap = async (b64) => createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: 'image/jpeg' }));
    const canvas = new OffscreenCanvas(64, 64);
    const g = canvas.getContext('2d');
    g.fillStyle = '#808080';
    g.fillRect(0, 0, 64, 64);
    g.drawImage(await bitmap(cat), 0, 0);
    g.drawImage(await bitmap(ship), 32, 32);
    const out = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
    return btoa(String.fromCharCode(...out));
  }, [files.cat[PER_CLASS].buffer.toString('base64'), files.ship[PER_CLASS].buffer.toString('base64')]);
  await page.check('#show-looks');
  await page.setInputFiles('#preview-file', { name: 'cat-and-ship.png', mimeType: 'image/png', buffer: Buffer.from(picture, 'base64') });
  await page.waitForSelector('#looks:not([hidden]) #looks-image[data-peak]');
  const peakFor = async (cls) => {
    const index = String(CLASSES.indexOf(cls));
    await page.click(`#predictions li[data-class-index="${index}"]`);
    await page.waitForFunction((i) => document.querySelector('#looks-image').dataset.classIndex === i, index);
    return (await page.getAttribute('#looks-image', 'data-peak')).split(',').map(Number);
  };
  const size = (await page.getAttribute('#looks-image', 'data-size')).split(',').map(Number);
  assert.deepEqual(size, [7, 7]);
  const cat = await peakFor('cat');
  const ship = await peakFor('ship');
  console.log(`peaks on a 7×7 map: cat at ${cat}, ship at ${ship}`);
  assert.ok(cat[0] <= 3 && cat[1] <= 3, `the cat's map peaks in the top-left: ${cat}`);
  assert.ok(ship[0] >= 3 && ship[1] >= 3, `the ship's map peaks in the bottom-right: ${ship}`);
  assert.notDeepEqual(cat, ship);
  assert.match(await page.textContent('#looks-caption'), /Where the model looks for "ship"/);
  await page.uncheck('#show-looks');
  assert.equal(await page.isHidden('#looks'), true);
  assert.deepEqual(errors, []);
  await page.close();
});
