// The restore page's worker: loads its own instance of the wasm module and answers the page's
// requests one at a time with Rust's RestoreWorker. All model work happens here.
import { serveRequests } from "./worker-host.js";

serveRequests((glue) => new glue.RestoreWorker());
