// Both pages on a phone (390x844) and a desktop (1280x800): no horizontal scrolling, and an
// automated accessibility scan (axe-core) with no serious or critical violation.
//   node tests/e2e/layout.mjs            (after `trunk build`)
import path from "node:path";
import fs from "node:fs";
import { createRequire } from "node:module";
import { artifacts, assert, launchBrowser, startServer, testRunner, waitState } from "./harness.mjs";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
fs.mkdirSync(artifacts, { recursive: true });
const { server, base } = await startServer();
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
          await page.waitForFunction(() => ["forward", "params", "score", "step"].every((id) => document.getElementById(id).dataset.ready === "1"), null, { timeout: 10 * 60 * 1000 });
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

await browser.close();
server.close();
finish("layout e2e");
