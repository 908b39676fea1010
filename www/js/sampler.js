// The sampling page: controls, drawing and the run loop. All model work happens in workers
// (js/sampler-worker.js); this thread only sends typed requests and draws the tiles they return.
import { registerServiceWorker } from "./build.js";
import { loadAssets, megabytes } from "./download.js";
import { Pool, WorkerClient, WorkerFailure } from "./pool.js";
import { downloadPng, writeUrl } from "./page.js";

const WORKER = new URL("./sampler-worker.js", import.meta.url);
const $ = (id) => document.getElementById(id);
const setState = (s) => { document.body.dataset.state = s; };
const errorText = (e) => String(e && e.message ? e.message : e);
function showMessage(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}
const showError = (e) => { showMessage(errorText(e), true); setState("error"); };
// Corrections to the link and recoveries: a notice of their own that stays through the run it
// precedes (the status line above it changes at every step), until the reader sets a control.
function showNotice(lines) {
  $("notice").textContent = lines.length ? lines.join(". ") + "." : "";
  $("notice").hidden = lines.length === 0;
}

let assets = null;     // the compiled module and the weight files, fetched once
let pool = null;
let limits = null;
let guidanceInterval = null; // the model's: where guidance applies (null: every step)
let backend = null;
let running = false;
let recovering = false;
let generation = 0;    // bumped when the pool is replaced, so a stale run loop ends quietly
let runLabel = "";
let frameCount = 0;
let gridCount = 4;

const CONTROL_NAMES = ["digit", "guidance", "sampler", "steps", "eta", "seed", "count", "every", "view"];
const queryPairs = () => [...new URLSearchParams(location.search)];
const formPairs = () => CONTROL_NAMES.map((name) => [name, $(name).value]);

function reportLoading(parts) {
  if (document.body.dataset.state === "error") return;  // a failed download already said why
  const text = Object.entries({ "app (wasm)": parts.wasm, "denoising network": parts.unet, "classifier": parts.classifier })
    .map(([name, [got, total]]) => `${name} ${megabytes(got)}${total ? ` of ${megabytes(total)}` : ""}`).join(", ");
  const got = parts.wasm[0] + parts.unet[0] + parts.classifier[0];
  const total = parts.wasm[1] + parts.unet[1] + parts.classifier[1];
  $("load-progress").max = total || 1;
  $("load-progress").value = got;
  showMessage(`Downloading: ${text}.`);
}

// Sliders and selects take their ranges and defaults from Rust's Limits.
function applyLimits() {
  for (const name of ["guidance", "steps", "eta", "seed", "every"]) {
    const rule = limits[name];
    Object.assign($(name), { min: String(rule.min), max: String(rule.max), step: String(rule.step) });
  }
  $("count").replaceChildren(...limits.grids.map((n) => new Option(`${n}`, String(n))));
  $("sampler").replaceChildren(...limits.samplers.map((s) => new Option(s.label, s.kind)));
}

const samplerChoice = () => limits && limits.samplers.find((s) => s.kind === $("sampler").value);

function applyControls(c) {
  $("digit").value = c.class.kind === "any_digit" ? "any" : c.class.kind === "unconditional" ? "none" : String(c.class.digit);
  $("guidance").value = String(c.guidance);
  $("sampler").value = c.sampler;
  $("steps").value = String(c.steps);
  $("eta").value = String(c.eta);
  $("seed").value = String(c.seed);
  $("count").value = String(c.grid);
  $("every").value = String(c.every);
  $("view").value = c.view;
  refreshControls();
}

// Values beside the sliders, and the controls that do not apply greyed out with a note.
function refreshControls() {
  for (const name of ["guidance", "steps", "eta"]) $(`${name}-value`).textContent = $(name).value;
  const unconditional = $("digit").value === "none";
  $("guidance").disabled = unconditional;
  $("guidance-note").textContent = unconditional ? "Not used: the unconditional model is what guidance pushes away from."
    : guidanceInterval ? `Applied from t = ${guidanceInterval.last} down to ${guidanceInterval.first} only: pushing at the noisiest steps narrows the styles, and at the last ones changes little.`
    : "";
  const choice = samplerChoice();
  if (!choice) return;
  $("sampler-help").textContent = choice.help;
  $("steps").disabled = !choice.uses_steps;
  $("eta").disabled = !choice.uses_eta;
  $("steps-note").textContent = choice.uses_steps ? "" : `DDPM always takes all ${limits.steps.max} steps.`;
}


function backendLine(info, workers) {
  if (info.kind === "webgpu") return `Computing on WebGPU (${info.adapter}).`;
  const line = `Computing on the CPU (WebAssembly, ${workers} worker${workers === 1 ? "" : "s"}).`;
  return info.fallback_reason ? `${line} WebGPU is not used: ${info.fallback_reason}.` : line;
}

// Start the workers: the first chooses the backend; on the CPU more join it, one per core.
async function startPool(query) {
  const mine = generation;
  const onFatal = (message) => { if (mine === generation) recover(message); };
  const first = new WorkerClient(WORKER, assets.wasm, onFatal);
  const ready = await first.request({ type: "init", query, files: assets.files }).catch((e) => { first.terminate(); throw e; });
  const clients = [first];
  if (ready.backend.kind === "cpu") {
    const cores = navigator.hardwareConcurrency || 1;
    const wanted = ready.page.options.workers ?? Math.max(1, Math.min(cores, ready.limits.default_workers_cap));
    const helpers = Array.from({ length: wanted - 1 }, () => new WorkerClient(WORKER, assets.wasm, onFatal));
    const helperQuery = [["backend", "cpu"]];
    const results = await Promise.allSettled(helpers.map((h) => h.request({ type: "init", query: helperQuery, files: assets.files })));
    results.forEach((r, k) => { if (r.status === "fulfilled") clients.push(helpers[k]); else helpers[k].terminate(); });
  }
  return { pool: new Pool(clients), ready };
}

async function boot(notes = []) {
  setState("loading");
  $("start").disabled = true; $("stop").disabled = true;
  const started = await startPool(queryPairs());
  pool = started.pool;
  const ready = started.ready;
  limits = ready.limits;
  guidanceInterval = ready.guidance_interval;
  backend = ready.backend;
  applyLimits();
  if (!recovering) applyControls(ready.page.controls);
  document.body.dataset.backend = backend.kind;
  $("backend").textContent = backendLine(backend, pool.size);
  $("backend").className = backend.fallback_reason ? "fallback" : "";
  $("load-progress").hidden = true;
  showNotice(recovering ? notes : [...notes, ...ready.page.problems]);
  showMessage("Ready. Press Start.");
  $("start").disabled = false;
  setState("ready");
  return ready.page.options.start;
}

async function recover(reason) {
  if (recovering) return;
  recovering = true;
  generation += 1;
  running = false;
  if (pool) pool.terminate();
  pool = null;
  showMessage(`${reason}. Starting a fresh worker…`, true);
  try { await boot([`Recovered without a reload after: ${reason}`]); }
  catch (e) { showError(`${reason}; starting again failed too: ${errorText(e)}`); }
  recovering = false;
}

function drawTiles(parts) {
  const ctx = $("samples").getContext("2d");
  for (const part of parts) {
    for (const tile of part.tiles) {
      const pixels = new Uint8ClampedArray(tile.rgba.buffer, tile.rgba.byteOffset, tile.rgba.byteLength);
      ctx.putImageData(new ImageData(pixels, 28, 28), tile.x, tile.y);
    }
  }
}

function showReadout(parts) {
  const read = parts.flatMap((p) => p.read);
  const confidences = parts.flatMap((p) => p.confidences);
  document.body.dataset.labels = read.join(",");
  $("readout").textContent = "The classifier reads x̂₀ as: " + read.map((l, k) => `${l} (${Math.round(100 * confidences[k])}%)`).join(", ");
  $("samples").setAttribute("aria-label", `${read.length} samples, step ${parts[0].done}, read as ${read.join(" ")}`);
}

function setTimeline(frames) {
  frameCount = frames;
  $("timeline").disabled = frames === 0;
  $("download-grid").disabled = frames === 0;
  $("download-strip").disabled = frames === 0;
  if (frames > 0) {
    $("timeline").max = String(frames - 1);
    $("timeline").value = String(frames - 1);
    $("timeline-label").textContent = `frame ${frames} of ${frames} kept`;
  }
}

async function run() {
  // The state changes at once, so automation that clicks Start never reads the previous run's "done".
  running = true;
  setState("sampling");
  $("start").disabled = true;
  const parsed = await pool.clients[0].request({ type: "parse", pairs: formPairs() });
  const { controls, problems, query } = parsed.parsed;
  if (problems.length) {
    running = false;
    setState("ready");
    $("start").disabled = false;
    showMessage(`Not started: ${problems.join("; ")}.`, true);
    return;
  }
  writeUrl(query);
  const mine = generation;
  running = true;
  gridCount = controls.grid;
  $("start").disabled = true; $("stop").disabled = false;
  setTimeline(0);
  setState("sampling");
  showMessage("Sampling…");
  const d = $("digit").value;
  runLabel = `digit${d}-${controls.sampler.startsWith("ddpm") ? controls.sampler : `${controls.sampler}${controls.steps}`}-w${controls.guidance}-seed${controls.seed}`;
  let kept = 0;
  try {
    const began = await pool.begin(controls);
    const total = began[0].total;
    $("samples").width = began[0].width;
    $("samples").height = began[0].height;
    const labels = began.flatMap((b) => b.labels);
    $("drawn-labels").textContent = controls.class.kind === "any_digit"
      ? `Each image drew its own digit: ${labels.join(" ")}.`
      : controls.class.kind === "unconditional" ? "No label: the unconditional model." : "";
    let done = 0;
    while (running && mine === generation) {
      const draw = (done + 1) % controls.every === 0 || done + 1 === total;
      const t0 = performance.now();
      const replies = await pool.all({ type: "step", draw, view: $("view").value });
      if (mine !== generation || replies.some((r) => r.type === "finished")) break;
      const stepMs = performance.now() - t0;
      done = replies[0].done;
      document.body.dataset.step = String(done);
      $("progress").textContent = `step ${done} of ${total}, t = ${replies[0].t}, ${stepMs.toFixed(1)} ms per step`;
      $("run-progress").max = total; $("run-progress").value = done;
      if (draw) {
        const parts = replies.map((r) => r.frame);
        drawTiles(parts);
        showReadout(parts);
        kept += 1;
        if (!window.ddpmFirstDrawnStepMs) window.ddpmFirstDrawnStepMs = performance.now();
      }
      if (done === total) break;
    }
  } catch (e) {
    if (mine !== generation || (e instanceof WorkerFailure && e.fatal)) return;  // recovery reports it
    running = false;
    showError(e);
    $("start").disabled = false; $("stop").disabled = true;
    return;
  }
  if (mine !== generation) return;
  const finished = running;
  running = false;
  showMessage(finished ? "Done." : "Stopped.");
  $("start").disabled = false; $("stop").disabled = true;
  setTimeline(kept);
  setState(finished ? "done" : "ready");
}


async function stripImage() {
  const parts = await pool.all({ type: "strip_part", columns: 11 });
  // Whole frames, cells in order: each worker's share of a frame, concatenated.
  const frames = parts[0].frames.map((_, c) => {
    const shares = parts.map((p) => p.frames[c]);
    const whole = new Uint8Array(shares.reduce((n, s) => n + s.length, 0));
    let offset = 0;
    for (const s of shares) { whole.set(s, offset); offset += s.length; }
    return whole;
  });
  const strip = await pool.clients[0].request({ type: "compose_strip", frames, count: gridCount });
  return new ImageData(new Uint8ClampedArray(strip.rgba.buffer, strip.rgba.byteOffset, strip.rgba.byteLength), strip.width, strip.height);
}

for (const name of CONTROL_NAMES) {
  $(name).addEventListener("input", refreshControls);
  $(name).addEventListener("change", () => showNotice([]));
}
$("start").addEventListener("click", () => {
  if (running || !pool) return;
  run().catch((e) => { running = false; showError(e); });
});
$("stop").addEventListener("click", () => { running = false; if (pool) pool.stop(); });
$("timeline").addEventListener("input", async () => {
  try {
    const index = +$("timeline").value;
    const replies = await pool.all({ type: "frame", index });
    const parts = replies.map((r) => r.frame);
    drawTiles(parts);
    $("timeline-label").textContent = `frame ${index + 1} of ${frameCount} kept: step ${parts[0].done}, t = ${parts[0].t}`;
    document.body.dataset.step = String(parts[0].done);
    showReadout(parts);
  } catch (e) { showMessage(errorText(e), true); }
});
$("download-grid").addEventListener("click", () => downloadPng($("samples"), `ddpm-${runLabel}-grid.png`));
$("download-strip").addEventListener("click", async () => {
  try { downloadPng(await stripImage(), `ddpm-${runLabel}-trajectory.png`); } catch (e) { showMessage(errorText(e), true); }
});

async function memory() {
  const replies = await Promise.all(pool.clients.map((c) => c.request({ type: "memory" })));
  const sum = (key) => replies.reduce((n, r) => n + r[key], 0);
  return { wasmBytes: sum("wasm_bytes"), heapLiveBytes: sum("heap_live_bytes"), workers: replies.length,
    jsHeapBytes: performance.memory ? performance.memory.usedJSHeapSize : null };
}

window.ddpm = {
  get app() { return pool && { backend: { name: backend.kind, adapter: backend.adapter }, workers: pool.size, frameCount }; },
  classifyCanvas: async () => {
    const canvas = $("samples");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const reply = await pool.clients[0].request({ type: "classify", rgba: new Uint8Array(data.buffer), width: canvas.width, height: canvas.height, count: gridCount });
    return reply.labels;
  },
  memory,
  workers: () => (pool ? pool.size : 0),
  // For scripts/bench.sh: ms per guided DDIM step of the whole pool at `grid` images, every step
  // drawn (classifier and readback included), after one warm-up step; and the first worker's
  // WebGPU calls. Guided at every step, outside the model's guidance interval too.
  bench: async ({ grid, steps, draw = true }) => {
    const parsed = await pool.clients[0].request({ type: "parse", pairs: [["digit", "7"], ["steps", "1000"], ["count", String(grid)]] });
    await pool.begin(parsed.parsed.controls, { guideEveryStep: true });
    await pool.all({ type: "step", draw: true, view: "xt" });
    const t0 = performance.now();
    for (let k = 0; k < steps; k++) await pool.all({ type: "step", draw, view: "xt" });
    return (performance.now() - t0) / steps;
  },
  step: (draw) => pool.all({ type: "step", draw, view: "xt" }),
  gpuCalls: () => pool.clients[0].ask("gpu_calls"),
  // Simulates a lost GPU (as when a driver resets) to exercise the recovery path.
  loseDevice: () => pool && pool.clients.forEach((c) => c.control("lose_device")),
};

(async () => {
  try {
    assets = await loadAssets(reportLoading);
    const startNow = await boot();
    // Once the app has loaded, cache it for offline use (deploy builds only).
    registerServiceWorker();
    if (startNow) run().catch(showError);
  } catch (e) { showError(e); }
})();
