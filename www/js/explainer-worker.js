// The explainer's worker: its own instance of the wasm module, answering the page's requests
// one at a time with Rust's ExplainerWorker and drawing into the canvases the page handed over.
import { serveRequests } from "./worker-host.js";

serveRequests((glue) => new glue.ExplainerWorker());
