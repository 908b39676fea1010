// The deploy build's offline cache. scripts/finish-dist.mjs fills in VERSION and FILES (every
// file of the build); a new build has a new VERSION, so the browser installs this worker again,
// which caches the new files and then drops the old cache.
const VERSION = "dev";
const FILES = [];
const CACHE = `ddpm-web-${VERSION}`;

self.addEventListener("install", (event) => {
  // "no-cache": revalidate with the server, so an HTTP cache cannot hand an old page to a new build.
  const requests = FILES.map((file) => new Request(file, { cache: "no-cache" }));
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(requests)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  const old = (key) => key.startsWith("ddpm-web-") && key !== CACHE;
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter(old).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

// Cache first for this build's files (the page's query string does not name a file); anything
// else goes to the network.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const hit = await cache.match(event.request, { ignoreSearch: true })
      ?? (url.pathname.endsWith("/") ? await cache.match(new URL("index.html", url)) : undefined);
    return hit ?? fetch(event.request);
  })());
});
