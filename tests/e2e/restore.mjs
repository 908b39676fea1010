// End-to-end test of the restore page on the deployable build: every operation on a shipped
// held-out digit (CPU), one on WebGPU, a half-erased digit restored to one the classifier reads
// as its label, a drawing turned into a digit, bad input (out-of-range URL values, a brush that
// erases everything) answered with a message, and replay and download after a run.
//   node tests/e2e/restore.mjs            (after scripts/build-web.sh)
import path from "node:path";
import fs from "node:fs";
import { artifacts, assert, launchBrowser, startServer, testRunner, waitState, withPage as openPage } from "./harness.mjs";

fs.mkdirSync(artifacts, { recursive: true });
const { server, base } = await startServer();
const browser = await launchBrowser();
const withPage = (fn) => openPage(browser, fn);
const { test, finish } = testRunner();
const LONG = 15 * 60 * 1000;

async function runOperation(page, query) {
  await page.goto(`${base}/restore.html?${query}&start=1`);
  await waitState(page, ["done", "error"], LONG);
  const state = await page.evaluate(() => document.body.dataset.state);
  assert(state === "done", `restore.html?${query}: state ${state}: ${await page.textContent("#message")}`);
  return page.evaluate(() => ({
    op: document.getElementById("operation").value,
    section: document.querySelector(`section[data-operation="${document.getElementById("operation").value}"]`).dataset.state,
    labels: document.body.dataset.labels,
    step: Number(document.body.dataset.step),
    measures: window.restore.measures,
    backend: document.body.dataset.backend,
    result: (() => { const c = document.getElementById("result"); return { w: c.width, h: c.height }; })(),
  }));
}

const OPERATIONS = {
  inpaint: "operation=inpaint&digit=31&preset=centre&steps=10&jump=2&resamplings=2",
  denoise: "operation=denoise&digit=42&noise=0.5&samples=2&steps=10",
  superres: "operation=superres&digit=53&factor=4&steps=10",
  sketch: "operation=sketch&digit=64&strength=0.5&steps=10&class=6",
  invert: "operation=invert&digit=75&second=11&steps=10&frames=3",
};

for (const [op, query] of Object.entries(OPERATIONS)) {
  await test(`${op}_runs_every_step_on_the_cpu_and_measures_against_its_baselines`, () => withPage(async (page, errors) => {
    const r = await runOperation(page, `backend=cpu&${query}`);
    assert(r.op === op && r.section === "done", `operation ${r.op}, its section ${r.section}`);
    assert(r.backend === "cpu", `backend ${r.backend}`);
    assert(r.step > 0 && r.result.w >= 28, `step ${r.step}, result ${JSON.stringify(r.result)}`);
    assert(Array.isArray(r.measures) && r.measures.length > 0 && r.measures.every((m) => typeof m.value === "number"), `measures ${JSON.stringify(r.measures)}`);
    const baselines = await page.$$eval("#baselines canvas", (c) => c.length);
    assert(baselines === { inpaint: 1, denoise: 1, superres: 2, sketch: 0, invert: 0 }[op], `${baselines} baselines`);
    await page.screenshot({ path: path.join(artifacts, `restore-${op}.png`) });
    assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
    console.log(`  ${op}: ${r.step} moves; ${r.measures.map((m) => `${m.name} ${m.value.toFixed(2)}`).join("; ")}; read ${r.labels}`);
  }));
}

await test("superres_runs_on_webgpu", () => withPage(async (page, errors) => {
  const r = await runOperation(page, "operation=superres&digit=12&factor=2&steps=5");
  assert(r.backend === "webgpu", `needs WebGPU (SwiftShader), got ${r.backend}`);
  assert(r.measures.length === 3, JSON.stringify(r.measures));
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// Half of each digit erased, the unconditional model: the repaired digit reads as its label.
await test("a_half_erased_digit_is_restored_to_one_the_classifier_reads_as_its_label", () => withPage(async (page, errors) => {
  const reads = [];
  for (const digit of [23, 47, 88]) {
    const r = await runOperation(page, `backend=cpu&operation=inpaint&digit=${digit}&preset=left&class=any&steps=25&jump=5&resamplings=3`);
    const label = Math.floor(digit / 10);
    reads.push({ label, read: Number(r.labels), psnr: r.measures[0].value, harmonic: r.measures[1].value });
  }
  console.log(`  ${reads.map((r) => `${r.label} read as ${r.read} (PSNR ${r.psnr.toFixed(1)} dB, harmonic ${r.harmonic.toFixed(1)})`).join("; ")}`);
  assert(reads.filter((r) => r.read === r.label).length >= 2, `restored digits read as ${JSON.stringify(reads)}`);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await test("a_drawing_becomes_a_digit_and_the_run_replays_and_downloads", () => withPage(async (page, errors) => {
  await page.goto(`${base}/restore.html?backend=cpu&operation=sketch&strength=0.6&steps=10&class=1`);
  await waitState(page, ["ready", "error"], LONG);
  await page.click("details.draw summary");
  await page.locator("#sketch-pad").scrollIntoViewIfNeeded();
  const box = await page.locator("#sketch-pad").boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.15);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.85, { steps: 12 });
  await page.mouse.up();
  await page.click("#sketch-use");
  await page.waitForFunction(() => document.getElementById("digit").value === "drawing");
  await page.click("#start");
  await waitState(page, ["done", "error"], LONG);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
  assert(await page.evaluate(() => document.body.dataset.labels) === "1", `a stroke guided to 1 reads as ${await page.evaluate(() => document.body.dataset.labels)}`);
  const frames = await page.evaluate(() => window.restore.frames);
  await page.$eval("#timeline", (el) => { el.value = "0"; el.dispatchEvent(new Event("input", { bubbles: true })); });
  await page.waitForFunction(() => document.getElementById("timeline-label").textContent.startsWith("frame 1 of"));
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  assert(download.suggestedFilename().startsWith("ddpm-sketch-digitdrawn"), download.suggestedFilename());
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
  console.log(`  ${frames} frames kept; downloaded ${download.suggestedFilename()}`);
}));

await test("bad_input_gets_a_message_and_the_page_stays_ready", () => withPage(async (page, errors) => {
  await page.goto(`${base}/restore.html?backend=cpu&operation=paint&digit=400&noise=-1&factor=3&preset=${"x".repeat(3000)}`);
  await waitState(page, ["ready", "error"], LONG);
  const notice = await page.textContent("#notice");
  for (const part of ["operation=paint", "digit=400", "noise=-1", "factor=3", "preset="]) assert(notice.includes(part), `notice lacks ${part}: ${notice}`);
  assert(notice.length < 800, `notice of ${notice.length} characters`);
  assert(await page.inputValue("#operation") === "inpaint", "operation did not fall back to its default");
  // Erase every pixel with the brush: the run is refused with a message, the page stays ready.
  await page.locator("#brush").scrollIntoViewIfNeeded();
  const box = await page.locator("#brush").boundingBox();
  for (let row = 0; row < 15; row++) {
    const y = box.y + (row + 0.5) * box.height / 15;
    await page.mouse.move(box.x + 1, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width - 1, y, { steps: 30 });
    await page.mouse.up();
  }
  await page.click("#start");
  // Start sets "sampling" at once; a refused run returns to ready with its message, a run that went
  // ahead ends in done.
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Not started") || ["done", "error"].includes(document.body.dataset.state), null, { timeout: LONG });
  assert((await page.textContent("#message")).includes("erases every pixel"), await page.textContent("#message"));
  assert(await page.evaluate(() => document.body.dataset.state) === "ready", "a refused run left the page unusable");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

// An upload: a noisy picture is denoised as it is, at its estimated noise level; a file that is not
// a picture gets a message and the page stays ready.
await test("an_uploaded_noisy_picture_is_denoised_and_an_unreadable_one_is_refused", () => withPage(async (page, errors) => {
  await page.goto(`${base}/restore.html?backend=cpu&operation=denoise&steps=8&samples=2`);
  await waitState(page, ["ready", "error"], LONG);
  await page.setInputFiles("#upload", { name: "notes.png", mimeType: "image/png", buffer: Buffer.from("not a picture at all") });
  await page.waitForFunction(() => document.getElementById("message").textContent.includes("could not be read"), null, { timeout: 60000 });
  assert(await page.evaluate(() => document.body.dataset.state) === "ready", "an unreadable upload left the page unusable");
  // A light bar on a dark grey ground with Gaussian noise of sigma 0.3 (in the model's units: 38 grey
  // levels; the levels keep it mostly clear of black and white), as a PNG.
  const png = await page.evaluate(async () => {
    const c = document.createElement("canvas"); c.width = c.height = 28;
    const ctx = c.getContext("2d"), img = ctx.createImageData(28, 28);
    let seed = 7;
    const uniform = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) + 0.5) / 2147483648;
    for (let p = 0; p < 784; p++) {
      const clean = (p % 28 >= 12 && p % 28 < 16 && p >= 4 * 28 && p < 24 * 28) ? 170 : 80;
      const z = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
      const v = Math.max(0, Math.min(255, Math.round(clean + 38.25 * z)));
      img.data.set([v, v, v, 255], 4 * p);
    }
    ctx.putImageData(img, 0, 0);
    const blob = await new Promise((done) => c.toBlob(done, "image/png"));
    return [...new Uint8Array(await blob.arrayBuffer())];
  });
  await page.setInputFiles("#upload", { name: "noisy.png", mimeType: "image/png", buffer: Buffer.from(png) });
  await page.waitForFunction(() => document.getElementById("message").textContent.includes("estimated"), null, { timeout: 60000 });
  const sigma = Number(await page.inputValue("#noise"));
  // One image's estimate scatters by about 6%, and the bar's edges add a little.
  assert(sigma >= 0.25 && sigma <= 0.4, `estimated noise ${sigma}`);
  assert(await page.inputValue("#digit") === "upload", "the upload is not the starting image");
  await page.click("#start");
  await waitState(page, ["done", "error"], LONG);
  assert(await page.evaluate(() => document.body.dataset.state) === "done", await page.textContent("#message"));
  assert(await page.evaluate(() => window.restore.frames) > 0, "no frames drawn");
  assert(await page.evaluate(() => document.getElementById("measures").hidden), "an upload has no original to measure against");
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
  console.log(`  noise estimated at ${sigma}; ${await page.textContent("#progress")}`);
}));

await test("the_shipped_evaluation_is_shown_as_tables", () => withPage(async (page, errors) => {
  await page.goto(`${base}/restore.html?backend=cpu`);
  await waitState(page, ["ready", "error"], LONG);
  assert(await page.$eval("#evaluation", (e) => e.dataset.state) === "ready", await page.textContent("#evaluation-summary"));
  const rows = await page.evaluate(() => Object.fromEntries(["inpaint", "denoise", "superres", "invert"].map((k) => [k, document.querySelectorAll(`#evaluation-${k} tbody tr`).length])));
  assert(rows.inpaint === 5 && rows.denoise >= 3 && rows.superres === 2 && rows.invert === 3, JSON.stringify(rows));
  const summary = await page.textContent("#evaluation-summary");
  assert(/^\d+ held-out digits/.test(summary) && Number(summary.split(" ")[0]) >= 500, summary);
  assert(errors.length === 0, `console errors: ${errors.join(" | ")}`);
}));

await browser.close();
server.close();
finish("restore e2e");
