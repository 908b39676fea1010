// Workers as promises: a WorkerClient sends one typed request and resolves with its reply; a
// Pool splits a grid's cells across several clients (one on WebGPU, one per core on the CPU).

export class WorkerFailure extends Error {
  constructor(message, fatal) { super(message); this.fatal = fatal; }
}

export class WorkerClient {
  // `wasm` is the compiled module and its glue (download.js); every worker instantiates its own copy.
  constructor(script, wasm, onFatal) {
    this.worker = new Worker(script, { type: "module" });
    this.worker.postMessage({ wasm });
    this.pending = new Map();
    this.nextId = 1;
    this.onFatal = onFatal;
    this.dead = false;
    this.worker.onmessage = (event) => {
      const { id, reply, trap, lost } = event.data;
      if (lost) { this.fail(lost); return; }
      const waiting = this.pending.get(id);
      if (!waiting) return;
      this.pending.delete(id);
      if (trap !== undefined) { this.fail(`The computation stopped with an error (${trap})`, waiting); return; }
      if (reply.type === "failed") waiting.reject(new WorkerFailure(reply.message, false));
      else waiting.resolve(reply);
    };
    this.worker.onerror = (event) => { event.preventDefault(); this.fail(`The worker could not run (${event.message || "script error"})`); };
  }

  // A trap or a lost device: this worker is not trusted any more.
  fail(message, first) {
    if (this.dead) return;
    this.dead = true;
    const error = new WorkerFailure(message, true);
    if (first) first.reject(error);
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
    this.onFatal(message);
  }

  request(request) {
    if (this.dead) return Promise.reject(new WorkerFailure("the worker was stopped", true));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, request });
    });
  }

  control(name) { this.worker.postMessage({ control: name }); }

  // A control message that answers, in order with the requests (e.g. "gpu_calls").
  ask(name) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, control: name });
    });
  }

  // Hand canvases (by id) to the worker, which draws into them from then on.
  attachCanvases(canvases) {
    const offscreen = Object.fromEntries(Object.entries(canvases).map(([id, c]) => [id, c.transferControlToOffscreen()]));
    this.worker.postMessage({ canvases: offscreen }, Object.values(offscreen));
  }

  terminate() { this.dead = true; this.worker.terminate(); this.pending.clear(); }
}

// Contiguous, balanced shares of `count` cells over `workers` workers: [{first, count}].
export function splitCells(count, workers) {
  const n = Math.max(1, Math.min(workers, count));
  const shares = [];
  let first = 0;
  for (let k = 0; k < n; k++) {
    const size = Math.floor(count / n) + (k < count % n ? 1 : 0);
    shares.push({ first, count: size });
    first += size;
  }
  return shares;
}

export class Pool {
  constructor(clients) { this.clients = clients; this.active = []; }

  get size() { return this.clients.length; }

  terminate() { this.clients.forEach((c) => c.terminate()); }

  // Start a run on every worker that has cells; resolves with the workers' Began replies.
  async begin(controls, { guideEveryStep = false } = {}) {
    const shares = splitCells(controls.grid, this.clients.length);
    this.active = shares.map((share, k) => ({ client: this.clients[k], share }));
    return Promise.all(this.active.map(({ client, share }) =>
      client.request({ type: "begin", controls, first_cell: share.first, count: share.count, guide_every_step: guideEveryStep })));
  }

  all(request) { return Promise.all(this.active.map(({ client }) => client.request(request))); }

  stop() { return this.all({ type: "stop" }).catch(() => {}); }
}
