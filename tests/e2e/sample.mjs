// End-to-end test of the real app: serves the trunk build (dist/) on loopback, drives the system
// Chromium (headless, WebGPU through SwiftShader) with playwright-core, and checks what a user sees.
//   node tests/e2e/sample.mjs            (after `trunk build`)
// Screenshots go to tests/e2e/artifacts/.
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const dist = path.join(root, "dist");
const artifacts = path.join(here, "artifacts");
fs.mkdirSync(artifacts, { recursive: true });
const chromeArgs = JSON.parse(fs.readFileSync(path.join(root, "webdriver.json"), "utf8"))["goog:chromeOptions"].args
  .filter((a) => !a.startsWith("--headless"));

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css", ".json": "application/json" };

// /broken-missing/ serves the app without weights/unet.bpk; /broken-corrupt/ with one byte flipped.
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
  if (mode === "corrupt" && url.endsWith("unet.bpk")) { body = Buffer.from(body); body[body.length >> 1] ^= 0xff; }
  res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  res.end(body);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: chromeArgs });
let passed = 0, failed = 0;

async function withPage(fn) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  try { return await fn(page, errors); } finally { await page.close(); }
}

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

function assert(cond, message) { if (!cond) throw new Error(message); }

const waitState = (page, states, timeout) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout, polling: 250 });

async function sampleSeven(backend) {
  return withPage(async (page, errors) => {
    await page.goto(`${base}/?digit=7&steps=50&count=4&seed=7&start=1${backend ? `&backend=${backend}` : ""}`);
    await waitState(page, ["done", "error"], 15 * 60 * 1000);
    const state = await page.evaluate(() => document.body.dataset.state);
    const message = await page.textContent("#message");
    assert(state === "done", `page ended in state ${state}: ${message}`);
    const used = await page.evaluate(() => document.body.dataset.backend);
    const steps = await page.evaluate(() => document.body.dataset.step);
    assert(steps === "50", `data-step is ${steps}, expected 50`);
    const labels = (await page.evaluate(() => document.body.dataset.labels)).split(",").map(Number);
    const onCanvas = Array.from(await page.evaluate(() => window.ddpm.classifyCanvas()));
    await page.screenshot({ path: path.join(artifacts, `sample-7-${used}.png`) });
    assert(JSON.stringify(onCanvas) === JSON.stringify(labels), `readout ${labels} but the canvas reads as ${onCanvas}`);
    assert(labels.filter((l) => l === 7).length >= 3, `asked for 7s, the classifier reads ${labels}`);
    assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
    console.log(`  backend ${used}: readout ${labels}, canvas ${onCanvas}`);
    return { used, labels };
  });
}

await test("samples_digit_7_with_ddim_50_on_the_default_backend", async () => {
  const { used } = await sampleSeven("");
  assert(used === "webgpu", `default backend was ${used}, expected webgpu (SwiftShader)`);
});

await test("samples_digit_7_on_the_cpu_fallback", async () => {
  const { used } = await sampleSeven("cpu");
  assert(used === "cpu", `backend was ${used}`);
});

await test("out_of_range_url_parameters_get_a_message_and_defaults", () => withPage(async (page) => {
  await page.goto(`${base}/?digit=12&count=5&seed=-3&backend=tpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const message = await page.textContent("#message");
  for (const part of ["digit=12", "count=5", "seed=-3", "backend=tpu"]) assert(message.includes(part), `message lacks ${part}: ${message}`);
  assert(await page.inputValue("#digit") === "-1", "digit did not fall back to its default");
}));

for (const [mode, expected] of [["missing", "HTTP 404"], ["corrupt", "SHA-256"]]) {
  await test(`${mode}_weights_give_a_clear_error`, () => withPage(async (page) => {
    await page.goto(`${base}/broken-${mode}/?backend=cpu`);
    await waitState(page, ["error", "ready"], 5 * 60 * 1000);
    const state = await page.evaluate(() => document.body.dataset.state);
    const message = await page.textContent("#message");
    assert(state === "error" && message.includes(expected), `state ${state}, message: ${message}`);
  }));
}

await test("stop_takes_effect_within_a_step_and_the_page_stays_usable", () => withPage(async (page, errors) => {
  await page.goto(`${base}/?digit=3&steps=0&count=1&backend=cpu&start=1`);
  await page.waitForFunction(() => {
    const s = document.body.dataset.state;
    return (s === "sampling" && Number(document.body.dataset.step) >= 3) || s === "error" || s === "done";
  }, null, { timeout: 5 * 60 * 1000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert(state === "sampling", `state ${state} before Stop: ${await page.textContent("#message")}`);
  await page.click("#stop");
  await waitState(page, ["ready"], 60 * 1000);
  const stopped = Number(await page.evaluate(() => document.body.dataset.step));
  await page.waitForTimeout(1500);
  const later = Number(await page.evaluate(() => document.body.dataset.step));
  assert(later === stopped, `steps went on after Stop: ${stopped} -> ${later}`);
  assert(stopped < 1000, "the run finished instead of stopping");
  await page.fill("#steps", "10");
  await page.click("#start");
  await waitState(page, ["done", "error"], 5 * 60 * 1000);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", "a run after Stop did not finish");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await browser.close();
server.close();
console.log(`\ne2e: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
