// Browser benchmark (headless Chromium on this machine). A benchmark, not a test: it prints figures
// and asserts nothing.
// - ms per reverse step for grids 1, 16 and 64 on each backend the browser offers, on the CPU with
//   one worker and with the whole pool (the pool's scaling);
// - page load to the first drawn step; the same and the CPU figures with the CPU-only build, which a
//   browser without a WebGPU adapter downloads ("cpu-only" in BENCH_BACKENDS);
// - on WebGPU, the GPU work per step as the worker's browser API sees it (compute dispatches =
//   kernel launches, queue submits, buffer reads);
// - the longest main-thread task (PerformanceObserver "longtask") during a grid-64 run and during
//   the explainer's full ELBO sweep, and the sweep's wall time.
//   scripts/build-web.sh && node tests/e2e/bench.mjs
// Environment: BENCH_PARTS ("steps,explainer": which parts run), BENCH_BACKENDS ("cpu,cpu-only,webgpu"), BENCH_STEPS_CPU (10), BENCH_STEPS_WEBGPU (3),
// BENCH_GRIDS_WEBGPU ("1,16,64"), BENCH_WORKERS (the pool size; default the browser's cores),
// NATIVE_MS_16 (native grid 16 on all cores, for the ratio; scripts/bench.sh sets it).
import { launchBrowser, startServer, waitState, withPage } from "./harness.mjs";

const env = process.env;
const steps = { cpu: Number(env.BENCH_STEPS_CPU ?? 10), webgpu: Number(env.BENCH_STEPS_WEBGPU ?? 3) };
const grids = { cpu: [1, 16, 64], webgpu: (env.BENCH_GRIDS_WEBGPU ?? "1,16,64").split(",").map(Number) };
steps["cpu-only"] = steps.cpu;
grids["cpu-only"] = grids.cpu;
const { server, base } = await startServer();
const browser = await launchBrowser();
console.log(`browser: Chromium ${browser.version()}`);
const results = {};

// Long tasks of the page's own thread, from the start.
function watchLongTasks() {
  window.longTasks = [];
  new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => ({ start: e.startTime, ms: e.duration }))))
    .observe({ type: "longtask", buffered: true });
}
const longestSince = (page, since) => page.evaluate((t) => Math.max(0, ...window.longTasks.filter((e) => e.start >= t).map((e) => e.ms)), since);

async function gpuCallsPerStep(page) {
  return page.evaluate(async () => {
    const d = window.ddpm;
    await d.bench({ grid: 1, steps: 1 });
    const diff = (before, now) => Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
    const since = (before, now) => ({ ...diff(before, now), kernels: diff(before.kernels, now.kernels) });
    let before = await d.gpuCalls();
    await d.step(true);
    const drawn = since(before, await d.gpuCalls());
    before = await d.gpuCalls();
    for (let k = 0; k < 4; k++) await d.step(false);
    const queuedOnly = since(before, await d.gpuCalls());
    await d.step(true);
    const run = since(before, await d.gpuCalls());
    return { drawn, queuedOnly, run };
  });
}

// `backend` "cpu-only": a page whose navigator.gpu offers no adapter, so it downloads the CPU-only build.
async function stepTimes(backend, workers) {
  const pool = workers ? `&workers=${workers}` : "";
  await withPage(browser, async (page) => {
    await page.addInitScript(watchLongTasks);
    if (backend === "cpu-only") await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
    const wasm = [];
    page.on("request", (r) => { if (r.url().endsWith(".wasm")) wasm.push(r.url().split("/").pop()); });
    await page.goto(`${base}/?backend=${backend === "cpu-only" ? "cpu" : backend}&digit=7&steps=50&count=1&start=1${pool}`);
    await page.waitForFunction(() => window.ddpmFirstDrawnStepMs || document.body.dataset.state === "error", null, { timeout: 10 * 60 * 1000 });
    const used = await page.evaluate(() => document.body.dataset.backend);
    const line = await page.textContent("#backend");
    if (used !== backend.replace("-only", "")) { console.log(`${backend}: not available (${line})`); return; }
    const first = await page.evaluate(() => window.ddpmFirstDrawnStepMs);
    await waitState(page, ["done", "error"], 10 * 60 * 1000);
    const size = await page.evaluate(() => window.ddpm.workers());
    const label = backend === "webgpu" ? backend : `${backend}, ${size} worker${size === 1 ? "" : "s"}`;
    console.log(`${label}: ${line} (downloaded ${wasm.join(", ")})`);
    console.log(`${label}: page load to first drawn step ${first.toFixed(0)} ms`);
    if (backend === "webgpu") {
      const { drawn, queuedOnly, run } = await gpuCallsPerStep(page);
      console.log(`webgpu: a drawn step (guided DDIM step + classifier + readback): ${drawn.dispatches} kernel launches, ${drawn.submits} queue submits, ${drawn.reads} buffer reads, ${drawn.writes} buffer writes, ${drawn.buffers} buffers created`);
      console.log(`webgpu: a step not drawn: ${(run.dispatches - drawn.dispatches) / 4} kernel launches, ${(run.submits - drawn.submits) / 4} submits; 4 such steps read ${queuedOnly.reads} buffers`);
      // The dispatch list of a step not drawn, by kernel (CubeCL labels each pipeline with its kernel's name).
      // CubeCL encodes queued launches only when it flushes (every 1,024 launches or at a read), so
      // the four steps' launches are counted from the run that ends with a drawn step, less one
      // drawn step's.
      const perStep = Object.entries(run.kernels).map(([name, n]) => [name, (n - (drawn.kernels[name] ?? 0)) / 4]).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
      console.log(`webgpu: launches per step not drawn, by kernel (${perStep.length} kernels):`);
      for (const [name, n] of perStep.slice(0, Number(env.BENCH_KERNELS ?? 25))) console.log(`  ${String(n).padStart(6)}  ${name.slice(0, 120)}`);
    }
    for (const count of grids[backend]) {
      const since = await page.evaluate(() => performance.now());
      const ms = await page.evaluate(({ count, steps }) => window.ddpm.bench({ grid: count, steps }), { count, steps: steps[backend] });
      const longest = await longestSince(page, since);
      results[`${label}-${count}`] = ms;
      console.log(`${label}: grid ${String(count).padStart(2)}: ${ms.toFixed(1).padStart(8)} ms/step (guided DDIM step, classifier, drawn; ${steps[backend]} steps); longest main-thread task ${longest.toFixed(0)} ms`);
    }
  });
}

const parts = (env.BENCH_PARTS ?? "steps,explainer").split(",");
for (const backend of parts.includes("steps") ? (env.BENCH_BACKENDS ?? "cpu,cpu-only,webgpu").split(",") : []) {
  if (backend === "cpu") await stepTimes("cpu", 1);
  await stepTimes(backend, backend.startsWith("cpu") ? env.BENCH_WORKERS : undefined);
}
const pool = Object.keys(results).find((k) => k.startsWith("cpu, ") && !k.startsWith("cpu, 1 worker-") && k.endsWith("-16"));
if (results["cpu, 1 worker-16"] && pool) {
  console.log(`CPU pool scaling, grid 16: 1 worker ${results["cpu, 1 worker-16"].toFixed(1)} ms/step -> ${pool.split("-")[0]} ${results[pool].toFixed(1)} ms/step (${(results["cpu, 1 worker-16"] / results[pool]).toFixed(2)}x)`);
  if (env.NATIVE_MS_16) {
    const native = Number(env.NATIVE_MS_16);
    console.log(`CPU path, grid 16: ${results[pool].toFixed(1)} ms/step vs native Burn on all threads ${native.toFixed(1)}: ratio ${(results[pool] / native).toFixed(2)} (target 1.5)`);
  }
}

// The explainer: the full ELBO sweep on the CPU path, its wall time and the longest main-thread task.
if (parts.includes("explainer")) await withPage(browser, async (page) => {
  await page.addInitScript(watchLongTasks);
  await page.goto(`${base}/explainer.html?backend=cpu&digit=3&t=200${env.BENCH_WORKERS ? `&workers=${env.BENCH_WORKERS}` : ""}`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const since = await page.evaluate(() => performance.now());
  // While the sweep runs: arrow keys on the t slider, each timed from the key event's creation to
  // the slider's input handler (the value set and its label written) and to the start of the
  // frame that paints it.
  await page.evaluate(() => {
    window.keyLatency = [];
    const t = document.getElementById("t");
    let pressed = null;
    t.addEventListener("keydown", (e) => { pressed = e.timeStamp; }, { capture: true });
    t.addEventListener("input", () => {
      if (pressed === null) return;
      const start = pressed, shown = performance.now();
      pressed = null;
      // The next animation frame's callback runs just before that frame is painted with the value.
      requestAnimationFrame(() => window.keyLatency.push({ input: shown - start, frame: performance.now() - start }));
    });
  });
  await page.focus("#t");
  for (let k = 0; k < 10; k++) {
    if (await page.evaluate(() => document.getElementById("elbo").dataset.ready === "1")) break;
    await page.keyboard.press(k % 2 ? "ArrowLeft" : "ArrowRight");
    await page.waitForTimeout(250);
  }
  await page.waitForFunction(() => document.getElementById("elbo").dataset.ready === "1" || document.body.dataset.state === "error", null, { timeout: 10 * 60 * 1000 });
  const r = await page.evaluate(() => ({ seconds: window.explainer.results.elboSeconds, workers: window.explainer.workers, keys: window.keyLatency }));
  console.log(`explainer, cpu, ${r.workers} workers: full ELBO sweep (1000 terms) ${r.seconds?.toFixed(2)} s; longest main-thread task from ready to the sweep's end ${(await longestSince(page, since)).toFixed(0)} ms`);
  const worst = (key) => Math.max(0, ...r.keys.map((k) => k[key]));
  console.log(`explainer, cpu: t slider during the sweep, ${r.keys.length} arrow keys: key to value set at most ${worst("input").toFixed(0)} ms, key to the frame that paints it at most ${worst("frame").toFixed(0)} ms`);
});
await browser.close();
server.close();
