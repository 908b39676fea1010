// Shared by the e2e test and the browser benchmark: a static server for dist/ on loopback and
// the system Chromium driven by playwright-core with the flags from webdriver.json.
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const artifacts = path.join(here, "artifacts");
const defaultDist = path.join(root, "dist");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

// /broken-missing/ serves the app without weights/unet.bpk; /broken-corrupt/ with one byte flipped.
// `rewrites` maps a path to a function of the body served there (a test's stand-in for a new deploy).
export async function startServer(dist = defaultDist) {
  const rewrites = new Map();
  if (!fs.existsSync(path.join(dist, "index.html"))) throw new Error(`${dist} is missing: run scripts/build-web.sh first`);
  const server = http.createServer((req, res) => {
    let url = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let mode = "ok";
    for (const m of ["missing", "corrupt"]) {
      if (url.startsWith(`/broken-${m}/`)) { mode = m; url = url.slice(`/broken-${m}`.length); }
    }
    if (url.endsWith("/")) url += "index.html";
    const file = path.join(dist, path.normalize(url));
    if (!file.startsWith(dist) || !fs.existsSync(file) || (mode === "missing" && url.endsWith("unet.bpk"))) {
      res.writeHead(404); res.end("not found"); return;
    }
    let body = fs.readFileSync(file);
    if (rewrites.has(url)) body = Buffer.from(rewrites.get(url)(body.toString("utf8")));
    if (mode === "corrupt" && url.endsWith("unet.bpk")) { body = Buffer.from(body); body[body.length >> 1] ^= 0xff; }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    res.end(body);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, base: `http://127.0.0.1:${server.address().port}`, rewrites };
}

export async function launchBrowser(extraArgs = []) {
  const args = JSON.parse(fs.readFileSync(path.join(root, "webdriver.json"), "utf8"))["goog:chromeOptions"].args
    .filter((a) => !a.startsWith("--headless"));
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: [...args, ...extraArgs] });
}

export async function withPage(browser, fn) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  try { return await fn(page, errors); } finally { await page.close(); }
}

export const waitState = (page, states, timeout) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout, polling: 100 });

export function assert(cond, message) { if (!cond) throw new Error(message); }

// A minimal runner: `test(name, fn)` runs fn, prints ok or FAILED with the error, and keeps count;
// E2E_ONLY=part runs only the tests whose names contain it. `finish(label)` prints and exits.
export function testRunner() {
  let passed = 0, failed = 0;
  const only = process.env.E2E_ONLY;
  async function test(name, fn) {
    if (only && !name.includes(only)) return;
    const start = Date.now();
    try {
      await fn();
      passed += 1;
      console.log(`test ${name} ... ok (${((Date.now() - start) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed += 1;
      console.log(`test ${name} ... FAILED\n  ${e.stack ?? e}`);
    }
  }
  function finish(label) {
    console.log(`\n${label}: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  }
  return { test, finish };
}
