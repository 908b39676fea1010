// Browser sampling benchmark (headless Chromium on this machine): ms per reverse step for grids of
// 1, 16 and 64 on every backend the browser offers (WebGPU, CPU in wasm), and the time from page
// load to the first drawn step; on WebGPU, the GPU work per step as the browser sees it (compute
// dispatches = kernel launches, queue submits, buffer reads). A benchmark, not a test: it prints
// figures and asserts nothing.
//   trunk build && node tests/e2e/bench.mjs
// Environment: BENCH_BACKENDS ("cpu,webgpu"), BENCH_STEPS_CPU (10), BENCH_STEPS_WEBGPU (3), BENCH_GRIDS_WEBGPU ("1,16,64"),
// NATIVE_MS_16 and NATIVE_1THREAD_MS_16 (native figures for grid 16 on all cores and on one, to print
// the CPU-path ratios; scripts/bench.sh sets them).
import { launchBrowser, startServer, waitState, withPage } from "./harness.mjs";

const env = process.env;
const steps = { cpu: Number(env.BENCH_STEPS_CPU ?? 10), webgpu: Number(env.BENCH_STEPS_WEBGPU ?? 3) };
const grids = { cpu: [1, 16, 64], webgpu: (env.BENCH_GRIDS_WEBGPU ?? "1,16,64").split(",").map(Number) };
const { server, base } = await startServer();
const browser = await launchBrowser();
console.log(`browser: Chromium ${browser.version()}`);
const results = {};

// Counts every WebGPU call of interest by wrapping the prototypes before the page's scripts run:
// wgpu in wasm calls the browser's WebGPU API through these methods, so nothing escapes the count.
function countGpuCalls() {
  const calls = (window.gpuCalls = { dispatches: 0, submits: 0, reads: 0, writes: 0, buffers: 0 });
  if (!self.GPUComputePassEncoder) return;
  const wrap = (proto, method, key) => {
    const original = proto[method];
    proto[method] = function (...args) { calls[key]++; return original.apply(this, args); };
  };
  wrap(GPUComputePassEncoder.prototype, "dispatchWorkgroups", "dispatches");
  wrap(GPUComputePassEncoder.prototype, "dispatchWorkgroupsIndirect", "dispatches");
  wrap(GPUQueue.prototype, "submit", "submits");
  wrap(GPUBuffer.prototype, "mapAsync", "reads");
  wrap(GPUQueue.prototype, "writeBuffer", "writes");
  wrap(GPUDevice.prototype, "createBuffer", "buffers");
}

// GPU calls for one drawn step, then for 4 steps that are not drawn followed by a drawn one (work
// that is only queued is counted when a later step flushes it, hence the drawn step at the end).
async function gpuCallsPerStep(page) {
  return page.evaluate(async () => {
    const app = window.ddpm.app;
    const canvas = document.getElementById("samples");
    const snapshot = () => ({ ...window.gpuCalls });
    const since = (before) => Object.fromEntries(Object.entries(window.gpuCalls).map(([k, v]) => [k, v - before[k]]));
    app.begin(7, 2, 1000, 0, 1, 1);
    await app.step(canvas, "xt"); // warm-up
    let before = snapshot();
    await app.step(canvas, "xt");
    const drawn = since(before);
    before = snapshot();
    for (let k = 0; k < 4; k++) await app.step(undefined, "xt");
    const queuedOnly = since(before);
    await app.step(canvas, "xt");
    const fourUndrawnThenDrawn = since(before);
    return { drawn, queuedOnly, fourUndrawnThenDrawn };
  });
}

for (const backend of (env.BENCH_BACKENDS ?? "cpu,webgpu").split(",")) {
  await withPage(browser, async (page) => {
    await page.addInitScript(countGpuCalls);
    // Load to first drawn step: a 1-digit DDIM run started from the URL, on a fresh page.
    await page.goto(`${base}/?backend=${backend}&digit=7&steps=50&count=1&start=1`);
    await page.waitForFunction(() => window.ddpmFirstDrawnStepMs || document.body.dataset.state === "error", null, { timeout: 10 * 60 * 1000 });
    const used = await page.evaluate(() => document.body.dataset.backend);
    const adapter = await page.textContent("#backend");
    if (used !== backend) { console.log(`${backend}: not available (${adapter})`); return; }
    const first = await page.evaluate(() => window.ddpmFirstDrawnStepMs);
    await waitState(page, ["done", "error"], 10 * 60 * 1000);
    console.log(`${backend}: ${adapter}`);
    console.log(`${backend}: page load to first drawn step ${first.toFixed(0)} ms`);
    if (backend === "webgpu") {
      const { drawn, queuedOnly, fourUndrawnThenDrawn: run } = await gpuCallsPerStep(page);
      const undrawnDispatches = (run.dispatches - drawn.dispatches) / 4;
      console.log(`webgpu: a drawn step (guided DDIM step + classifier + readback): ${drawn.dispatches} kernel launches, ${drawn.submits} queue submits, ${drawn.reads} buffer reads, ${drawn.writes} buffer writes, ${drawn.buffers} buffers created`);
      console.log(`webgpu: a step not drawn: ${undrawnDispatches} kernel launches; 4 such steps read ${queuedOnly.reads} buffers (4 undrawn + 1 drawn: ${run.reads} reads, ${run.submits} submits)`);
    }
    for (const count of grids[backend]) {
      const ms = await page.evaluate(async ({ count, steps }) => {
        const app = window.ddpm.app;
        const canvas = document.getElementById("samples");
        app.begin(7, 2, 1000, 0, 1, count);
        await app.step(canvas, "xt"); // warm-up at this batch size
        const t0 = performance.now();
        for (let k = 0; k < steps; k++) await app.step(canvas, "xt");
        return (performance.now() - t0) / steps;
      }, { count, steps: steps[backend] });
      results[`${backend}-${count}`] = ms;
      console.log(`${backend}: grid ${String(count).padStart(2)}: ${ms.toFixed(1).padStart(8)} ms/step (guided DDIM step, classifier readout, drawn; ${steps[backend]} steps)`);
    }
  });
}
for (const [variable, native] of [["NATIVE_MS_16", "native"], ["NATIVE_1THREAD_MS_16", "native on one thread"]]) {
  if (!env[variable] || !results["cpu-16"]) continue;
  const ms = Number(env[variable]);
  console.log(`CPU path, grid 16: wasm (one thread) ${results["cpu-16"].toFixed(1)} ms/step vs ${native} ${ms.toFixed(1)} ms/step: ratio ${(results["cpu-16"] / ms).toFixed(2)} (target 1.5 against native)`);
}
await browser.close();
server.close();
