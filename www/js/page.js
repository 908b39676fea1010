// What the pages share on their own thread: the drawing pad (white strokes on black, read back as
// 28x28 grey levels; arrow keys move a pen and Space or Shift draws, for readers without a
// pointer), writing the controls into the address bar so that it is a shareable link, and PNG
// downloads.

// The pad on `canvas`: returns `clear()` and `levels()` (784 grey levels, each 10x10 block averaged).
export function drawingPad(canvas) {
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false, last = null;
  const pen = { x: canvas.width / 2, y: canvas.height / 2 };
  const stroke = (from, to) => {
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x, to.y); ctx.stroke();
  };
  const at = (e) => { const r = canvas.getBoundingClientRect(); return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height }; };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; last = at(e); stroke(last, last); });
  canvas.addEventListener("pointermove", (e) => { if (!drawing) return; const p = at(e); stroke(last, p); last = p; });
  addEventListener("pointerup", () => { drawing = false; });
  canvas.addEventListener("keydown", (e) => {
    const step = 14, moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (e.key === " ") { stroke(pen, pen); e.preventDefault(); return; }
    const m = moves[e.key];
    if (!m) return;
    e.preventDefault();
    const to = { x: Math.min(canvas.width, Math.max(0, pen.x + m[0])), y: Math.min(canvas.height, Math.max(0, pen.y + m[1])) };
    if (e.shiftKey) stroke(pen, to);
    Object.assign(pen, to);
  });
  const levels = () => {
    const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data, k = canvas.width / 28;
    const out = new Uint8Array(784);
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
      let sum = 0;
      for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) sum += rgba[((y * k + dy) * canvas.width + x * k + dx) * 4];
      out[y * 28 + x] = Math.round(sum / (k * k));
    }
    return out;
  };
  return { clear, levels };
}

// The controls (name/value pairs, as Rust's parser wrote them back) into the address bar,
// without `start`, so that reloading the link does not start again.
export function writeUrl(query) {
  const params = new URLSearchParams(location.search);
  for (const [name, value] of query) params.set(name, value);
  params.delete("start");
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

// Nearest-neighbour upscale of a canvas or an ImageData, saved as a PNG.
export function downloadPng(source, name, scale = 4) {
  let image = source;
  if (source instanceof ImageData) {
    image = document.createElement("canvas");
    image.width = source.width; image.height = source.height;
    image.getContext("2d").putImageData(source, 0, 0);
  }
  const out = document.createElement("canvas");
  out.width = image.width * scale; out.height = image.height * scale;
  const ctx = out.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, 0, 0, out.width, out.height);
  out.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}
