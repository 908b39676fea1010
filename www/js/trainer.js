// Section 7 of the explainer: a 2-D diffusion model trained in this tab. The training, the
// fields, the samples and every figure are computed by a worker (js/trainer-worker.js, Rust's
// TrainerWorker); this thread only keeps the controls, the points a reader places, and the text.
import { WorkerClient, WorkerFailure } from "./pool.js";

// 12,345: digits grouped by hand. toLocaleString's first call loads the locale's number format
// on the page's thread (30 ms and more, measured), which a slider must not wait behind.
const whole = (n) => String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

const WORKER = new URL("./trainer-worker.js", import.meta.url);
const CANVASES = ["train-loss", "train-weights", "train-field", "train-exact", "train-samples", "train-sde", "train-ode"];
const DRAWN = "drawn";
// Wall time per Train request and between redraws: Stop answers within a chunk.
const CHUNK_MS = 150, SHOW_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);

// The 2-D model trains on the CPU unless the reader picks WebGPU (`webgpu`: the page computes
// there): a step is some 200 tiny kernels, whose launch cost outweighs their work on a GPU.
export async function setupTraining({ wasm, webgpu, t, seed, fmt, setMath, fail, results }) {
  const section = $("train");
  const state = (value) => { section.dataset.state = value; section.dataset.ready = value === "ready" ? "1" : "0"; };
  const onFatal = (message) => { fail(`${message}. Reload the page to start again.`); state("error"); };
  const client = new WorkerClient(WORKER, wasm, onFatal);
  client.attachCanvases(Object.fromEntries(CANVASES.map((id) => [id, $(id)])));
  let info = await client.request({ type: "init", backend: "cpu" });
  const [minPoints, maxPoints] = info.drawn_points;
  results.training = { state: "idle", backend: info.backend.kind };

  info.presets.forEach((p) => $("train-target").add(new Option(p.label, p.value)));
  $("train-target").add(new Option("your drawing (place points below)", DRAWN));
  info.objectives.forEach((p) => $("train-prediction").add(new Option(p.label, p.value)));
  const help = () => { $("train-prediction-help").textContent = info.objectives.find((p) => p.value === $("train-prediction").value).help; };
  help();
  $("train-prediction").addEventListener("change", help);
  const describe = () => {
    $("train-size").textContent = `${whole(info.parameters)} parameters, ${whole(info.settings.steps)} steps of `
      + `${info.settings.batch} points, Adam (learning rate ${info.settings.learning_rate})`
      + `${info.settings.ema ? `, drawn from the weights' moving average (decay ${info.settings.ema})` : ""}, on ${info.backend.kind === "webgpu" ? `WebGPU (${info.backend.adapter})` : "the CPU"}`;
  };
  describe();
  $("train-device").add(new Option("the CPU (WebAssembly)", "cpu"));
  $("train-device").add(new Option(webgpu ? "WebGPU" : "WebGPU (not available here)", "webgpu"));
  $("train-device").options[1].disabled = !webgpu;
  $("train-device").addEventListener("change", async () => {
    $("train-device").disabled = true;
    try {
      info = await client.request({ type: "init", backend: $("train-device").value });
      results.training.backend = info.backend.kind;
      describe();
    } catch (e) { status(String(e && e.message ? e.message : e)); }
    $("train-device").disabled = false;
    updateButtons();
  });
  $("train-progress").max = info.settings.steps;

  // The drawing: points of the plane [-extent, extent]², placed with the pointer or the keyboard.
  const pad = $("train-pad"), ctx = pad.getContext("2d");
  const points = [];
  const pen = [0, 0];
  const toPx = ([x, y]) => [(x + info.extent) / (2 * info.extent) * pad.width, (info.extent - y) / (2 * info.extent) * pad.height];
  const toPlane = (px, py) => [px / pad.width * 2 * info.extent - info.extent, info.extent - py / pad.height * 2 * info.extent];
  const redraw = () => {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.fillStyle = "#1f77b4";
    for (const p of points) { const [x, y] = toPx(p); ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI); ctx.fill(); }
    const [x, y] = toPx(pen);
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x - 7, y); ctx.lineTo(x + 7, y); ctx.moveTo(x, y - 7); ctx.lineTo(x, y + 7); ctx.stroke();
    $("train-pad-count").textContent = `${points.length} point${points.length === 1 ? "" : "s"} (${minPoints} to ${maxPoints})`;
    updateButtons();
  };
  const place = (p) => {
    if (points.length >= maxPoints) { $("train-pad-count").textContent = `${maxPoints} points is the most a drawing has`; return; }
    // Along a stroke, points at least 0.08 apart: a drag is a line of points, not a pile.
    const last = points[points.length - 1];
    if (last && Math.hypot(p[0] - last[0], p[1] - last[1]) < 0.08) return;
    points.push(p);
    pen[0] = p[0]; pen[1] = p[1];
    redraw();
  };
  const at = (e) => { const r = pad.getBoundingClientRect(); return toPlane((e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height); };
  let dragging = false;
  pad.addEventListener("pointerdown", (e) => { dragging = true; pad.setPointerCapture(e.pointerId); place(at(e)); });
  pad.addEventListener("pointermove", (e) => { if (dragging) place(at(e)); });
  pad.addEventListener("pointerup", () => { dragging = false; });
  pad.addEventListener("keydown", (e) => {
    const step = 0.1, moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (e.key === " " || e.key === "Enter") { e.preventDefault(); points.push([pen[0], pen[1]].map((v) => Math.round(v * 100) / 100)); if (points.length > maxPoints) points.pop(); redraw(); return; }
    const m = moves[e.key];
    if (!m) return;
    e.preventDefault();
    pen[0] = Math.max(-info.extent, Math.min(info.extent, pen[0] + m[0]));
    pen[1] = Math.max(-info.extent, Math.min(info.extent, pen[1] + m[1]));
    redraw();
  });
  $("train-clear").addEventListener("click", () => { points.length = 0; redraw(); });

  let stopRequested = false, training = false, trained = false;
  function updateButtons() {
    const drawn = $("train-target").value === DRAWN;
    $("train-start").disabled = training || (drawn && points.length < minPoints);
    $("train-device").disabled = training;
    $("train-stop").disabled = !training;
  }
  $("train-target").addEventListener("change", () => { $("train-pad-figure").hidden = $("train-target").value !== DRAWN; redraw(); });

  const status = (text) => setMath($("train-status"), text);
  // `since`: the run's start, to record when its samples first pass the threshold.
  async function show(since) {
    const r = await client.request({ type: "show", t: t(), seed: seed() });
    const f = r.fit;
    results.training.fit = f;
    if (since !== undefined && f.distance <= f.threshold && !results.training.firstGood) {
      results.training.firstGood = { step: r.step, seconds: (performance.now() - since) / 1000 };
    }
    setMath($("train-values"), `After ${whole(r.step)} steps, at t = ${t()}: the model's ${1000} samples (DPM-Solver++, 20 evaluations) are `
      + `${fmt(f.distance)} from exact draws of the target (sliced Wasserstein-1); two exact draws differ by ${fmt(f.floor)}. `
      + (f.distance <= f.threshold ? `A good fit (≤ ${f.threshold}).` : `Not yet a good fit (that is ≤ ${f.threshold}).`));
    ["train-field", "train-exact", "train-samples"].forEach((id) => $(id).setAttribute("aria-label", {
      "train-field": `The trained model's score field at t = ${t()} over the density of q_t`,
      "train-exact": `The exact score field at t = ${t()} over the density of q_t`,
      "train-samples": `${1000} samples of the trained model over the target's density: distance ${fmt(f.distance)}`,
    }[id]));
    return r;
  }

  // The trained model's own reverse SDE and ODE (1000 network calls each, once per model).
  async function paths() {
    const r = await client.request({ type: "paths", t: t(), seed: seed() });
    const c = r.check;
    results.training.paths = c;
    setMath($("train-paths-values"), `The trained model at t = ${t()}: distance to exact draws of q_t (sliced Wasserstein-1) SDE ${fmt(c.sde_to_exact)}, `
      + `ODE ${fmt(c.ode_to_exact)}; two exact draws differ by ${fmt(c.exact_floor)}; one start's SDE and ODE points are ${fmt(c.mean_separation)} apart on average.`);
  }

  // The trained model's fit against the number of steps of its two deterministic samplers.
  async function stepsTable() {
    const r = await client.request({ type: "steps", seed: 5 });
    const samplers = [...new Set(r.rows.map((row) => row.sampler))];
    const counts = [...new Set(r.rows.map((row) => row.steps))];
    $("train-steps").tHead.rows[0].replaceChildren(...["steps", ...samplers].map((name) => { const th = document.createElement("th"); th.scope = "col"; th.textContent = name; return th; }));
    $("train-steps").tBodies[0].replaceChildren(...counts.map((k) => {
      const tr = document.createElement("tr");
      const head = document.createElement("th"); head.scope = "row"; head.textContent = String(k); tr.append(head);
      for (const name of samplers) {
        const row = r.rows.find((x) => x.steps === k && x.sampler === name);
        const cell = tr.insertCell();
        cell.textContent = `${fmt(row.distance)} (${row.evaluations} calls)${row.distance <= r.threshold ? " ✓" : ""}`;
      }
      return tr;
    }));
    $("train-steps").caption.textContent = `The trained model's samples against exact draws (sliced W₁) by the number of steps; ✓ within the fit threshold ${fmt(r.threshold)}; two exact draws differ by ${fmt(r.floor)}.`;
    $("train-steps").hidden = false;
    results.training.steps = r.rows;
  }

  async function train() {
    stopRequested = false;
    training = true; trained = false;
    updateButtons();
    state("training");
    const target = $("train-target").value === DRAWN ? { kind: "drawn", points: points.map((p) => [p[0], p[1]]) }
      : { kind: "preset", preset: $("train-target").value };
    const prediction = $("train-prediction").value;
    const started = await client.request({ type: "start", target, objective: prediction });
    results.training = { state: "training", backend: info.backend.kind, prediction, target: target.kind === "drawn" ? DRAWN : target.preset, total: started.total, step: 0 };
    const losses = [];
    const t0 = performance.now();
    let chunk = 10, lastShow = t0, step = 0;
    while (!stopRequested && step < started.total) {
      const before = performance.now();
      const r = await client.request({ type: "train", steps: chunk });
      step = r.step;
      losses.push(...r.losses);
      const took = performance.now() - before;
      chunk = Math.max(1, Math.min(info.max_chunk, Math.round(chunk * CHUNK_MS / Math.max(took, 1))));
      const seconds = (performance.now() - t0) / 1000;
      const recent = losses.slice(-50);
      $("train-progress").value = step;
      status(`Step ${whole(step)} of ${whole(started.total)}: loss ${fmt(recent.reduce((a, b) => a + b, 0) / recent.length)} `
        + `(mean of the last ${recent.length}), ${seconds.toFixed(1)} s, ${Math.round(step / seconds)} steps/s.`);
      Object.assign(results.training, { step, seconds });
      if (performance.now() - lastShow > SHOW_EVERY_MS && step < started.total) { await show(t0); lastShow = performance.now(); }
    }
    const seconds = (performance.now() - t0) / 1000;
    const finished = step >= started.total;
    training = false;
    updateButtons();
    await show(t0);
    await paths();
    await stepsTable();
    trained = true;
    Object.assign(results.training, { state: finished ? "done" : "stopped", seconds, losses: losses.length });
    const good = results.training.firstGood;
    status(`${finished ? "Trained" : "Stopped"}: ${whole(step)} steps in ${seconds.toFixed(1)} s (${Math.round(step / seconds)} steps/s). `
      + (good ? `Its samples first passed the fit threshold at step ${whole(good.step)}, after ${good.seconds.toFixed(1)} s.` : "Its samples never passed the fit threshold."));
    state("ready");
  }
  const run = () => train().catch((e) => {
    training = false; updateButtons();
    if (e instanceof WorkerFailure && e.fatal) return;
    // A refused request (a drawing out of bounds) is the reader's to fix; the section stays usable.
    status(String(e && e.message ? e.message : e));
    state(trained ? "ready" : "idle");
  });
  $("train-start").addEventListener("click", run);
  $("train-stop").addEventListener("click", () => { stopRequested = true; });
  // A new t redraws the fields of the model trained last.
  const refresh = () => { if (trained && !training) show().then(paths).catch(() => {}); };
  redraw();
  state("idle");
  return { train: run, refresh };
}
