// The explainer's training worker (section 7): its own instance of the wasm module, training the
// 2-D denoiser with Rust's TrainerWorker and drawing into the canvases the page handed over.
import { BUILD } from "./build.js";
import { serveRequests } from "./worker-host.js";

serveRequests(async (module) => {
  const glue = await import(new URL(BUILD.glue, import.meta.url).href);
  await glue.default({ module_or_path: module });
  return new glue.TrainerWorker();
});
