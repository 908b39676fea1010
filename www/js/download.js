// Downloads with real progress (bytes from the response stream), for the wasm module and the
// weights. The page fetches each file once and hands the bytes to its workers.
import { BUILD } from "./build.js";

export async function fetchBytes(url, onProgress) {
  let response;
  try { response = await fetch(url); } catch (e) { throw new Error(`cannot fetch ${url}: ${e.message || e}`); }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get("content-length")) || 0;
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    onProgress(bytes.length, bytes.length);
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    let part;
    try { part = await reader.read(); } catch (e) { throw new Error(`${url}: download interrupted (${e.message || e})`); }
    if (part.done) break;
    chunks.push(part.value);
    received += part.value.length;
    onProgress(received, total);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.length; }
  return bytes;
}

export const megabytes = (n) => `${(n / 1e6).toFixed(1)} MB`;

// Whether the browser offers a WebGPU adapter: asked on the page (no model work) only to choose
// which build to download; the worker asks again and decides the backend itself.
async function webgpuAdapterOffered() {
  try { return Boolean(navigator.gpu && await navigator.gpu.requestAdapter()); } catch { return false; }
}

// Fetch the app's wasm (the CPU-only build when there is no WebGPU adapter) and the weights,
// reporting "what, bytes, of" as they come. Resolves with `wasm` ({module, glue}: the compiled
// module and its glue, what a worker instantiates) and the files every worker needs.
export async function loadAssets(report) {
  const base = BUILD.weights;
  const [offered, manifestBytes] = await Promise.all([webgpuAdapterOffered(), fetchBytes(`${base}/manifest.json`, () => {})]);
  const build = offered ? BUILD.webgpu : BUILD.cpu;
  const manifestText = new TextDecoder().decode(manifestBytes);
  let manifest;
  try { manifest = JSON.parse(manifestText); } catch (e) { throw new Error(`manifest.json is malformed: ${e.message}`); }
  const size = (name) => (manifest.files || []).find((f) => f.name === name)?.bytes || 0;
  const parts = { wasm: [0, 0], unet: [0, size("unet.bpk")], classifier: [0, size("classifier.bpk")] };
  // The U-Net's variance channel, a few kilobytes, comes too when the manifest lists it.
  const listsVariance = (manifest.files || []).some((f) => f.name === "variance.bpk");
  const update = (key) => (received, total) => {
    parts[key] = [received, total || parts[key][1]];
    report(parts);
  };
  const [wasmBytes, unet, classifier, variance] = await Promise.all([
    fetchBytes(new URL(build.wasm, import.meta.url).href, update("wasm")),
    fetchBytes(`${base}/unet.bpk`, update("unet")),
    fetchBytes(`${base}/classifier.bpk`, update("classifier")),
    listsVariance ? fetchBytes(`${base}/variance.bpk`, () => {}) : null,
  ]);
  // Compiled once, off the main thread (the async API), and shared with every worker.
  const module = await WebAssembly.compile(wasmBytes);
  return { wasm: { module, glue: build.glue }, files: { manifest: manifestText, unet, classifier, variance } };
}
