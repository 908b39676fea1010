// Both pages on a phone (390x844) and a desktop (1280x800): no horizontal scrolling; every control
// has a name in the browser's accessibility tree (what a screen reader announces); every visible
// text meets WCAG AA contrast against its background; an automated accessibility scan (axe-core)
// finds no serious or critical violation. Then both pages reload with the network off (the deploy
// build's service worker), and a new build replaces the cached one. The desktop screenshots are
// the README's (docs/images/).
//   node tests/e2e/layout.mjs            (after scripts/build-web.sh)
import path from "node:path";
import fs from "node:fs";
import { createRequire } from "node:module";
import { artifacts, assert, launchBrowser, root, startServer, testRunner, waitState } from "./harness.mjs";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const readmeImages = path.join(root, "docs", "images");
fs.mkdirSync(artifacts, { recursive: true });
fs.mkdirSync(readmeImages, { recursive: true });

// Controls without a name in Chromium's accessibility tree (the tree itself, through the DevTools
// protocol, not a scanner's reading of the DOM): an <input> inside a <label> that also holds an
// <output> is named by nothing, for example.
const CONTROL_ROLES = new Set(["slider", "spinbutton", "combobox", "textbox", "searchbox", "checkbox", "radio", "switch", "button", "listbox", "menuitem", "tab"]);
async function unnamedControls(page) {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { nodes } = await cdp.send("Accessibility.getFullAXTree");
    return nodes.filter((n) => !n.ignored && CONTROL_ROLES.has(n.role?.value) && !String(n.name?.value ?? "").trim())
      .map((n) => `${n.role.value} with value ${JSON.stringify(n.value?.value ?? "")}`);
  } finally { await cdp.detach(); }
}

// Every element with visible text of its own, against the first opaque background behind it
// (alpha-composited up the tree onto the page's white): WCAG 2.x contrast, 4.5:1 for text and 3:1
// for large text (24 px, or 18.66 px bold). Disabled controls are exempt (WCAG 1.4.3).
function lowContrastTexts() {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0, 0, 0, 0]; const v = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((k) => top[k] * a + bottom[k] * (1 - a)).concat(1); };
  const channel = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
  };
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    if (["SCRIPT", "STYLE", "OPTION", "CANVAS", "svg"].includes(el.tagName)) continue;
    const text = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join("").trim();
    if (!text || el.closest(":disabled, [hidden], [aria-hidden=true]")) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible" || el.getClientRects().length === 0) continue;
    const fg = over(parse(style.color), background(el));
    const [l1, l2] = [luminance(fg), luminance(background(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) failures.push(`${ratio.toFixed(2)}:1 (needs ${needed}) "${text.slice(0, 40)}" in <${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className ? "." + String(el.className).split(" ")[0] : ""}>`);
  }
  return failures;
}
const { server, base, rewrites } = await startServer();
const browser = await launchBrowser();
const { test, finish } = testRunner();

const SCREENS = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } };
const PAGES = {
  sampler: { url: "/?backend=cpu&count=16&steps=10&start=1", done: ["done", "error"] },
  explainer: { url: "/explainer.html?backend=cpu", done: ["ready", "error"] },
  restore: { url: "/restore.html?backend=cpu&operation=inpaint&digit=47&steps=10&jump=2&resamplings=2&start=1", done: ["done", "error"] },
};

for (const [pageName, spec] of Object.entries(PAGES)) {
  for (const [screen, viewport] of Object.entries(SCREENS)) {
    await test(`${pageName}_fits_a_${screen}_and_passes_the_accessibility_scan`, async () => {
      const page = await browser.newPage({ viewport });
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      try {
        await page.goto(base + spec.url);
        await waitState(page, spec.done, 10 * 60 * 1000);
        assert(await page.evaluate(() => document.body.dataset.state) !== "error", await page.textContent("#message"));
        if (pageName === "explainer") {
          await page.waitForFunction(() => ["forward", "params", "score", "step", "paths"].every((id) => document.getElementById(id).dataset.ready === "1"), null, { timeout: 10 * 60 * 1000 });
        }
        const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
        await page.screenshot({ path: path.join(artifacts, `${pageName}-${screen}.png`), fullPage: true });
        // The restore page's result sits below its controls: its README picture is the whole page.
        if (screen === "desktop") await page.screenshot({ path: path.join(readmeImages, `${pageName}-desktop.png`), fullPage: pageName === "restore" });
        assert(widths.page <= widths.view, `${pageName} on a ${screen}: ${widths.page} px wide in a ${widths.view} px window`);
        // Every canvas says what it shows.
        const unnamed = await page.evaluate(() => [...document.querySelectorAll("canvas")].filter((c) => !c.getAttribute("aria-label")).map((c) => c.id));
        assert(unnamed.length === 0, `canvases without a name: ${unnamed}`);
        const nameless = await unnamedControls(page);
        assert(nameless.length === 0, `controls without an accessible name: ${nameless.join(", ")}`);
        const faint = await page.evaluate(lowContrastTexts);
        assert(faint.length === 0, `text under WCAG AA contrast: ${faint.slice(0, 8).join(" | ")}`);
        // The same while every section's figures are being recomputed (their dimmed style).
        const dimmed = await page.evaluate((check) => {
          const sections = [...document.querySelectorAll("[data-ready]")];
          const was = sections.map((e) => e.dataset.ready);
          sections.forEach((e) => { e.dataset.ready = "0"; });
          try { return (0, eval)(`(${check})`)(); } finally { sections.forEach((e, k) => { e.dataset.ready = was[k]; }); }
        }, lowContrastTexts.toString());
        assert(dimmed.length === 0, `text under WCAG AA contrast while recomputing: ${dimmed.slice(0, 8).join(" | ")}`);
        await page.addScriptTag({ path: axePath });
        const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
        assert(violations.length === 0, `axe: ${violations.join(" | ")}`);
        assert(errors.length === 0, `page errors: ${errors.join(" | ")}`);
      } finally { await page.close(); }
    });
  }
}

// After a first visit, each page works with the network off; then a new deploy (a service worker
// with another version) replaces the cached build.
for (const [pageName, spec] of Object.entries(PAGES)) {
  await test(`${pageName}_reloads_offline_and_a_new_build_replaces_the_cache`, async () => {
    const context = await browser.newContext({ viewport: SCREENS.phone });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    try {
      await page.goto(base + spec.url);
      await waitState(page, spec.done, 10 * 60 * 1000);
      await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 5 * 60 * 1000, polling: 200 });
      const cached = await page.evaluate(async () => (await caches.keys()).filter((k) => k.startsWith("ddpm-web-")));
      assert(cached.length === 1, `one cache for the build: ${cached}`);
      await context.setOffline(true);
      await page.reload();
      await waitState(page, ["ready", "done", "error"], 10 * 60 * 1000);
      assert(await page.evaluate(() => document.body.dataset.state) !== "error", `offline: ${await page.textContent("#message")}`);
      if (pageName === "sampler") {
        // The run's URL no longer says start=1: sample again, offline.
        await page.click("#start");
        await waitState(page, ["done", "error"], 10 * 60 * 1000);
        assert(await page.evaluate(() => document.body.dataset.state) === "done", `offline run: ${await page.textContent("#message")}`);
      }
      await context.setOffline(false);
      rewrites.set("/sw.js", (js) => js.replace(/const VERSION = "([^"]+)";/, 'const VERSION = "$1-next";'));
      try {
        await page.evaluate(async () => (await navigator.serviceWorker.getRegistration()).update());
        await page.waitForFunction(async () => {
          const keys = (await caches.keys()).filter((k) => k.startsWith("ddpm-web-"));
          return keys.length === 1 && keys[0].endsWith("-next");
        }, null, { timeout: 5 * 60 * 1000, polling: 500 });
      } finally { rewrites.delete("/sw.js"); }
      assert(errors.length === 0, `page errors: ${errors.join(" | ")}`);
    } finally { await context.close(); }
  });
}

await browser.close();
server.close();
finish("layout e2e");
