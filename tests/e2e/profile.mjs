// Where a reverse step's time goes in the browser: samples the sampling worker with Chromium's
// CPU profiler (DevTools protocol, attached to the page's dedicated workers) while the page runs
// `window.ddpm.bench`, and prints the functions with the most self time. Needs a build that keeps
// the wasm's function names (scripts/profile.sh makes one); prints figures, asserts nothing.
// Environment: PROFILE_DIST (the site to serve), PROFILE_BACKEND (cpu), PROFILE_GRIDS ("1,16"),
// PROFILE_STEPS (20), PROFILE_TOP (25).
import { launchBrowser, startServer, waitState, withPage } from "./harness.mjs";

const env = process.env;
const backend = env.PROFILE_BACKEND ?? "cpu";
const grids = (env.PROFILE_GRIDS ?? "1,16").split(",").map(Number);
const steps = Number(env.PROFILE_STEPS ?? 20);
const top = Number(env.PROFILE_TOP ?? 25);
const port = 9300 + Math.floor(Math.random() * 600);

const { server, base } = await startServer(env.PROFILE_DIST);
const browser = await launchBrowser([`--remote-debugging-port=${port}`]);

// A raw DevTools connection: playwright's sessions cannot address a page's dedicated workers.
async function devtools() {
  const { webSocketDebuggerUrl } = await (await fetch(`http://127.0.0.1:${port}/json/version`)).json();
  const ws = new WebSocket(webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  let next = 0;
  const pending = new Map();
  const workers = [];
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
    if (m.method === "Target.attachedToTarget" && m.params.targetInfo.type === "worker") workers.push(m.params.sessionId);
  };
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
    ws.send(JSON.stringify({ id, method, params, sessionId }));
  });
  return { ws, send, workers };
}

// Self time per function over every worker's profile, hash suffixes of Rust symbols dropped.
function selfTimes(profiles) {
  const byName = new Map();
  let total = 0;
  for (const profile of profiles) {
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    for (const id of profile.samples) {
      const frame = nodes.get(id).callFrame;
      const name = (frame.functionName || `(${frame.url.split("/").pop() || "native"})`).replace(/::h[0-9a-f]{16}$/, "");
      byName.set(name, (byName.get(name) ?? 0) + 1);
      total += 1;
    }
  }
  return [...byName].sort((a, b) => b[1] - a[1]).map(([name, n]) => [name, n / total]);
}

await withPage(browser, async (page) => {
  await page.goto(`${base}/?backend=${backend}&workers=1`);
  await waitState(page, ["ready", "error"], 5 * 60 * 1000);
  const { ws, send, workers } = await devtools();
  const target = (await send("Target.getTargets")).targetInfos.find((t) => t.type === "page" && t.url.startsWith(base));
  const { sessionId } = await send("Target.attachToTarget", { targetId: target.targetId, flatten: true });
  await send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true }, sessionId);
  while (workers.length === 0) await new Promise((r) => setTimeout(r, 50));
  for (const grid of grids) {
    await page.evaluate(({ grid }) => window.ddpm.bench({ grid, steps: 1 }), { grid });
    for (const w of workers) {
      await send("Profiler.enable", {}, w);
      await send("Profiler.setSamplingInterval", { interval: 200 }, w);
      await send("Profiler.start", {}, w);
    }
    const ms = await page.evaluate(({ grid, steps }) => window.ddpm.bench({ grid, steps }), { grid, steps });
    const profiles = [];
    for (const w of workers) profiles.push((await send("Profiler.stop", {}, w)).profile);
    console.log(`\n${backend}, 1 worker, grid ${grid}: ${ms.toFixed(1)} ms/step over ${steps} steps; self time by function:`);
    for (const [name, share] of selfTimes(profiles).slice(0, top)) console.log(`${(100 * share).toFixed(1).padStart(6)}%  ${name.slice(0, 140)}`);
  }
  ws.close();
});
await browser.close();
server.close();
