// Where this build's files are. `trunk serve` uses these names as they are; the deploy build
// (scripts/build-web.sh) rewrites this file with content-hashed names and its version, and adds
// the service worker that keeps the pages working offline.
export const BUILD = {
  version: "dev",
  // Relative to this module (js/).
  glue: "../ddpm-web.js",
  wasm: "../ddpm-web_bg.wasm",
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
