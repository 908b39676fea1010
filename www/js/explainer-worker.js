// The explainer's worker: its own instance of the wasm module, answering the page's requests
// one at a time with Rust's ExplainerWorker and drawing into the canvases the page handed over.
import { BUILD } from "./build.js";
import { serveRequests } from "./worker-host.js";

// The wasm-bindgen glue's name changes with each deploy build, so it is imported by name once
// the page has sent the compiled module.
serveRequests(async (module) => {
  const glue = await import(new URL(BUILD.glue, import.meta.url).href);
  await glue.default({ module_or_path: module });
  return new glue.ExplainerWorker();
});
