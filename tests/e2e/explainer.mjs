// End-to-end test of the explainer page: the built page loads in headless Chromium, every
// section reaches its ready state from live computation, moving t recomputes the figures,
// no console errors; screenshots go to tests/e2e/artifacts/.
//   node tests/e2e/explainer.mjs            (after scripts/build-web.sh)
import path from "node:path";
import fs from "node:fs";
import { artifacts, assert, launchBrowser, startServer, testRunner, waitState, withPage } from "./harness.mjs";

fs.mkdirSync(artifacts, { recursive: true });
const { server, base } = await startServer();
const browser = await launchBrowser();
const { test, finish } = testRunner();
const SECTIONS = ["forward", "elbo", "params", "score", "step", "paths"];
const allReady = (page, timeout) => page.waitForFunction((ids) => document.body.dataset.state === "error"
  || ids.every((id) => document.getElementById(id).dataset.ready === "1"), SECTIONS, { timeout, polling: 200 });

// On the CPU fallback every section completes, the full 1000-term ELBO sweep twice.
await test("explainer_sections_compute_and_follow_the_t_slider_on_the_cpu", () => withPage(browser, async (page, errors) => {
  await page.goto(`${base}/explainer.html?digit=3&t=200&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  await allReady(page, 10 * 60 * 1000);
  const state = await page.evaluate(() => document.body.dataset.state);
  assert(state === "ready", `state ${state}: ${await page.textContent("#message")}`);
  assert(await page.evaluate(() => document.body.dataset.backend) === "cpu", "backend");
  const r = await page.evaluate(() => window.explainer.results);
  assert(r.elbo.total_bits > 0 && r.elbo.total_bits < 10, `NLL bound ${r.elbo.total_bits} bits/dim`);
  assert(r.views.t === 200 && r.views.route_max_diff < 1e-5, `routes differ by ${r.views.route_max_diff}`);
  assert(r.views.tweedie_vs_predicted_x0 < 1e-4, `Tweedie vs x0: ${r.views.tweedie_vs_predicted_x0}`);
  assert(r.toyMaxDiff < 1e-8, `2-D fields differ by ${r.toyMaxDiff}`);
  // Section 6: both processes match q_t (400 points: exact draws differ by about 0.05), while
  // their paths differ; the second-order solver beats DDIM at every step count.
  const c = r.paths.check;
  assert(c.sde_to_exact < 4 * c.exact_floor + 0.05 && c.ode_to_exact < 4 * c.exact_floor + 0.05, `paths vs q_t: ${JSON.stringify(c)}`);
  assert(c.mean_separation > 0.3, `SDE and ODE points should differ: ${JSON.stringify(c)}`);
  assert(r.paths.solvers.length === 3 && r.paths.solvers.every((row) => row.dpm_solver < row.ddim), JSON.stringify(r.paths.solvers));
  assert(await page.evaluate(() => document.querySelector("#paths").dataset.state) === "ready", "section 6 state");
  console.log(`  cpu: bound ${r.elbo.total_bits.toFixed(4)} bits/dim; routes ${r.views.route_max_diff.toExponential(2)}; Tweedie ${r.views.tweedie_vs_predicted_x0.toExponential(2)}`);
  await page.screenshot({ path: path.join(artifacts, "explainer-cpu.png"), fullPage: true });
  // Moving t recomputes sections 1, 3, 4 and 5.
  const before = await page.textContent("#step-values");
  await page.$eval("#t", (el) => { el.value = "20"; el.dispatchEvent(new Event("input")); });
  await page.waitForFunction(() => window.explainer.results.views.t === 20 && document.getElementById("score").dataset.ready === "1", null, { timeout: 5 * 60 * 1000 });
  assert(await page.textContent("#step-values") !== before, "the KL did not change with t");
  const pathsBefore = JSON.stringify(r.paths.check);
  await page.waitForFunction((b) => document.getElementById("paths").dataset.ready === "1" && JSON.stringify(window.explainer.results.paths.check) !== b, pathsBefore, { timeout: 5 * 60 * 1000 });
  // A new noise draw adds to the spread.
  await page.click("#elbo-redraw");
  await page.waitForFunction(() => window.explainer.results.elboDraws.length === 2, null, { timeout: 10 * 60 * 1000 });
  assert((await page.textContent("#elbo-draws")).includes("Over 2 noise draws"), "spread over draws not shown");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// On WebGPU (SwiftShader, about 4 minutes per 1000-term sweep here) the per-t sections complete
// and the sweep makes progress; the browser suite checks WebGPU's ELBO terms against native.
await test("explainer_computes_on_webgpu", () => withPage(browser, async (page, errors) => {
  await page.goto(`${base}/explainer.html?digit=3&t=200`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  await page.waitForFunction(() => document.body.dataset.state === "error"
    || ["forward", "params", "score", "step", "paths"].every((id) => document.getElementById(id).dataset.ready === "1"), null, { timeout: 10 * 60 * 1000, polling: 200 });
  assert(await page.evaluate(() => document.body.dataset.state) === "ready", await page.textContent("#message"));
  assert(await page.evaluate(() => document.body.dataset.backend) === "webgpu", "default backend should be WebGPU");
  await page.waitForFunction(() => document.getElementById("elbo-progress").value >= 100, null, { timeout: 5 * 60 * 1000 });
  const r = await page.evaluate(() => window.explainer.results);
  assert(r.views.route_max_diff < 1e-5 && r.views.tweedie_vs_predicted_x0 < 1e-4, JSON.stringify(r.views));
  await page.screenshot({ path: path.join(artifacts, "explainer-webgpu.png"), fullPage: true });
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// Redraw, change the digit, redraw while the sweep runs: each image's spread holds only its own
// draws, and a superseded sweep adds nothing.
await test("explainer_keeps_the_spread_of_the_bound_per_image", () => withPage(browser, async (page, errors) => {
  await page.goto(`${base}/explainer.html?digit=0&t=200&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  await page.waitForFunction(() => document.getElementById("elbo").dataset.ready === "1", null, { timeout: 5 * 60 * 1000 });
  await page.click("#elbo-redraw");
  await page.waitForFunction(() => (window.explainer.results.drawsByImage["digit 0"] || []).length === 2, null, { timeout: 5 * 60 * 1000 });
  await page.selectOption("#digit", "5");
  await page.waitForFunction(() => document.getElementById("elbo-progress").value > 0, null, { timeout: 60 * 1000 });
  await page.click("#elbo-redraw");
  await page.waitForFunction(() => document.getElementById("elbo").dataset.ready === "1"
    && (window.explainer.results.drawsByImage["digit 5"] || []).length >= 1, null, { timeout: 5 * 60 * 1000 });
  const r = await page.evaluate(() => window.explainer.results);
  assert(r.drawsByImage["digit 0"].length === 2, `digit 0 has ${r.drawsByImage["digit 0"].length} draws`);
  const five = r.drawsByImage["digit 5"];
  const zero = r.drawsByImage["digit 0"].map((d) => d.bits);
  assert(five.every((d) => !zero.includes(d.bits)), `a draw of digit 0 landed in digit 5's spread: ${JSON.stringify(r.drawsByImage)}`);
  assert(r.elboDraws.length === five.length, "the page shows another image's draws");
  const text = await page.textContent("#elbo-draws");
  if (five.length > 1) assert(text.includes(`Over ${five.length} noise draws of this image`), text);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await test("explainer_rejects_out_of_range_url_parameters", () => withPage(browser, async (page) => {
  await page.goto(`${base}/explainer.html?digit=42&t=0&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const message = await page.textContent("#message");
  assert(message.includes("digit=42") && message.includes("t=0"), message);
}));

await browser.close();
server.close();
finish("explainer e2e");
