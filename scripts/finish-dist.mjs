// Turns trunk's dist/ into the deployable site (run by scripts/build-web.sh):
//   1. content-hashed names for what changes between builds and is large or code: the wasm, its
//      wasm-bindgen glue, the js/ folder and the weights/ folder, written into js/build.js and the
//      pages, so a host may cache them forever;
//   2. sw.js, the offline cache, listing every file under this build's version;
//   3. .gz and .br copies of every file beside it, for hosts that serve precompressed files.
// Uses only Node's standard library (crypto, zlib).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const dist = path.resolve(process.argv[2] ?? "dist");
const www = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../www");
const COMPRESSED = [".gz", ".br"];

const files = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]);
const hashOf = (paths) => {
  const h = crypto.createHash("sha256");
  for (const p of [...paths].sort()) h.update(path.relative(dist, p)).update(fs.readFileSync(p));
  return h.digest("hex").slice(0, 10);
};
const rel = (p) => path.relative(dist, p).split(path.sep).join("/");

// Stale outputs of an earlier run (trunk keeps dist/ between builds).
for (const f of files(dist)) if (COMPRESSED.includes(path.extname(f)) || path.basename(f) === "sw.js") fs.rmSync(f);
for (const e of fs.readdirSync(dist)) if (/^(js|weights)-[0-9a-f]{10}$/.test(e)) fs.rmSync(path.join(dist, e), { recursive: true });

// 1. Hashed names. The glue and the wasm first, then js/ (whose build.js names them), then weights/.
const rename = (from, to) => { fs.renameSync(path.join(dist, from), path.join(dist, to)); return to; };
// Each build (see js/build.js): trunk's with WebGPU, and the CPU-only one (scripts/build-cpu-wasm.sh).
const hashed = (stem) => ({
  glue: rename(`${stem}.js`, `${stem}-${hashOf([path.join(dist, `${stem}.js`)])}.js`),
  wasm: rename(`${stem}_bg.wasm`, `${stem}-${hashOf([path.join(dist, `${stem}_bg.wasm`)])}_bg.wasm`),
});
const builds = { webgpu: hashed("ddpm-web"), cpu: hashed("ddpm-web-cpu") };
const weights = rename("weights", `weights-${hashOf(files(path.join(dist, "weights")))}`);
const buildJs = path.join(dist, "js", "build.js");
const source = fs.readFileSync(buildJs, "utf8");
let written = source;
for (const [name, { glue, wasm }] of Object.entries(builds)) {
  written = written.replace(new RegExp(`${name}: \\{ glue: "[^"]*", wasm: "[^"]*" \\}`), `${name}: { glue: "../${glue}", wasm: "../${wasm}" }`);
}
written = written
  .replace(/weights: "[^"]*"/, `weights: "${weights}"`)
  .replace(/serviceWorker: null/, `serviceWorker: "sw.js"`);
for (const { glue, wasm } of Object.values(builds)) {
  if (!written.includes(glue) || !written.includes(wasm)) throw new Error("js/build.js did not take the hashed names");
}
fs.writeFileSync(buildJs, written);
const jsDir = `js-${hashOf(files(path.join(dist, "js")))}`;
// The version covers every file; build.js then carries it (the pages show it).
const version = hashOf(files(dist));
fs.writeFileSync(buildJs, written.replace(/version: "[^"]*"/, `version: "${version}"`));
rename("js", jsDir);
for (const page of ["index.html", "explainer.html", "restore.html"]) {
  const file = path.join(dist, page);
  const html = fs.readFileSync(file, "utf8");
  const fixed = html.replace(/(["'])js\//g, `$1${jsDir}/`);
  if (fixed === html) throw new Error(`${page} names no js/ module`);
  fs.writeFileSync(file, fixed);
}

// 2. The service worker, listing every file (relative to itself) under this version.
const list = files(dist).map(rel).sort();
const sw = fs.readFileSync(path.join(www, "sw.js"), "utf8")
  .replace('const VERSION = "dev";', `const VERSION = "${version}";`)
  .replace("const FILES = [];", `const FILES = ${JSON.stringify(list)};`);
if (!sw.includes(version)) throw new Error("www/sw.js lacks its VERSION line");
fs.writeFileSync(path.join(dist, "sw.js"), sw);

// 3. Precompressed copies.
let raw = 0, gz = 0, br = 0;
for (const f of files(dist)) {
  const body = fs.readFileSync(f);
  const g = zlib.gzipSync(body, { level: 9 });
  const b = zlib.brotliCompressSync(body, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: body.length > 4e6 ? 9 : 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
  fs.writeFileSync(`${f}.gz`, g);
  fs.writeFileSync(`${f}.br`, b);
  raw += body.length; gz += g.length; br += b.length;
}
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
const sizes = (f) => `${mb(fs.statSync(path.join(dist, f)).size)} (gzip ${mb(fs.statSync(path.join(dist, `${f}.gz`)).size)}, brotli ${mb(fs.statSync(path.join(dist, `${f}.br`)).size)})`;
console.log(`dist/ version ${version}: ${list.length + 1} files, ${mb(raw)} (gzip ${mb(gz)}, brotli ${mb(br)}); ` +
  `wasm with WebGPU ${sizes(builds.webgpu.wasm)}, CPU-only wasm ${sizes(builds.cpu.wasm)}`);
