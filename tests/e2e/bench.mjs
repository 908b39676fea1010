// Browser sampling benchmark (headless Chromium on this machine): ms per reverse step for grids of
// 1, 16 and 64 on every backend the browser offers (WebGPU, CPU in wasm), and the time from page
// load to the first drawn step. A benchmark, not a test: it prints figures and asserts nothing.
//   trunk build && node tests/e2e/bench.mjs [steps]
import { launchBrowser, startServer, waitState, withPage } from "./harness.mjs";

const steps = Number(process.argv[2] ?? 10);
const { server, base } = await startServer();
const browser = await launchBrowser();
const adapter = await withPage(browser, async (page) => {
  await page.goto(`${base}/`);
  await waitState(page, ["ready", "error"], 10 * 60 * 1000);
  return page.textContent("#backend");
});
console.log(`browser: ${browser.version()}; ${adapter}`);
for (const backend of ["webgpu", "cpu"]) {
  await withPage(browser, async (page) => {
    // Load to first drawn step: a 1-digit DDIM run started from the URL.
    await page.goto(`${base}/?backend=${backend}&digit=7&steps=50&count=1&start=1`);
    await page.waitForFunction(() => window.ddpmFirstDrawnStepMs || document.body.dataset.state === "error", null, { timeout: 10 * 60 * 1000 });
    const used = await page.evaluate(() => document.body.dataset.backend);
    if (used !== backend) { console.log(`${backend}: not available (${await page.textContent("#backend")})`); return; }
    const first = await page.evaluate(() => window.ddpmFirstDrawnStepMs);
    await waitState(page, ["done", "error"], 10 * 60 * 1000);
    console.log(`${backend}: page load to first drawn step ${first.toFixed(0)} ms`);
    for (const count of [1, 16, 64]) {
      const ms = await page.evaluate(async ({ count, steps }) => {
        const app = window.ddpm.app;
        const canvas = document.getElementById("samples");
        app.begin(7, 2, 1000, 0, 1, count);
        await app.step(canvas, "xt"); // warm-up at this batch size
        const t0 = performance.now();
        for (let k = 0; k < steps; k++) await app.step(canvas, "xt");
        return (performance.now() - t0) / steps;
      }, { count, steps });
      console.log(`${backend}: grid ${String(count).padStart(2)}: ${ms.toFixed(1).padStart(8)} ms/step (DDIM, guided, drawn and read out every step)`);
    }
  });
}
await browser.close();
server.close();
