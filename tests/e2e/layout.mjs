// Both pages on a phone (390x844) and a desktop (1280x800): no horizontal scrolling, and an
// automated accessibility scan (axe-core) with no serious or critical violation; then both pages
// reload with the network off (the deploy build's service worker), and a new build replaces the
// cached one.
//   node tests/e2e/layout.mjs            (after scripts/build-web.sh)
import path from "node:path";
import fs from "node:fs";
import { createRequire } from "node:module";
import { artifacts, assert, launchBrowser, startServer, testRunner, waitState } from "./harness.mjs";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
fs.mkdirSync(artifacts, { recursive: true });
const { server, base, rewrites } = await startServer();
const browser = await launchBrowser();
const { test, finish } = testRunner();

const SCREENS = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 800 } };
const PAGES = {
  sampler: { url: "/?backend=cpu&count=16&steps=10&start=1", done: ["done", "error"] },
  explainer: { url: "/explainer.html?backend=cpu", done: ["ready", "error"] },
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
        assert(widths.page <= widths.view, `${pageName} on a ${screen}: ${widths.page} px wide in a ${widths.view} px window`);
        // Every canvas says what it shows.
        const unnamed = await page.evaluate(() => [...document.querySelectorAll("canvas")].filter((c) => !c.getAttribute("aria-label")).map((c) => c.id));
        assert(unnamed.length === 0, `canvases without a name: ${unnamed}`);
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
