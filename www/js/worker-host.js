// What every worker script shares: it instantiates the wasm module the page compiled, answers
// requests in order, watches its WebGPU devices for loss, and reports a trap (a Rust panic) so
// the page can replace it.
// Envelope: page -> worker {wasm} (first) | {canvases} | {id, request} | {control: "lose_device"};
//           worker -> page {id, reply} | {id, trap} | {lost}.

const devices = [];
// WebGPU calls made by this worker, for the benchmark (scripts/bench.sh): kernel launches (and
// per kernel, by its pipeline's label), queue submits, buffer reads and writes. Counting is one
// increment per call.
const gpuCalls = { dispatches: 0, submits: 0, reads: 0, writes: 0, buffers: 0, kernels: {} };
if (self.GPUComputePassEncoder) {
  const wrap = (proto, method, key) => {
    const original = proto[method];
    proto[method] = function (...args) { gpuCalls[key]++; return original.apply(this, args); };
  };
  const setPipeline = GPUComputePassEncoder.prototype.setPipeline;
  GPUComputePassEncoder.prototype.setPipeline = function (pipeline) {
    this.kernel = pipeline.label || "(unlabelled)";
    return setPipeline.call(this, pipeline);
  };
  for (const method of ["dispatchWorkgroups", "dispatchWorkgroupsIndirect"]) {
    const original = GPUComputePassEncoder.prototype[method];
    GPUComputePassEncoder.prototype[method] = function (...args) {
      gpuCalls.dispatches++;
      gpuCalls.kernels[this.kernel] = (gpuCalls.kernels[this.kernel] ?? 0) + 1;
      return original.apply(this, args);
    };
  }
  wrap(GPUQueue.prototype, "submit", "submits");
  wrap(GPUBuffer.prototype, "mapAsync", "reads");
  wrap(GPUQueue.prototype, "writeBuffer", "writes");
  wrap(GPUDevice.prototype, "createBuffer", "buffers");
}
if (self.GPUAdapter) {
  // wgpu does not report a lost device to Burn, so the worker listens itself.
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    devices.push(device);
    device.lost.then((info) => {
      const detail = `${info.reason || "unknown"}${info.message ? ": " + info.message : ""}`;
      postMessage({ lost: `The WebGPU device was lost (${detail})` });
    });
    return device;
  };
}

// Instantiates the wasm module the page sent ({module, glue}: the compiled module and the URL of
// its wasm-bindgen glue, which differs between the two builds and changes with each deploy), then
// serves requests with the handler `create(glue)` returns.
export function serveRequests(create) {
  let provide;
  const ready = new Promise((resolve) => { provide = resolve; }).then(async (wasm) => {
    const glue = await import(new URL(wasm.glue, import.meta.url).href);
    await glue.default({ module_or_path: wasm.module });
    return create(glue);
  });
  let queue = Promise.resolve();
  self.onmessage = (event) => {
    const { id, request, control, wasm, canvases } = event.data;
    if (wasm) { provide(wasm); return; }
    // OffscreenCanvases the page transferred: the handler draws into them.
    if (canvases) { queue = queue.then(async () => (await ready).attach(canvases)); return; }
    // Simulates a driver reset, to test the page's recovery.
    if (control === "lose_device") { devices.forEach((d) => d.destroy()); return; }
    if (control === "gpu_calls") { queue = queue.then(() => postMessage({ id, reply: { ...gpuCalls } })); return; }
    queue = queue.then(async () => {
      try {
        const handler = await ready;
        postMessage({ id, reply: await handler.handle(request) });
      } catch (e) {
        postMessage({ id, trap: String(e && e.message ? e.message : e) });
      }
      // End the task between requests: an OffscreenCanvas shows what was drawn into it only
      // when the worker's task ends, and queued requests would otherwise run on as microtasks.
      await new Promise((resolve) => setTimeout(resolve, 0));
    });
  };
}
