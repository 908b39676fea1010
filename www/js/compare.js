// Section 8 of the explainer: samplers against network evaluations. The chart and the table are
// the project's own evaluation, shipped in the manifest and drawn by the lead worker; below them
// two samplers run side by side on the same digit and seed, live, each in its own sampling worker
// (js/sampler-worker.js, the sampling page's Rust SamplerWorker). This thread draws their tiles.
import { WorkerClient, WorkerFailure } from "./pool.js";

const WORKER = new URL("./sampler-worker.js", import.meta.url);
const SIDES = ["a", "b"];
const CELLS = 4;
const FRAMES = 60;   // drawn frames per run, whatever its length
const $ = (id) => document.getElementById(id);

export async function setupComparison({ wasm, files, backend, lead, limits, seed, fmt, fail, results }) {
  const section = $("compare");
  const state = (value) => { section.dataset.state = value; section.dataset.ready = value === "ready" ? "1" : "0"; };
  const { table } = await lead.request({ type: "steps_chart" });
  const labels = { ddim: "DDIM (η = 0)", dpm2m: "DPM-Solver++(2M)", ancestral: "ancestral (η = 1)" };
  const samplers = Object.keys(labels).filter((s) => table.rows.some((r) => r.sampler === s));
  const counts = [...new Set(table.rows.map((r) => r.evaluations))].sort((x, y) => x - y);
  $("steps-table").tHead.rows[0].replaceChildren(...["evaluations", ...samplers.map((s) => labels[s])].map((text) => {
    const th = document.createElement("th"); th.scope = "col"; th.textContent = text; return th;
  }));
  $("steps-table").tBodies[0].replaceChildren(...counts.map((n) => {
    const tr = document.createElement("tr");
    tr.insertCell().textContent = String(n);
    for (const s of samplers) {
      const row = table.rows.find((r) => r.sampler === s && r.evaluations === n);
      tr.insertCell().textContent = row ? `${fmt(row.frechet_distance, 1)} (${fmt(row.ratio_to_real, 2)}×)` : "–";
    }
    return tr;
  }));
  $("steps-caption").textContent = `Fréchet distance in the classifier's features (× the distance between two sets of ${table.sample_count} real digits, `
    + `${fmt(table.real_vs_real_same_count, 1)}), ${table.sample_count} samples each, any digit, guidance ${table.guidance}`
    + (table.guidance_interval ? ` at t = ${table.guidance_interval.last}…${table.guidance_interval.first}` : " at every step") + `; measured by ${table.command}`;
  results.stepsTable = table;

  // The two live runs: each side's sampler and steps, by the sampling page's rules.
  for (const side of SIDES) {
    const select = $(`compare-${side}-sampler`);
    limits.samplers.forEach((s) => select.add(new Option(s.label, s.kind)));
    const steps = $(`compare-${side}-steps`);
    Object.assign(steps, { min: limits.steps.min, max: limits.steps.max, step: limits.steps.step });
    const sync = () => { steps.disabled = !limits.samplers.find((s) => s.kind === select.value).uses_steps; };
    select.addEventListener("change", sync);
    select.value = side === "a" ? "ddpm" : "ddim";
    steps.value = String(side === "a" ? limits.steps.max : limits.steps.default);
    sync();
  }
  for (let d = 0; d <= 9; d++) $("compare-digit").add(new Option(`digit ${d}`, String(d)));
  $("compare-digit").value = "3";
  state("ready");

  let clients = null, running = false, stopRequested = false;
  const onFatal = (message) => { fail(`${message}. Reload the page to start again.`); state("error"); };
  async function workers() {
    if (clients) return clients;
    clients = SIDES.map(() => new WorkerClient(WORKER, wasm, onFatal));
    await Promise.all(clients.map((c) => c.request({ type: "init", query: [["backend", backend]], files })));
    return clients;
  }

  async function runSide(client, side) {
    const pairs = [["digit", $("compare-digit").value], ["seed", String(seed())], ["count", String(CELLS)],
      ["sampler", $(`compare-${side}-sampler`).value], ["steps", $(`compare-${side}-steps`).value], ["view", "xt"]];
    const { parsed } = await client.request({ type: "parse", pairs });
    if (parsed.problems.length) throw new Error(parsed.problems.join(". "));
    const controls = parsed.controls;
    const began = await client.request({ type: "begin", controls, first_cell: 0, count: CELLS });
    const canvas = $(`compare-${side}`), ctx = canvas.getContext("2d");
    canvas.width = began.width; canvas.height = began.height;
    const name = limits.samplers.find((s) => s.kind === controls.sampler).label;
    const every = Math.max(1, Math.round(began.total / FRAMES));
    const t0 = performance.now();
    const mine = (results.compare[side] = { sampler: controls.sampler, total: began.total, done: 0 });
    let frame = null;
    for (let done = 0; done < began.total && !stopRequested; done++) {
      const draw = (done + 1) % every === 0 || done + 1 === began.total;
      const r = await client.request({ type: "step", draw, view: "xt" });
      if (r.frame) {
        frame = r.frame;
        for (const tile of frame.tiles) ctx.putImageData(new ImageData(new Uint8ClampedArray(tile.rgba.buffer, tile.rgba.byteOffset, tile.rgba.byteLength), 28, 28), tile.x, tile.y);
      }
      mine.done = r.done;
      mine.seconds = (performance.now() - t0) / 1000;
      if (draw) $(`compare-${side}-status`).textContent = `${name}: ${r.done} of ${r.total} network evaluations, ${mine.seconds.toFixed(1)} s`;
    }
    await client.request({ type: "stop" });
    if (frame && mine.done === began.total) {
      mine.read = frame.read;
      const confident = frame.confidences.filter((c) => c >= 0.9).length;
      $(`compare-${side}-status`).textContent = `${name}: ${began.total} network evaluations in ${mine.seconds.toFixed(1)} s; the classifier reads `
        + `${frame.read.join(", ")} (${confident} of ${CELLS} with ≥ 90% confidence).`;
    }
    canvas.setAttribute("aria-label", `${CELLS} samples of digit ${$("compare-digit").value} by ${name} after ${mine.done} of ${began.total} steps`);
  }

  async function run() {
    if (running) return;
    running = true; stopRequested = false;
    $("compare-run").disabled = true; $("compare-stop").disabled = false;
    state("sampling");
    results.compare = { seed: seed() };
    try {
      $("compare-a-status").textContent = $("compare-b-status").textContent = "Starting the samplers…";
      const [a, b] = await workers();
      await Promise.all([runSide(a, "a"), runSide(b, "b")]);
      results.compare.state = stopRequested ? "stopped" : "done";
    } catch (e) {
      if (!(e instanceof WorkerFailure && e.fatal)) $("compare-a-status").textContent = String(e && e.message ? e.message : e);
      results.compare.state = "failed";
    } finally {
      running = false;
      $("compare-run").disabled = false; $("compare-stop").disabled = true;
      if (section.dataset.state !== "error") state("ready");
    }
  }
  $("compare-run").addEventListener("click", run);
  $("compare-stop").addEventListener("click", () => { stopRequested = true; });
  return { run };
}
