// Browser sampling benchmark (headless Chromium on this machine): ms per reverse step for grids of
// 1, 16 and 64 on every backend the browser offers (WebGPU, CPU in wasm), and the time from page
// load to the first drawn step. A benchmark, not a test: it prints figures and asserts nothing.
//   trunk build && node tests/e2e/bench.mjs
// Environment: BENCH_STEPS_CPU (10), BENCH_STEPS_WEBGPU (3), BENCH_GRIDS_WEBGPU ("1,16,64"),
// NATIVE_MS_16 (the native figure for grid 16, to print the CPU-path ratio; scripts/bench.sh sets it).
import { launchBrowser, startServer, waitState, withPage } from "./harness.mjs";

const env = process.env;
const steps = { cpu: Number(env.BENCH_STEPS_CPU ?? 10), webgpu: Number(env.BENCH_STEPS_WEBGPU ?? 3) };
const grids = { cpu: [1, 16, 64], webgpu: (env.BENCH_GRIDS_WEBGPU ?? "1,16,64").split(",").map(Number) };
const { server, base } = await startServer();
const browser = await launchBrowser();
console.log(`browser: Chromium ${browser.version()}`);
const results = {};
for (const backend of ["cpu", "webgpu"]) {
  await withPage(browser, async (page) => {
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
if (env.NATIVE_MS_16 && results["cpu-16"]) {
  const native = Number(env.NATIVE_MS_16);
  console.log(`CPU path, grid 16: wasm ${results["cpu-16"].toFixed(1)} ms/step vs native ${native.toFixed(1)} ms/step: ratio ${(results["cpu-16"] / native).toFixed(2)} (target 1.5)`);
}
await browser.close();
server.close();
