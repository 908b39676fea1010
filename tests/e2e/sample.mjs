// End-to-end test of the real app: serves the trunk build (dist/) on loopback, drives the system
// Chromium (headless, WebGPU through SwiftShader) with playwright-core, and checks what a user sees.
//   node tests/e2e/sample.mjs            (after `trunk build`)
// Screenshots go to tests/e2e/artifacts/.
import path from "node:path";
import fs from "node:fs";
import { artifacts, launchBrowser, startServer, waitState, withPage as openPage } from "./harness.mjs";

fs.mkdirSync(artifacts, { recursive: true });
const { server, base } = await startServer();
const browser = await launchBrowser();
const withPage = (fn) => openPage(browser, fn);
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

function assert(cond, message) { if (!cond) throw new Error(message); }

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
