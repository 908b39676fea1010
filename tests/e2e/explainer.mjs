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
const SECTIONS = ["forward", "elbo", "params", "score", "step", "paths", "compare"];
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
  // The bound under each reverse variance: the sampler's own (β) first and equal to the headline;
  // the learned variance is the shipped channel's and, like β̃, below β for this digit.
  const bound = Object.fromEntries(r.elboBounds.map((b) => [b.variance, b.total_bits]));
  assert(r.elboBounds.map((b) => b.variance).join() === "beta,beta_tilde,learned", JSON.stringify(r.elboBounds));
  assert(Math.abs(bound.beta - r.elbo.total_bits) < 1e-9, `β bound ${bound.beta} vs headline ${r.elbo.total_bits}`);
  assert(bound.learned < bound.beta && bound.beta_tilde < bound.beta, JSON.stringify(bound));
  const variances = await page.textContent("#elbo-variances");
  assert(variances.includes("learned") && variances.includes(bound.learned.toFixed(4)), variances);
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
  console.log(`  cpu: bound ${r.elbo.total_bits.toFixed(4)} bits/dim (β̃ ${bound.beta_tilde.toFixed(4)}, learned ${bound.learned.toFixed(4)}); routes ${r.views.route_max_diff.toExponential(2)}; Tweedie ${r.views.tweedie_vs_predicted_x0.toExponential(2)}`);
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

// Section 7: once the sections above are computed, the 2-D model trains itself in the tab; on
// the CPU it reaches the fit threshold within the 20 s the issue asks (printed); then a drawn
// target trains too, and a drawing with too few points is refused with a message.
await test("explainer_trains_a_2d_model_in_the_tab_on_the_cpu", () => withPage(browser, async (page, errors) => {
  await page.goto(`${base}/explainer.html?digit=3&t=20&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const done = (timeout) => page.waitForFunction(() => document.body.dataset.state === "error"
    || ["done", "stopped"].includes(window.explainer.results.training?.state), null, { timeout, polling: 250 });
  await done(10 * 60 * 1000);
  let r = (await page.evaluate(() => window.explainer.results)).training;
  assert(r.state === "done" && r.backend === "cpu" && r.prediction === "noise" && r.target === "blobs", JSON.stringify(r));
  assert(r.fit.distance <= r.fit.threshold && r.firstGood, `fit ${JSON.stringify(r.fit)}`);
  assert(await page.evaluate(() => document.getElementById("train").dataset.state) === "ready", "section 7 state");
  const p = r.paths;
  console.log(`  trained model's SDE/ODE at t = 20: ${JSON.stringify(p)}`);
  assert(p && p.sde_to_exact < r.fit.threshold + 2 * p.exact_floor && p.ode_to_exact < r.fit.threshold + 2 * p.exact_floor && p.mean_separation > 0.1, JSON.stringify(p));
  console.log(`  trained in the tab (cpu): ${r.step} steps in ${r.seconds.toFixed(1)} s (${(r.step / r.seconds).toFixed(0)} steps/s), `
    + `distance ${r.fit.distance.toFixed(4)} (floor ${r.fit.floor.toFixed(4)}, threshold ${r.fit.threshold}); `
    + `first under the threshold at step ${r.firstGood.step}, ${r.firstGood.seconds.toFixed(1)} s`);
  await page.locator("#train").screenshot({ path: path.join(artifacts, "explainer-train-cpu.png") });
  // A drawing: too few points are refused (Train stays disabled), then a stroke of points trains.
  await page.selectOption("#train-target", "drawn");
  await page.locator("#train-pad").scrollIntoViewIfNeeded();
  const pad = await page.locator("#train-pad").boundingBox();
  await page.mouse.click(pad.x + pad.width * 0.3, pad.y + pad.height * 0.3);
  assert(await page.isDisabled("#train-start"), "Train should wait for enough points");
  await page.mouse.move(pad.x + pad.width * 0.2, pad.y + pad.height * 0.7);
  await page.mouse.down();
  for (let k = 0; k <= 20; k++) await page.mouse.move(pad.x + pad.width * (0.2 + 0.6 * k / 20), pad.y + pad.height * (0.7 - 0.4 * k / 20));
  await page.mouse.up();
  const count = await page.textContent("#train-pad-count");
  assert(/^(1[0-9]|[2-9][0-9]) points/.test(count), count);
  await page.click("#train-start");
  await page.waitForFunction(() => window.explainer.results.training.target === "drawn", null, { timeout: 60 * 1000 });
  await done(10 * 60 * 1000);
  r = (await page.evaluate(() => window.explainer.results)).training;
  assert(r.state === "done" && r.fit.distance <= r.fit.threshold, `drawn target: ${JSON.stringify(r)}`);
  console.log(`  drawn target (${count}): ${r.seconds.toFixed(1)} s, distance ${r.fit.distance.toFixed(4)} (floor ${r.fit.floor.toFixed(4)})`);
  await page.locator("#train").screenshot({ path: path.join(artifacts, "explainer-train-drawn.png") });
  // Flow matching on a preset: it fits, and its table compares Euler with Heun by step count.
  assert(r.steps.some((row) => row.sampler.startsWith("DDIM")), `a diffusion model's table: ${JSON.stringify(r.steps)}`);
  await page.selectOption("#train-target", "ring");
  await page.selectOption("#train-prediction", "flow");
  assert((await page.textContent("#train-prediction-help")).includes("straight"), "flow matching's help");
  await page.click("#train-start");
  await page.waitForFunction(() => window.explainer.results.training.prediction === "flow", null, { timeout: 60 * 1000 });
  await done(10 * 60 * 1000);
  r = (await page.evaluate(() => window.explainer.results)).training;
  assert(r.state === "done" && r.fit.distance <= r.fit.threshold, `flow matching: ${JSON.stringify(r)}`);
  const euler = r.steps.filter((row) => row.sampler === "Euler"), heun = r.steps.filter((row) => row.sampler === "Heun");
  assert(euler.length === 6 && heun.length === 6 && euler[0].distance > euler[5].distance && heun[5].distance <= r.fit.threshold, JSON.stringify(r.steps));
  assert(await page.$$eval("#train-steps tbody tr", (rows) => rows.length) === 6, "the steps table");
  console.log(`  flow matching on the ring: ${r.seconds.toFixed(1)} s, distance ${r.fit.distance.toFixed(4)}; Euler 1/32 steps ${euler[0].distance.toFixed(3)}/${euler[5].distance.toFixed(3)}, Heun ${heun[0].distance.toFixed(3)}/${heun[5].distance.toFixed(3)}`);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// Section 8: the shipped samplers-against-steps table is drawn and listed; two samplers run side by
// side on the same digit and seed, each to its end, and the classifier reads the digit in both.
await test("explainer_runs_two_samplers_side_by_side_on_the_cpu", () => withPage(browser, async (page, errors) => {
  await page.goto(`${base}/explainer.html?digit=3&t=200&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  await page.waitForFunction(() => document.getElementById("compare").dataset.state === "ready", null, { timeout: 5 * 60 * 1000 });
  const rows = await page.$$eval("#steps-table tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert(rows.length >= 5 && rows.every((r) => r.length === 4), JSON.stringify(rows));
  await page.selectOption("#compare-a-sampler", "ddim");
  await page.fill("#compare-a-steps", "20");
  await page.selectOption("#compare-b-sampler", "dpm2m");
  await page.fill("#compare-b-steps", "10");
  await page.selectOption("#compare-digit", "7");
  await page.click("#compare-run");
  await page.waitForFunction(() => ["done", "failed", "stopped"].includes(window.explainer.results.compare?.state), null, { timeout: 5 * 60 * 1000 });
  const c = (await page.evaluate(() => window.explainer.results)).compare;
  assert(c.state === "done" && c.a.total === 20 && c.b.total === 10 && c.a.done === 20 && c.b.done === 10, JSON.stringify(c));
  assert(c.a.read.filter((d) => d === 7).length >= 3 && c.b.read.filter((d) => d === 7).length >= 3, `read ${c.a.read} | ${c.b.read}`);
  console.log(`  side by side: DDIM 20 steps ${c.a.seconds.toFixed(1)} s, DPM-Solver++ 10 steps ${c.b.seconds.toFixed(1)} s; read ${c.a.read} | ${c.b.read}`);
  await page.locator("#compare").screenshot({ path: path.join(artifacts, "explainer-compare.png") });
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
