// The three browser engines behind one small interface, so that one walk through the app runs in
// each: Chromium (Debian's `chromium`, driven by playwright-core), Firefox ESR (Debian's
// `firefox-esr`, WebDriver BiDi through puppeteer-core) and WebKitGTK (Debian's
// `webkit2gtk-driver`: WebKitWebDriver and its MiniBrowser, through selenium-webdriver, on a
// virtual display of its own: MiniBrowser has no working headless mode here).
//
// A browser gives fresh profiles (`profile()`: its own storage, as a new visitor has); a profile
// opens tabs; a tab runs functions in the page (`evaluate(fn, arg)`, awaited, JSON-able results)
// and sets files on a file input as a person picking them would (`setFiles`).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { Builder, By } from 'selenium-webdriver';

export const ENGINES = ['chromium', 'firefox', 'webkit'];

const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const missing = (file, install) => {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${install} (scripts/setup.sh test installs it)`);
};

/// Chromium's command line for every test: headless, quiet, a synthetic camera granted without a
/// prompt.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

export async function launch(engine) {
  if (engine === 'chromium') return launchChromium();
  if (engine === 'firefox') return launchFirefox();
  if (engine === 'webkit') return launchWebKit();
  throw new Error(`unknown engine ${engine}: expected one of ${ENGINES.join(', ')}`);
}

/// `body(browser, engine)` for each engine of ENGINES in turn, on a fresh browser closed after it
/// whatever happens.
export async function inEachEngine(body) {
  for (const engine of ENGINES) {
    const browser = await launch(engine);
    try {
      await body(browser, engine);
    } finally {
      await browser.close();
    }
  }
}

async function launchChromium() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  missing(executablePath, 'apt-get install chromium');
  const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  return contextBrowser({
    name: 'Chromium',
    version: browser.version(),
    newContext: () => browser.newContext(),
    setFiles: (page, selector, paths) => page.setInputFiles(selector, paths),
    close: () => browser.close(),
  });
}

async function launchFirefox() {
  const executablePath = process.env.FIREFOX ?? '/usr/bin/firefox-esr';
  missing(executablePath, 'apt-get install firefox-esr');
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath,
    headless: true,
    // A synthetic camera, granted without a prompt, for the webcam.
    extraPrefsFirefox: { 'media.navigator.streams.fake': true, 'media.navigator.permission.disabled': true },
  });
  return contextBrowser({
    name: 'Firefox',
    version: await browser.version(),
    newContext: () => browser.createBrowserContext(),
    setFiles: async (page, selector, paths) => (await page.$(selector)).uploadFile(...paths),
    close: () => browser.close(),
  });
}

/// Chromium's and Firefox's drivers alike: a profile is a browser context, a tab its page; only
/// setting files on an input is each driver's own.
function contextBrowser({ name, version, newContext, setFiles, close }) {
  return {
    name,
    version,
    async profile() {
      const context = await newContext();
      return {
        async open(url) {
          const page = await context.newPage();
          await page.goto(url);
          return {
            evaluate: (fn, arg) => page.evaluate(fn, arg),
            setFiles: (selector, paths) => setFiles(page, selector, paths),
            reload: () => page.reload().then(() => {}),
            close: () => page.close(),
          };
        },
        close: () => context.close(),
      };
    },
    close,
  };
}

const freePort = () => new Promise((resolve, reject) => {
  const probe = net.createServer();
  probe.on('error', reject);
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});

/// WebKitGTK: each profile is a WebDriver session of its own (a MiniBrowser with fresh, ephemeral
/// storage), all under one WebKitWebDriver on one virtual display.
async function launchWebKit() {
  missing('/usr/bin/WebKitWebDriver', 'apt-get install webkit2gtk-driver');
  missing(MINIBROWSER, 'apt-get install webkit2gtk-driver');
  missing('/usr/bin/xvfb-run', 'apt-get install xvfb');
  const port = await freePort();
  // Its own process group, so that closing ends the display server with the driver.
  const driverProcess = spawn('xvfb-run', ['-a', '/usr/bin/WebKitWebDriver', `--port=${port}`],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let driverLog = '';
  driverProcess.stderr.on('data', (d) => { driverLog = (driverLog + d).slice(-4000); });
  const server = `http://127.0.0.1:${port}`;
  for (let tries = 0; ; tries++) {
    try {
      if ((await fetch(`${server}/status`)).ok) break;
    } catch {
      // not listening yet
    }
    if (tries > 100) throw new Error(`WebKitWebDriver did not start: ${driverLog}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const sessions = new Set();
  const version = await webkitVersion();
  return {
    name: 'WebKitGTK',
    version,
    async profile() {
      const driver = await new Builder().usingServer(server).withCapabilities({
        browserName: 'MiniBrowser',
        // WebKit's mock camera stands in for a webcam.
        'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation', '--enable-media-stream=true', '--enable-mock-capture-devices=true'] },
      }).build();
      sessions.add(driver);
      let opened = false;
      return {
        async open(url) {
          // One tab per session: MiniBrowser's automation window.
          if (opened) throw new Error('a WebKitGTK profile opens one tab');
          opened = true;
          await driver.get(url);
          return {
            evaluate: (fn, arg) => driver.executeScript(fn, arg),
            setFiles: async (selector, paths) => driver.findElement(By.css(selector)).sendKeys(paths.join('\n')),
            reload: () => driver.navigate().refresh(),
            close: async () => {},
          };
        },
        close: async () => {
          sessions.delete(driver);
          await driver.quit();
        },
      };
    },
    async close() {
      await Promise.all([...sessions].map((d) => d.quit().catch(() => {})));
      try {
        process.kill(-driverProcess.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    },
  };
}

/// The installed WebKitGTK's version, from dpkg (the user agent names Safari's, not WebKitGTK's).
async function webkitVersion() {
  const child = spawn('dpkg-query', ['-W', '-f=${Version}', 'libwebkit2gtk-4.1-0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  await new Promise((resolve) => child.on('close', resolve));
  return out.trim() || 'unknown';
}

/// Polls `fn(arg)` in the tab until it returns something truthy (and returns that), or fails after
/// `timeout` ms with `what` and the page's status line.
export async function waitFor(tab, fn, arg, { timeout = 120_000, what = 'the page' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await tab.evaluate(fn, arg);
    if (value) return value;
    if (Date.now() > deadline) {
      const status = await tab.evaluate(() => document.querySelector('#status')?.textContent);
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; the status line says: ${status}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
