// The explainer's training worker (section 7): its own instance of the wasm module, training the
// 2-D denoiser with Rust's TrainerWorker and drawing into the canvases the page handed over.
import { serveRequests } from "./worker-host.js";

serveRequests((glue) => new glue.TrainerWorker());
