// The restore page: controls, the brush and the drawing pad, and the run loop. All model work
// happens in a worker (js/restore-worker.js, Rust's RestoreWorker); this thread sends typed
// requests, keeps the reader's brush mask and drawing as 28x28 bytes, and draws what comes back.
import { registerServiceWorker } from "./build.js";
import { fetchBytes, loadAssets, megabytes } from "./download.js";
import { WorkerClient, WorkerFailure } from "./pool.js";
import { downloadPng, drawingPad, writeUrl } from "./page.js";

const WORKER = new URL("./restore-worker.js", import.meta.url);
const $ = (id) => document.getElementById(id);
const setState = (s) => { document.body.dataset.state = s; };
const errorText = (e) => String(e && e.message ? e.message : e);
const showMessage = (text, error = false) => { $("message").textContent = text; $("message").className = error ? "error" : ""; };
function showNotice(lines) {
  $("notice").textContent = lines.length ? lines.join(". ") + "." : "";
  $("notice").hidden = lines.length === 0;
}
const showError = (e) => { showMessage(errorText(e), true); setState("error"); };
// A refused preview (bad input) is a message; a dead worker is the page's error.
const showPrepareError = (e) => { if (e instanceof WorkerFailure && e.fatal) return; showMessage(errorText(e), true); };

const SLIDERS = ["guidance", "steps", "jump", "resamplings", "noise", "samples", "strength", "frames"];
const CONTROLS = ["operation", "digit", "class", "guidance", "steps", "seed", "preset", "jump", "resamplings", "noise", "samples", "factor", "strength", "second", "frames"];
const HELP = {
  inpaint: "Fill in erased pixels (RePaint).",
  denoise: "Remove added Gaussian noise (Tweedie's estimate and posterior samples).",
  superres: "Upscale from 14×14 or 7×7 (ILVR).",
  sketch: "Turn rough strokes into a digit (SDEdit).",
  invert: "Map two digits to noise and morph between them (DDIM inversion).",
};
const DRAWING = "drawing";
const UPLOAD = "upload";
const UPLOAD_LIMIT = 20 * 1024 * 1024;

let client = null;
let limits = null;
let running = false;
let frameCount = 0;
let runLabel = "";
let mask = null;          // the brush mask: 784 bytes, 1 known, 0 erased (inpainting only)
let maskEdited = false;   // whether the reader's brush changed the preset
let original = null;      // the starting image's grey levels, for the brush's background
let drawn = null;         // the reader's drawing: 784 grey levels
let uploaded = null;      // the reader's uploaded picture: 784 grey levels

const operation = () => $("operation").value;
const sectionOf = (op) => document.querySelector(`section[data-operation="${op}"]`);
const setOperationState = (op, state) => { sectionOf(op).dataset.state = state; };

function formPairs() {
  return CONTROLS.map((name) => [name, $(name).value]).filter(([name, value]) => !(name === "digit" && (value === DRAWING || value === UPLOAD)));
}

// Where the run's starting image comes from (the worker's `Source`).
function source() {
  if ($("digit").value === DRAWING && drawn) return { kind: "drawn", levels: drawn };
  if ($("digit").value === UPLOAD && uploaded) return { kind: "uploaded", levels: uploaded };
  return { kind: "shipped" };
}
const ownLabel = () => ({ drawn: "drawn", uploaded: "uploaded" })[source().kind];

function applyLimits() {
  for (const name of [...SLIDERS, "seed"]) {
    const rule = limits[name];
    Object.assign($(name), { min: String(rule.min), max: String(rule.max), step: String(rule.step) });
  }
  $("operation").replaceChildren(...limits.operations.map((o) => new Option(o, o)));
  [...$("operation").options].forEach((o) => { o.textContent = `${o.value}: ${HELP[o.value]}`; });
  $("preset").replaceChildren(...limits.presets.map((p) => new Option(p.label, p.key)));
  $("factor").replaceChildren(...limits.factors.map((f) => new Option(`×${f}`, String(f))));
  for (let d = 0; d <= 9; d++) $("class").add(new Option(`the digit ${d}`, String(d)));
}

function applyControls(c) {
  const set = (name, value) => { $(name).value = String(value); };
  set("operation", c.operation); set("digit", c.digit); set("second", c.second);
  set("class", c.class == null ? "any" : c.class); set("guidance", c.guidance); set("steps", c.steps); set("seed", c.seed);
  set("preset", limits.presets.find((p) => p.preset === c.preset).key);
  set("jump", c.jump); set("resamplings", c.resamplings); set("noise", c.noise); set("samples", c.samples);
  set("factor", c.factor); set("strength", c.strength); set("frames", c.frames);
  refreshControls();
}

function refreshControls() {
  for (const name of SLIDERS) $(`${name}-value`).textContent = $(name).value;
  $("guidance").disabled = $("class").value === "any" || operation() === "invert";
  $("operation-help").textContent = HELP[operation()];
  for (const section of document.querySelectorAll("section[data-operation]")) section.hidden = section.dataset.operation !== operation();
}


function drawPicture(canvas, picture) {
  canvas.width = picture.width; canvas.height = picture.height;
  const pixels = new Uint8ClampedArray(picture.rgba.buffer, picture.rgba.byteOffset, picture.rgba.byteLength);
  canvas.getContext("2d").putImageData(new ImageData(pixels, picture.width, picture.height), 0, 0);
}

// The brush: the starting image at 10x with erased pixels in red; pointer or keyboard erase.
function drawBrush() {
  const canvas = $("brush"), ctx = canvas.getContext("2d"), k = canvas.width / 28;
  for (let p = 0; p < 784; p++) {
    const v = original ? original[p] : 0;
    ctx.fillStyle = mask && mask[p] === 0 ? `rgb(${Math.max(120, v)}, 30, 30)` : `rgb(${v}, ${v}, ${v})`;
    ctx.fillRect((p % 28) * k, Math.floor(p / 28) * k, k, k);
  }
}

function setupBrush() {
  const canvas = $("brush");
  const pen = { x: 14, y: 14 };
  let erasing = false;
  const erase = (x, y) => {
    if (!mask) return;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
      const [cx, cy] = [x + dx, y + dy];
      if (cx >= 0 && cx < 28 && cy >= 0 && cy < 28) mask[cy * 28 + cx] = 0;
    }
    maskEdited = true;
    drawBrush();
  };
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [Math.floor((e.clientX - r.left) / r.width * 28), Math.floor((e.clientY - r.top) / r.height * 28)]; };
  canvas.addEventListener("pointerdown", (e) => { erasing = true; erase(...at(e)); });
  canvas.addEventListener("pointermove", (e) => { if (erasing) erase(...at(e)); });
  addEventListener("pointerup", () => { erasing = false; });
  canvas.addEventListener("keydown", (e) => {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (e.key === " ") { erase(pen.x, pen.y); e.preventDefault(); return; }
    const m = moves[e.key];
    if (!m) return;
    e.preventDefault();
    pen.x = Math.min(27, Math.max(0, pen.x + m[0])); pen.y = Math.min(27, Math.max(0, pen.y + m[1]));
    if (e.shiftKey) erase(pen.x, pen.y);
  });
  $("brush-reset").addEventListener("click", () => { maskEdited = false; prepare().catch(showPrepareError); });
}

// The drawing pad (js/page.js): its digit is the starting image when "my drawing" is chosen.
function setupSketchPad() {
  const { clear, levels } = drawingPad($("sketch-pad"));
  $("sketch-clear").addEventListener("click", clear);
  $("sketch-use").addEventListener("click", () => {
    drawn = levels();
    if (drawn.every((v) => v === 0)) { showMessage("The pad is empty: draw a digit first.", true); drawn = null; return; }
    $("digit").value = DRAWING;
    maskEdited = false;
    prepare().catch(showPrepareError);
  });
}

// The starting image, the operation's input and the preset mask, from the worker.
async function prepare() {
  const parsed = await client.request({ type: "parse", pairs: formPairs() });
  if (parsed.page.problems.length) { showMessage(`Not ready: ${parsed.page.problems.join("; ")}.`, true); return; }
  const from = source();
  const reply = await client.request({ type: "prepare", controls: parsed.page.controls, source: from });
  if (reply.original) drawPicture($("original"), reply.original);
  else $("original").getContext("2d").clearRect(0, 0, $("original").width, $("original").height);
  drawPicture($("input"), reply.input);
  $("input-caption").textContent = { inpaint: "damaged input", denoise: "noisy input", superres: "low-resolution input", sketch: "the sketch", invert: "the two digits" }[operation()];
  original = reply.original ? Uint8Array.from({ length: 784 }, (_, p) => reply.original.rgba[4 * p]) : (from.levels ?? null);
  if (reply.mask && !maskEdited) mask = Uint8Array.from(reply.mask);
  if (reply.noise_estimate != null && Number($("noise").value) !== reply.noise_estimate) {
    $("noise").value = String(reply.noise_estimate);
    refreshControls();
    showMessage(`The uploaded picture's noise is estimated at σ ≈ ${reply.noise_estimate} (set on the slider; change it if it looks wrong).`);
  }
  drawBrush();
}

// An uploaded picture, decoded by the browser and reduced to 28x28 grey levels: the centre
// square, on black where it is transparent. The worker turns dark-on-light pictures round.
async function readUpload(file) {
  if (file.size > UPLOAD_LIMIT) throw new Error(`${file.name} is ${megabytes(file.size)}: pick a picture under ${megabytes(UPLOAD_LIMIT)}`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name || "The file"} could not be read as a picture: pick a PNG, JPEG, GIF, WebP or BMP image`);
  }
  const side = Math.min(bitmap.width, bitmap.height);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 28;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 28, 28);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, 28, 28);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, 28, 28).data;
  return Uint8Array.from({ length: 784 }, (_, p) => Math.round(0.299 * rgba[4 * p] + 0.587 * rgba[4 * p + 1] + 0.114 * rgba[4 * p + 2]));
}

function setupUpload() {
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    try {
      uploaded = await readUpload(file);
    } catch (e) {
      $("upload").value = "";
      showMessage(errorText(e), true);
      return;
    }
    $("digit").value = UPLOAD;
    maskEdited = false;
    showNotice([]);
    showMessage(`Starting from ${file.name}.`);
    if (!running) prepare().catch(showPrepareError);
  });
}

async function run() {
  running = true;
  setState("sampling");
  $("start").disabled = true;
  const op = operation();
  const parsed = await client.request({ type: "parse", pairs: formPairs() });
  if (parsed.page.problems.length) {
    running = false; setState("ready"); $("start").disabled = false;
    showMessage(`Not started: ${parsed.page.problems.join("; ")}.`, true);
    return;
  }
  const controls = parsed.page.controls;
  writeUrl(parsed.page.query);
  const from = source();
  let began;
  try {
    began = await client.request({ type: "begin", controls, mask: op === "inpaint" && maskEdited ? mask : null, source: from });
  } catch (e) {
    if (e instanceof WorkerFailure && e.fatal) throw e;
    // Bad input (a mask that erases everything or nothing, say): a message, and the page stays ready.
    running = false; setState("ready"); $("start").disabled = false; setOperationState(op, "error");
    showMessage(`Not started: ${errorText(e)}`, true);
    return;
  }
  runLabel = `${op}-digit${ownLabel() ?? controls.digit}-seed${controls.seed}`;
  setOperationState(op, "running");
  $("stop").disabled = false;
  $("measures").hidden = true;
  frameCount = 0;
  $("timeline").disabled = true; $("download").disabled = true;
  $("baselines").replaceChildren(...began.baselines.map(([name, picture]) => {
    const figure = document.createElement("figure"), canvas = document.createElement("canvas"), caption = document.createElement("figcaption");
    canvas.className = "digit"; canvas.setAttribute("role", "img"); canvas.setAttribute("aria-label", `Baseline: ${name}`);
    drawPicture(canvas, picture);
    caption.textContent = name;
    figure.append(canvas, caption);
    return figure;
  }));
  showMessage("Running…");
  let measures = null;
  while (running) {
    const reply = await client.request({ type: "step", draw: true, view_x0: $("view").value === "x0" });
    if (reply.type === "finished") { measures = reply.measures; break; }
    document.body.dataset.step = String(reply.done);
    $("progress").textContent = `move ${reply.done} of ${reply.total}, t = ${reply.t}`;
    $("run-progress").max = reply.total; $("run-progress").value = reply.done;
    if (reply.frame) {
      drawPicture($("result"), reply.frame);
      frameCount += 1;
      document.body.dataset.labels = reply.read.join(",");
      $("readout").textContent = "The classifier reads x̂₀ as: " + reply.read.map((l, k) => `${l} (${Math.round(100 * reply.confidences[k])}%)`).join(", ");
      $("result").setAttribute("aria-label", `The model's result at move ${reply.done}, read as ${reply.read.join(" ")}`);
    }
  }
  const finished = measures !== null;
  running = false;
  $("start").disabled = false; $("stop").disabled = true;
  setOperationState(op, finished ? "done" : "idle");
  if (finished) showMeasures(measures);
  $("timeline").disabled = frameCount === 0; $("download").disabled = frameCount === 0;
  $("timeline").max = String(Math.max(0, frameCount - 1)); $("timeline").value = $("timeline").max;
  $("timeline-label").textContent = frameCount ? `frame ${frameCount} of ${frameCount} kept` : "";
  showMessage(finished ? "Done." : "Stopped.");
  setState(finished ? "done" : "ready");
}

function showMeasures(measures) {
  const rows = measures.map((m) => {
    const tr = document.createElement("tr");
    tr.insertCell().textContent = m.name;
    tr.insertCell().textContent = Number.isFinite(m.value) ? m.value.toFixed(2) : String(m.value);
    return tr;
  });
  $("measures").tBodies[0].replaceChildren(...rows);
  $("measures").hidden = rows.length === 0;
  window.restore.measures = measures;
}

// The evaluation shipped in the manifest (evaluate --only restore), as tables.
function showEvaluation(table) {
  const section = $("evaluation");
  if (!table) {
    $("evaluation-summary").textContent = "These weights ship no restore evaluation.";
    section.dataset.state = "missing";
    return;
  }
  const pct = (v) => `${(100 * v).toFixed(1)}%`, db = (v) => `${v.toFixed(1)} dB`;
  const both = (s) => `${pct(s.accuracy)}, ${db(s.psnr)}`;
  const fill = (id, rows) => {
    $(id).tBodies[0].replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach((text, k) => { const cell = k === 0 ? document.createElement("th") : document.createElement("td"); if (k === 0) cell.scope = "row"; cell.textContent = text; tr.append(cell); });
      return tr;
    }));
    $(id).hidden = false;
  };
  const label = (key) => limits.presets.find((p) => p.preset === key)?.label ?? key;
  fill("evaluation-inpaint", table.inpainting.map((r) => [label(r.preset), both(r.repaint), both(r.harmonic), both(r.damaged)]));
  $("evaluation-mean-head").textContent = `mean of ${table.settings.samples} samples`;
  fill("evaluation-denoise", table.denoising.map((r) => [`${r.sigma} (t = ${r.t})`, db(r.tweedie), db(r.one_sample), db(r.mean_of_samples), `${db(r.blur)} (${+r.blur_width.toFixed(2)} px)`, db(r.noisy)]));
  fill("evaluation-superres", table.superres.map((r) => [`×${r.factor}`, both(r.ilvr), both(r.bilinear), both(r.bicubic)]));
  fill("evaluation-invert", table.inversion.map((r) => [String(r.steps), db(r.psnr)]));
  const s = table.settings;
  $("evaluation-summary").textContent = `${table.digits} held-out digits (never trained on), the unconditional model (no label given), ` +
    `${s.steps} steps; RePaint with jump ${s.jump} and ${s.resamplings} resamplings; seed ${s.seed}. PSNR pools the squared error of all digits; higher is better.`;
  $("evaluation-command").textContent = table.command;
  section.dataset.state = "ready";
}

function download() {
  downloadPng($("result"), `ddpm-${runLabel}.png`, 8);
}

async function boot() {
  const [assets, digits] = await Promise.all([
    loadAssets((parts) => {
      const got = parts.wasm[0] + parts.unet[0] + parts.classifier[0], total = parts.wasm[1] + parts.unet[1] + parts.classifier[1];
      $("load-progress").max = total || 1; $("load-progress").value = got;
      showMessage(`Downloading the app and the model: ${megabytes(got)}${total ? ` of ${megabytes(total)}` : ""}.`);
    }),
    fetchBytes("restore-digits.json", () => {}).then((b) => new TextDecoder().decode(b)),
  ]);
  client = new WorkerClient(WORKER, assets.wasm, (message) => showError(`${message}. Reload the page to start again.`));
  const ready = await client.request({ type: "init", query: [...new URLSearchParams(location.search)], files: assets.files, digits });
  limits = ready.limits;
  applyLimits();
  const counts = {};
  ready.digit_labels.forEach((label, k) => {
    counts[label] = (counts[label] ?? 0) + 1;
    const name = `held-out ${label} (${counts[label]} of ${ready.digit_labels.filter((l) => l === label).length})`;
    $("digit").add(new Option(name, String(k)));
    $("second").add(new Option(name, String(k)));
  });
  $("digit").add(new Option("my drawing (the pad below)", DRAWING));
  $("digit").add(new Option("my uploaded picture", UPLOAD));
  showEvaluation(ready.table);
  applyControls(ready.page.controls);
  document.body.dataset.backend = ready.backend.kind;
  $("backend").textContent = ready.backend.kind === "webgpu" ? `Computing on WebGPU (${ready.backend.adapter}).`
    : `Computing on the CPU (WebAssembly).${ready.backend.fallback_reason ? ` WebGPU is not used: ${ready.backend.fallback_reason}.` : ""}`;
  $("backend").className = ready.backend.fallback_reason ? "fallback" : "";
  $("load-progress").hidden = true;
  showNotice(ready.page.problems);
  setupBrush();
  setupSketchPad();
  setupUpload();
  await prepare();
  for (const name of CONTROLS) {
    $(name).addEventListener("input", refreshControls);
    $(name).addEventListener("change", () => {
      showNotice([]);
      if (name === "digit" && $("digit").value === DRAWING && !drawn) { showMessage("Draw on the pad below, then press “Start from this drawing”.", true); return; }
      if (name === "digit" && $("digit").value === UPLOAD && !uploaded) { showMessage("Pick a picture with “Upload a picture” first.", true); return; }
      // A new preset or a new starting image starts the brush again from the preset's mask.
      if (name === "preset" || name === "digit" || name === "seed") maskEdited = false;
      if (!running) prepare().catch(showPrepareError);
    });
  }
  $("start").disabled = false;
  showMessage("Ready. Press Start.");
  setState("ready");
  registerServiceWorker();
  if (ready.page.start) run().catch(failRun);
}

function failRun(e) {
  running = false;
  if (e instanceof WorkerFailure && e.fatal) return;
  $("start").disabled = false; $("stop").disabled = true;
  setOperationState(operation(), "error");
  showError(e);
}

window.restore = { measures: null, get frames() { return frameCount; } };
$("start").addEventListener("click", () => { if (!running && client) run().catch(failRun); });
$("stop").addEventListener("click", () => { running = false; });
$("download").addEventListener("click", download);
$("timeline").addEventListener("input", async () => {
  try {
    const reply = await client.request({ type: "frame", index: +$("timeline").value });
    drawPicture($("result"), reply.frame);
    $("timeline-label").textContent = `frame ${+$("timeline").value + 1} of ${reply.kept} kept: move ${reply.done}, t = ${reply.t}`;
    document.body.dataset.step = String(reply.done);
  } catch (e) { showMessage(errorText(e), true); }
});
boot().catch(showError);
