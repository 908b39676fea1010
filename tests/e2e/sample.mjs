// End-to-end test of the real app: serves the trunk build (dist/) on loopback, drives the system
// Chromium (headless, WebGPU through SwiftShader) with playwright-core, and checks what a user sees.
//   node tests/e2e/sample.mjs            (after scripts/build-web.sh)
// Screenshots go to tests/e2e/artifacts/.
import path from "node:path";
import fs from "node:fs";
import { artifacts, assert, launchBrowser, startServer, testRunner, waitState, withPage as openPage } from "./harness.mjs";

fs.mkdirSync(artifacts, { recursive: true });
const { server, base } = await startServer();
const browser = await launchBrowser();
const withPage = (fn) => openPage(browser, fn);
const { test, finish } = testRunner();
// Set a control as a person would (sliders cannot be typed into) and let the page react.
const setControl = (page, id, value) => page.$eval(`#${id}`, (el, v) => { el.value = v; el.dispatchEvent(new Event("input", { bubbles: true })); }, String(value));

// `noAdapter`: the page's navigator.gpu offers no adapter, as in a browser without WebGPU.
async function sampleSeven(backend, sampler = "sampler=ddim&steps=50", steps = "50", { noAdapter = false } = {}) {
  return withPage(async (page, errors) => {
    if (noAdapter) await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
    const wasm = [];
    page.on("request", (r) => { if (r.url().endsWith(".wasm")) wasm.push(r.url().split("/").pop()); });
    await page.goto(`${base}/?digit=7&${sampler}&count=4&seed=7&start=1${backend ? `&backend=${backend}` : ""}`);
    await waitState(page, ["done", "error"], 15 * 60 * 1000);
    const state = await page.evaluate(() => document.body.dataset.state);
    const message = await page.textContent("#message");
    assert(state === "done", `page ended in state ${state}: ${message}`);
    const used = await page.evaluate(() => document.body.dataset.backend);
    const drawn = await page.evaluate(() => document.body.dataset.step);
    assert(drawn === steps, `data-step is ${drawn}, expected ${steps}`);
    const labels = (await page.evaluate(() => document.body.dataset.labels)).split(",").map(Number);
    const onCanvas = Array.from(await page.evaluate(() => window.ddpm.classifyCanvas()));
    await page.screenshot({ path: path.join(artifacts, `sample-7-${used}-${sampler.replace(/[^a-z0-9]+/g, "-")}.png`) });
    assert(JSON.stringify(onCanvas) === JSON.stringify(labels), `readout ${labels} but the canvas reads as ${onCanvas}`);
    assert(labels.filter((l) => l === 7).length >= 3, `asked for 7s, the classifier reads ${labels}`);
    assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
    console.log(`  backend ${used}: readout ${labels}, canvas ${onCanvas}; downloaded ${wasm.join(", ")}`);
    assert(wasm.length === 1, `downloaded ${wasm.length} wasm files: ${wasm}`);
    return { used, labels, build: wasm[0].startsWith("ddpm-web-cpu") ? "cpu" : "webgpu", line: await page.textContent("#backend") };
  });
}

await test("samples_digit_7_with_ddim_50_on_the_default_backend", async () => {
  const { used, build } = await sampleSeven("");
  assert(used === "webgpu", `default backend was ${used}, expected webgpu (SwiftShader)`);
  assert(build === "webgpu", "a browser with a WebGPU adapter downloaded the CPU-only build");
});

await test("samples_digit_7_on_the_cpu_fallback", async () => {
  const { used } = await sampleSeven("cpu");
  assert(used === "cpu", `backend was ${used}`);
});

// A browser without a WebGPU adapter downloads the CPU-only build (no CubeCL) and computes with it.
await test("samples_digit_7_with_the_cpu_only_build_when_there_is_no_adapter", async () => {
  const { used, build, line } = await sampleSeven("", undefined, undefined, { noAdapter: true });
  assert(used === "cpu" && build === "cpu", `backend ${used}, build ${build}`);
  assert(line.includes("WebGPU is not used"), `the page does not say why WebGPU is not used: ${line}`);
});

// The second-order sampler: ten network evaluations draw readable 7s.
await test("samples_digit_7_with_dpm_solver_in_10_steps_on_the_cpu", async () => {
  await sampleSeven("cpu", "sampler=dpm2m&steps=10", "10");
});

// DDPM with the learned variance: all 1000 steps, each step's noise scaled by the variance
// channel's sigma per pixel; the samples still read as the digit asked for.
await test("samples_digit_7_with_ddpm_and_the_learned_variance_on_the_cpu", async () => {
  await sampleSeven("cpu", "sampler=ddpm-learned&every=100", "1000");
});

await test("out_of_range_url_parameters_get_a_message_and_defaults", () => withPage(async (page) => {
  await page.goto(`${base}/?digit=12&count=5&seed=-3&backend=tpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const message = await page.textContent("#notice");
  for (const part of ["digit=12", "count=5", "seed=-3", "backend=tpu"]) assert(message.includes(part), `notice lacks ${part}: ${message}`);
  assert(await page.inputValue("#digit") === "any", "digit did not fall back to its default");
  // Values the old page let through are refused on the URL and on Start alike.
  await page.goto(`${base}/?steps=1&backend=cpu&seed=${"9".repeat(10000)}`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const bounded = await page.textContent("#notice");
  assert(bounded.includes("steps") && bounded.length < 400, `notice of ${bounded.length} characters: ${bounded.slice(0, 200)}`);
  assert(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "a long URL value widened the page");
  await page.$eval("#seed", (el) => { el.value = ""; });
  await page.click("#start");
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Not started"), null, { timeout: 60 * 1000 });
  assert(await page.evaluate(() => document.body.dataset.state) === "ready", "an empty seed started a run");
}));

// A link with a wrong value that starts at once: the correction stays readable through the run it
// started and after it, until the reader sets a control.
await test("a_correction_stays_visible_while_the_run_it_started_proceeds", () => withPage(async (page, errors) => {
  await page.goto(`${base}/?steps=1&count=1&backend=cpu&start=1`);
  await waitState(page, ["sampling", "done", "error"], 5 * 60 * 1000);
  const during = [];
  while (await page.evaluate(() => document.body.dataset.state) === "sampling") {
    during.push(await page.evaluate(() => ({ notice: document.getElementById("notice").hidden ? "" : document.getElementById("notice").textContent, step: document.body.dataset.step })));
    await page.waitForTimeout(200);
  }
  assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
  assert(during.length > 0, "the run was never seen in progress");
  const lost = during.filter((d) => !d.notice.includes("steps=1"));
  assert(lost.length === 0, `the correction disappeared during the run at step(s) ${lost.map((d) => d.step)}`);
  assert((await page.textContent("#notice")).includes("steps=1") && await page.isVisible("#notice"), "the correction is gone after the run");
  assert((await page.inputValue("#steps")) === "50", "steps did not fall back to its default");
  await setControl(page, "seed", 2);
  await page.$eval("#seed", (el) => el.dispatchEvent(new Event("change", { bubbles: true })));
  assert(!(await page.isVisible("#notice")), "the notice outlived the reader's own change");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
  console.log(`  notice seen at ${during.length} moments of the run: ${during[0].notice}`);
}));

// "Any digit" (the default) draws one label per image from the seed and guides each image to it;
// the same seed gives the same images whatever the number of workers.
await test("any_digit_draws_a_label_per_image_the_same_across_1_2_3_workers", () => withPage(async (page, errors) => {
  const grids = [];
  for (const workers of [1, 2, 3]) {
    await page.goto(`${base}/?steps=10&count=4&seed=5&backend=cpu&workers=${workers}&start=1`);
    await waitState(page, ["done", "error"], 5 * 60 * 1000);
    assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
    assert(await page.evaluate(() => window.ddpm.workers()) === workers, `pool size for workers=${workers}`);
    assert((await page.textContent("#backend")).includes(`${workers} worker`), await page.textContent("#backend"));
    grids.push(await page.evaluate(() => document.getElementById("samples").toDataURL()));
    const drawn = await page.textContent("#drawn-labels");
    const read = (await page.evaluate(() => document.body.dataset.labels)).split(",");
    const labels = drawn.match(/\d/g);
    assert(labels && labels.length === 4, `drawn labels: ${drawn}`);
    assert(read.filter((l, k) => l === labels[k]).length >= 3, `drew ${labels}, the classifier reads ${read}`);
  }
  assert(grids[0] === grids[1] && grids[1] === grids[2], "1, 2 and 3 workers drew different images");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
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

// The first thing a visitor sees: the default run (any digit, the default guidance and sampler)
// at grid 64, seeds 1-4. The grids are saved to look at; nearly every cell reads as its digit.
await test("default_run_at_grid_64_draws_readable_digits_for_seeds_1_to_4", () => withPage(async (page, errors) => {
  for (const seed of [1, 2, 3, 4]) {
    await page.goto(`${base}/?count=64&seed=${seed}&every=50&backend=cpu&start=1`);
    await waitState(page, ["done", "error"], 10 * 60 * 1000);
    assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
    // The default guidance applies in an interval of t, and the page says which.
    const note = await page.textContent("#guidance-note");
    assert(/t = \d+ down to \d+/.test(note), `guidance note: ${note}`);
    await page.locator("#samples").screenshot({ path: path.join(artifacts, `default-grid64-seed${seed}.png`) });
    const labels = (await page.textContent("#drawn-labels")).match(/\d/g);
    const read = (await page.evaluate(() => document.body.dataset.labels)).split(",");
    const agree = read.filter((l, k) => l === labels[k]).length;
    console.log(`  seed ${seed}: ${agree} of 64 read as their drawn digit`);
    assert(labels.length === 64 && agree >= 60, `seed ${seed}: ${agree} of 64 cells read as the drawn digit (drew ${labels}, read ${read})`);
  }
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

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
  await setControl(page, "sampler", "ddim");
  await setControl(page, "steps", 10);
  await page.click("#start");
  await waitState(page, ["done", "error"], 5 * 60 * 1000);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", "a run after Stop did not finish");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// PNG width and height from the IHDR chunk.
function pngSize(file) {
  const b = fs.readFileSync(file);
  assert(b.subarray(1, 4).toString() === "PNG", `${file} is not a PNG`);
  return [b.readUInt32BE(16), b.readUInt32BE(20)];
}

await test("timeline_replays_kept_frames_and_downloads_grid_and_strip_pngs", () => withPage(async (page, errors) => {
  await page.goto(`${base}/?digit=4&guidance=2&steps=10&count=4&seed=3&backend=cpu&start=1`);
  await waitState(page, ["done", "error"], 5 * 60 * 1000);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
  assert(await page.getAttribute("#timeline", "max") === "9", "10 drawn steps should give 10 frames");
  const last = await page.evaluate(() => document.getElementById("samples").toDataURL());
  await page.fill("#timeline", "0");
  await page.waitForFunction(() => document.body.dataset.step === "1", null, { timeout: 60 * 1000 });
  const first = await page.evaluate(() => document.getElementById("samples").toDataURL());
  assert(first !== last, "replaying frame 1 did not change the canvas");
  assert(await page.evaluate(() => document.body.dataset.step) === "1", "frame 1 is step 1");
  // The replayed frame is what the tensors held: its readout equals the classifier on the canvas.
  const labels = await page.evaluate(() => document.body.dataset.labels);
  assert(String(Array.from(await page.evaluate(() => window.ddpm.classifyCanvas()))) === labels, "replayed readout differs from the canvas");
  await page.fill("#timeline", "9");
  await page.waitForFunction(() => document.body.dataset.step === "10", null, { timeout: 60 * 1000 });
  assert(await page.evaluate(() => document.getElementById("samples").toDataURL()) === last, "the last frame is not the final grid");
  const save = async (button) => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
    const file = path.join(artifacts, download.suggestedFilename());
    await download.saveAs(file);
    return { name: download.suggestedFilename(), size: pngSize(file) };
  };
  const grid = await save("#download-grid");
  assert(JSON.stringify(grid.size) === "[224,224]", `grid PNG is ${grid.size}, expected 2x2 digits at 4x`);
  assert(grid.name === "ddpm-digit4-ddim10-w2-seed3-grid.png", `grid file name ${grid.name}`);
  const strip = await save("#download-strip");
  // 4 rows (samples) x 10 columns (frames), 28 px tiles and 2 px gaps, at 4x.
  assert(JSON.stringify(strip.size) === JSON.stringify([(10 * 28 + 9 * 2) * 4, (4 * 28 + 3 * 2) * 4]), `strip PNG is ${strip.size}`);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await test("fifty_runs_in_a_row_do_not_grow_memory", () => withPage(async (page, errors) => {
  await page.goto(`${base}/?digit=1&steps=10&count=4&backend=cpu`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const memory = [];
  for (let run = 1; run <= 50; run++) {
    await setControl(page, "seed", run);
    await page.click("#start");
    await waitState(page, ["done", "error"], 60 * 1000);
    assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
    memory.push(await page.evaluate(() => window.ddpm.memory()));
  }
  const mb = (b) => (b / 2 ** 20).toFixed(2);
  console.log(`  live Rust heap after runs 1/5/50: ${memory[0].heapLiveBytes}/${memory[4].heapLiveBytes}/${memory[49].heapLiveBytes} bytes; `
    + `wasm memory ${mb(memory[0].wasmBytes)}/${mb(memory[4].wasmBytes)}/${mb(memory[49].wasmBytes)} MiB; JS heap ${mb(memory[4].jsHeapBytes)} -> ${mb(memory[49].jsHeapBytes)} MiB`);
  // Every run keeps the same state (the sampler and a 10-frame trajectory of 4 digits), so the
  // live heap after a run must not drift. (Wasm memory itself grows in 64 KiB pages when the
  // allocator's high-water mark moves, e.g. once by 0.88 MiB at run 45 of 160 with a flat heap.)
  assert(memory[49].heapLiveBytes === memory[4].heapLiveBytes, `live heap grew from ${memory[4].heapLiveBytes} to ${memory[49].heapLiveBytes} bytes over 45 runs`);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await test("a_lost_webgpu_device_is_recovered_without_a_reload", () => withPage(async (page) => {
  await page.goto(`${base}/?digit=2&steps=0&count=1&seed=5&start=1`);
  await page.waitForFunction(() => Number(document.body.dataset.step) >= 2 || ["error", "done"].includes(document.body.dataset.state), null, { timeout: 10 * 60 * 1000 });
  assert(await page.evaluate(() => document.body.dataset.backend) === "webgpu", "needs WebGPU (SwiftShader)");
  await page.evaluate(() => window.ddpm.loseDevice());
  // The step in flight may fail first (an error on the page) and the loss be reported a moment
  // later, which starts the recovery: wait for ready, or for an error that lasts 5 s.
  await page.waitForFunction(() => {
    const state = document.body.dataset.state;
    if (state !== "error") { window.errorSince = null; return state === "ready"; }
    window.errorSince ??= performance.now();
    return performance.now() - window.errorSince > 5000;
  }, null, { timeout: 10 * 60 * 1000, polling: 100 });
  const message = await page.textContent("#notice");
  assert(await page.evaluate(() => document.body.dataset.state) === "ready", `not recovered: ${await page.textContent("#message")}`);
  assert(message.includes("WebGPU device was lost"), `the notice does not say what happened: ${message}`);
  console.log(`  after the loss: ${message} / ${await page.textContent("#backend")}`);
  await setControl(page, "sampler", "ddim");
  await setControl(page, "steps", 10);
  await page.click("#start");
  await waitState(page, ["done", "error"], 10 * 60 * 1000);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", `a run after recovery failed: ${await page.textContent("#message")}`);
  assert(await page.evaluate(() => document.body.dataset.labels) === "2", "the recovered app does not draw a 2");
}));

await browser.close();
server.close();
finish("e2e");
