// Where this build's files are. `trunk serve` uses these names as they are; the deploy build
// (scripts/build-web.sh) rewrites this file with content-hashed names and its version, and adds
// the service worker that keeps the pages working offline.
export const BUILD = {
  version: "dev",
  // The app's two builds, each a wasm module and its wasm-bindgen glue, relative to this module
  // (js/): with WebGPU (burn-wgpu, and the CPU backend as its fallback), and CPU-only (no CubeCL:
  // under a third of the download), which pages load when the browser offers no WebGPU adapter.
  webgpu: { glue: "../ddpm-web.js", wasm: "../ddpm-web_bg.wasm" },
  cpu: { glue: "../ddpm-web-cpu.js", wasm: "../ddpm-web-cpu_bg.wasm" },
  // Relative to the page.
  weights: "weights",
  serviceWorker: null,
};

// Registers the offline cache of a deploy build (none under `trunk serve`). A page works the same
// without it: a browser that refuses is only not offline.
export function registerServiceWorker() {
  if (!BUILD.serviceWorker || !("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register(BUILD.serviceWorker).catch(() => {});
}
