// The explainer page: controls and text. Every number and figure is computed in workers
// (js/explainer-worker.js): the first draws into the page's canvases; on the CPU the ELBO sweep is
// split in chunks of t across all of them.
import { registerServiceWorker } from "./build.js";
import { fetchBytes, loadAssets, megabytes } from "./download.js";
import { WorkerClient, WorkerFailure } from "./pool.js";
import { setupTraining } from "./trainer.js";
import { setupComparison } from "./compare.js";
import { drawingPad } from "./page.js";

const WORKER = new URL("./explainer-worker.js", import.meta.url);
const ELBO_CHUNK = 50;   // timesteps per request: the progress bar moves as chunks finish
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const fmt = (v, digits = 4) => Number.isFinite(v) ? (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toFixed(digits) : v.toExponential(2)) : String(v);
const showMessage = (text, error = false) => { $("message").textContent = text; $("message").className = error ? "error" : ""; };
const errorText = (e) => String(e && e.message ? e.message : e);
const fail = (e) => { showMessage(errorText(e), true); document.body.dataset.state = "error"; };
const ready = (id, value) => {
  $(id).dataset.ready = value ? "1" : "0";
  $(id).dataset.state = value ? "ready" : "loading";
};

// The computed sentences with real subscripts: "μ_θ" and "L_{t−1}" become μ<sub>θ</sub> and
// L<sub>t−1</sub>, built as DOM nodes (never parsed as HTML). Only for the page's own sentences.
function setMath(element, text) {
  const nodes = [];
  let plain = "";
  const chars = [...text];
  for (let k = 0; k < chars.length; k++) {
    if (chars[k] !== "_" || k + 1 >= chars.length) { plain += chars[k]; continue; }
    let sub;
    if (chars[k + 1] === "{") {
      const end = chars.indexOf("}", k + 2);
      sub = chars.slice(k + 2, end < 0 ? chars.length : end).join("");
      k = end < 0 ? chars.length : end;
    } else {
      sub = chars[k + 1];
      k += 1;
    }
    nodes.push(plain);
    plain = "";
    const element = document.createElement("sub");
    element.textContent = sub;
    nodes.push(element);
  }
  nodes.push(plain);
  element.replaceChildren(...nodes);
}

// How the page names each reverse variance (the worker's `VarianceChoice`).
const VARIANCE_LABELS = { beta: "σ² = β", beta_tilde: "σ² = β̃", learned: "learned Σ_θ" };
const CANVASES = ["x0", "xt-forward", "alpha-chart", "snr-chart", "elbo-chart", "weights-chart", "variance-chart", "v-xt", "v-eps", "v-x0",
  "v-score", "v-posterior", "v-model", "tweedie-chart", "toy-formula", "toy-exact", "paths-sde", "paths-ode", "steps-chart"];
let lead = null;        // draws and computes the per-t sections
let sweepers = [];      // compute ELBO chunks (the lead among them)
let info = null;
let x0 = null;          // the chosen image in model space, for the sweep's workers
let digitKey = "";      // which image the sections show: a shipped index, or the n-th drawing
let drawings = 0;
// What the sections computed last, for readers of the console and for the tests. The spread of
// the bound is kept per image: a draw of one digit never mixes into another's.
const results = { elboDraws: [], drawsByImage: {} };
window.explainer = { results, get workers() { return sweepers.length; } };

// One computation at a time; a newer request replaces a queued one (sliders fire often).
function serial() {
  let running = null, queued = null;
  return function run(task) {
    if (running) { queued = task; return running; }
    running = (async () => {
      try { await task(); } catch (e) { if (!(e instanceof WorkerFailure && e.fatal)) fail(e); }
      running = null;
      if (queued) { const next = queued; queued = null; run(next); }
    })();
    return running;
  };
}
const views = serial();
const t = () => +$("t").value;
const seed = () => +$("seed").value;

async function updateForward() {
  ready("forward", false);
  const { schedules } = await lead.request({ type: "forward", t: t(), seed: seed() });
  const [a, b] = schedules;
  $("schedule-values").textContent = `At t = ${t()}: ${a.name} ᾱ = ${fmt(a.alpha_bar)}, √ᾱ = ${fmt(a.sqrt_alpha_bar)}, SNR = ${fmt(a.snr)}; `
    + `${b.name} ᾱ = ${fmt(b.alpha_bar)}, √ᾱ = ${fmt(b.sqrt_alpha_bar)}, SNR = ${fmt(b.snr)}. The model uses the ${info.schedule} schedule.`;
  $("xt-forward").setAttribute("aria-label", `The digit with noise added up to t = ${t()}`);
  ready("forward", true);
}

async function updateViews() {
  ready("params", false); ready("step", false); ready("score", false);
  const { values: v } = await lead.request({ type: "views", t: t(), seed: seed() });
  results.views = v;
  $("cap-eps").textContent = `, shown ÷ ${fmt(v.eps_peak, 2)}`;
  $("cap-score").textContent = `, shown ÷ ${fmt(v.score_peak, 2)}`;
  setMath($("params-values"), `μ_θ through the noise, through x̂_0 and through the score: largest difference between any two routes ${fmt(v.route_max_diff)} `
    + `(x̂₀ route vs ε route ${fmt(v.mean_diff_x0_route)}, score route vs ε route ${fmt(v.mean_diff_score_route)}). `
    + (v.is_decoder ? "At t = 1 the bound's term is the decoder L₀, not a KL. " : `Weight each route's squared error gets in Lₜ₋₁ at this t (σₜ² = ${fmt(v.sigma2)}): `
      + `ε: λ = β²/(2σ²α(1−ᾱ)) = ${fmt(v.weight_eps)}; x₀: ᾱₜ₋₁β²/(2σ²(1−ᾱ)²) = ${fmt(v.weight_x0)}; score: β²/(2σ²α) = ${fmt(v.weight_score)}. L_{simple} uses weight 1 on the ε error at every t.`));
  const term = v.is_decoder ? `L_0 = −log p_θ(x_0 | x_1) = ${fmt(v.term_nats)} nats = ${fmt(v.term_bits)} bits/dim`
    : `KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) = L_{t−1} = ${fmt(v.term_nats)} nats = ${fmt(v.term_bits)} bits/dim`;
  setMath($("step-values"), `${term}. ‖μ̃ − μ_θ‖ = ${fmt(v.mean_distance)}; variances: posterior β̃_t = ${fmt(v.posterior_variance)}, model σ_t² = ${fmt(v.sigma2)}.`);
  ready("params", true); ready("step", true);
  const score = await lead.request({ type: "score", t: t(), seed: seed() });
  results.tweedie = { t: score.t, rmse: score.rmse };
  results.toyMaxDiff = score.toy_max_diff;
  setMath($("tweedie-values"), `At t = ${t()}: Tweedie's x̂_0 differs from the network's x̂_0 by at most ${fmt(v.tweedie_vs_predicted_x0)} (they are one formula), and from the true x_0 by RMSE ${fmt(v.tweedie_rmse)}.`);
  $("toy-values").textContent = `Largest difference between the two fields over the 15×15 grid: ${fmt(score.toy_max_diff)}.`;
  ready("score", true);
  await updatePaths();
}

async function updatePaths() {
  ready("paths", false);
  const r = await lead.request({ type: "paths", t: t(), seed: seed() });
  results.paths = r;
  const c = r.check;
  setMath($("paths-values"), `At t = ${t()}, distance to exact draws of q_t (sliced Wasserstein-1): SDE ${fmt(c.sde_to_exact)}, ODE ${fmt(c.ode_to_exact)}; `
    + `two exact draws of the same size differ by ${fmt(c.exact_floor)}. Yet a start's SDE and ODE points are ${fmt(c.mean_separation)} apart on average.`);
  $("solver-table").tBodies[0].replaceChildren(...r.solvers.map((row) => {
    const tr = document.createElement("tr");
    for (const v of [String(row.steps), fmt(row.ddim), fmt(row.dpm_solver)]) tr.insertCell().textContent = v;
    return tr;
  }));
  ["paths-sde", "paths-ode"].forEach((id) => $(id).setAttribute("aria-label",
    `2-D mixture at t = ${t()}: 400 points carried by the ${id === "paths-sde" ? "reverse SDE (DDPM)" : "probability-flow ODE (DDIM, eta 0)"} over the density of q_t`));
  ready("paths", true);
}

// The ELBO sweep: chunks of t handed to whichever worker is free; a sweep that is superseded
// (another digit, another draw) stops handing out chunks and adds nothing.
let elboGeneration = 0;
async function runElbo(newNoise) {
  const mine = ++elboGeneration;
  const key = digitKey, image = x0;
  ready("elbo", false);
  const draws = (results.drawsByImage[key] ??= []);
  // Each draw of an image has its own noise seed; the same seed again replaces its draw.
  const drawSeed = newNoise ? Math.max(seed(), ...draws.map((d) => d.seed)) + 1 : seed();
  const total = info.timesteps;
  const termNats = new Array(total).fill(NaN), simple = new Array(total).fill(NaN);
  // The terms under the other reverse variances (β̃, the learned one), and where the learned lies.
  const alternatives = new Map();
  let learned = null;
  let next = 0, done = 0;
  const start = performance.now();
  const priorPromise = lead.request({ type: "elbo_prior", x0: image });
  const work = async (client) => {
    while (next < total && mine === elboGeneration) {
      const first = next;
      const count = Math.min(ELBO_CHUNK, total - first);
      next += count;
      const r = await client.request({ type: "elbo_terms", x0: image, seed: drawSeed, first, count });
      if (mine !== elboGeneration) return;
      r.nats.forEach((v, k) => { termNats[first + k] = v; });
      r.simple.forEach((v, k) => { simple[first + k] = v; });
      for (const a of r.alternatives) {
        if (!alternatives.has(a.variance)) alternatives.set(a.variance, new Array(total).fill(NaN));
        a.nats.forEach((v, k) => { alternatives.get(a.variance)[first + k] = v; });
      }
      if (r.learned) {
        learned ??= { mean: new Array(total).fill(NaN), low: new Array(total).fill(NaN), high: new Array(total).fill(NaN) };
        for (const key of ["mean", "low", "high"]) r.learned[key].forEach((v, k) => { learned[key][first + k] = v; });
      }
      done += count;
      $("elbo-progress").value = done;
      $("elbo-status").textContent = `${done} of ${total} terms (${((performance.now() - start) / 1000).toFixed(1)} s, ${sweepers.length} worker${sweepers.length === 1 ? "" : "s"})`;
    }
  };
  await Promise.all(sweepers.map(work)).finally(firstSweepDone);
  const prior = await priorPromise;
  if (mine !== elboGeneration) return;
  results.elboSeconds = (performance.now() - start) / 1000;
  const { summary: s, bounds } = await lead.request({
    type: "elbo_summary", term_nats: termNats, simple, prior_nats: prior.nats,
    alternatives: [...alternatives].map(([variance, nats]) => ({ variance, nats })), learned,
  });
  if (mine !== elboGeneration) return;
  results.elbo = s;
  results.elboBounds = bounds;
  setMath($("elbo-variances"), "The same draw under each reverse variance: "
    + bounds.map((b) => `${VARIANCE_LABELS[b.variance]} ${fmt(b.total_bits)}`).join(", ") + " bits/dim"
    + (bounds.some((b) => b.variance === "learned") ? "." : " (these weights have no variance channel)."));
  $("variance-chart").setAttribute("aria-label", `Where the learned variance lies between β̃ and β over t; bounds ${bounds.map((b) => `${VARIANCE_LABELS[b.variance]} ${fmt(b.total_bits)}`).join(", ")} bits/dim`);
  const again = draws.findIndex((d) => d.seed === drawSeed);
  if (again >= 0) draws[again] = { seed: drawSeed, bits: s.total_bits };
  else draws.push({ seed: drawSeed, bits: s.total_bits });
  results.elboDraws = draws.map((d) => d.bits);
  setMath($("elbo-values"), `NLL bound for this digit: ${fmt(s.total_bits)} bits/dim = L_T ${fmt(s.prior_bits, 6)} + Σ L_{t−1} ${fmt(s.diffusion_bits)} + L_0 ${fmt(s.decoder_bits)}. `
    + `L_{simple} (mean ‖ε − ε_θ‖² per pixel over t) = ${fmt(s.simple)}.`);
  const d = results.elboDraws, n = d.length, mean = d.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN;
  $("elbo-draws").textContent = n > 1 ? `Over ${n} noise draws of this image: ${fmt(mean)} ± ${fmt(sd)} bits/dim (mean ± sd); draws ${d.map((x) => fmt(x, 3)).join(", ")}.`
    : "One noise draw of this image so far: redraw to see the spread of this one-sample estimate.";
  $("elbo-chart").setAttribute("aria-label", `ELBO terms per t for this image: bound ${fmt(s.total_bits)} bits/dim`);
  ready("elbo", true);
}
const elboQueue = serial();
// Section 7 starts training by itself once the first ELBO sweep is done (the cores are free then).
let firstSweepDone;
const firstSweep = new Promise((resolve) => { firstSweepDone = resolve; });

// The drawing pad (js/page.js): its digit replaces the chosen one in every section.
function setupPad() {
  const { clear, levels: drawnLevels } = drawingPad($("pad"));
  $("clear-drawing").addEventListener("click", clear);
  $("use-drawing").addEventListener("click", async () => {
    const levels = drawnLevels();
    try {
      x0 = (await lead.request({ type: "use_drawn_digit", levels })).x0;
      digitKey = `drawing ${++drawings}`;
    } catch (e) { fail(e); return; }
    refreshAll();
  });
}

const updateAll = async () => { await updateForward(); await updateViews(); };
function refreshAll() {
  views(updateAll);
  elboGeneration += 1;   // a running sweep of the previous image stops handing out chunks
  elboQueue(() => runElbo(false));
}

async function selectDigit() {
  x0 = (await lead.request({ type: "select_digit", index: +$("digit").value })).x0;
  digitKey = `digit ${$("digit").value}`;
}

async function boot() {
  const [assets, digits] = await Promise.all([
    loadAssets((parts) => {
      if (document.body.dataset.state === "error") return;
      const got = parts.wasm[0] + parts.unet[0] + parts.classifier[0], total = parts.wasm[1] + parts.unet[1] + parts.classifier[1];
      showMessage(`Downloading the app and the model: ${megabytes(got)}${total ? ` of ${megabytes(total)}` : ""}.`);
    }),
    fetchBytes("digits.json", () => {}).then((b) => new TextDecoder().decode(b)),
  ]);
  const onFatal = (message) => fail(`${message}. Reload the page to start again.`);
  lead = new WorkerClient(WORKER, assets.wasm, onFatal);
  lead.attachCanvases(Object.fromEntries(CANVASES.map((id) => [id, $(id)])));
  // The URL is read in Rust (crate::controls::ExplainerQuery), by the sampling page's rules.
  info = await lead.request({ type: "init", query: [...params], files: assets.files, digits });
  const query = info.query;
  sweepers = [lead];
  if (info.backend.kind === "cpu") {
    const wanted = query.workers ?? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, info.limits.default_workers_cap));
    const helpers = Array.from({ length: wanted - 1 }, () => new WorkerClient(WORKER, assets.wasm, onFatal));
    const settled = await Promise.allSettled(helpers.map((h) => h.request({ type: "init", query: [["backend", "cpu"]], files: assets.files, digits })));
    settled.forEach((r, k) => { if (r.status === "fulfilled") sweepers.push(helpers[k]); else helpers[k].terminate(); });
  }
  document.body.dataset.backend = info.backend.kind;
  $("backend").textContent = info.backend.kind === "webgpu" ? `Computing on WebGPU (${info.backend.adapter}).`
    : `Computing on the CPU (WebAssembly, ${sweepers.length} worker${sweepers.length === 1 ? "" : "s"}).`
      + (info.backend.fallback_reason ? ` WebGPU is not used: ${info.backend.fallback_reason}.` : "");
  $("backend").className = info.backend.fallback_reason ? "fallback" : "";
  info.digit_labels.forEach((label, k) => $("digit").add(new Option(`held-out digit ${label}`, String(k))));
  $("t").max = String(info.timesteps);
  $("digit").value = String(query.digit);
  $("t").value = String(query.t);
  $("seed").value = String(query.seed);
  showMessage(query.problems.length ? query.problems.join(". ") + "." : "Ready.");
  $("t-value").textContent = `t = ${t()}`;
  await selectDigit();
  document.body.dataset.state = "ready";
  // Once the app has loaded, cache it for offline use (deploy builds only).
  registerServiceWorker();
  setupPad();
  $("digit").addEventListener("change", async () => { try { await selectDigit(); refreshAll(); } catch (e) { fail(e); } });
  const training = setupTraining({ wasm: assets.wasm, webgpu: info.backend.kind === "webgpu", t, seed, fmt, setMath, fail, results });
  $("t").addEventListener("input", () => { $("t-value").textContent = `t = ${t()}`; views(updateAll); training.then((s) => s.refresh()); });
  $("seed").addEventListener("change", () => views(updateAll));
  $("elbo-redraw").addEventListener("click", () => { elboGeneration += 1; elboQueue(() => runElbo(true)); });
  refreshAll();
  setupComparison({ wasm: assets.wasm, files: assets.files, backend: query.backend, lead, limits: info.limits, seed, fmt, fail, results })
    .then((c) => { window.explainer.compare = c; }).catch(fail);
  const section = await training;
  await firstSweep;
  section.train();
}

boot().catch(fail);
