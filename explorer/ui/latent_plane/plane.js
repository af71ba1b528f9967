// The latent plane: a Streamlit Components v2 module that draws encoded digits on a canvas and
// decodes the point under the cursor in the browser, from decoder weights sent once per model.
//
// One module serves two kinds of mount (explorer/ui/latent_plane/__init__.py):
//   * a payload mount, whose data is bytes: a model (points, labels, decoder weights, the
//     plane -> latent map) or a model's thumbnails. Its bytes stay identical across reruns, so
//     Streamlit's message cache sends them once; here they are parsed into MODELS / THUMBS.
//   * a view mount, whose data is small JSON (which model, overlays, label): the canvas.
// Both run in this one module (Streamlit imports a component's JS once per page), which is how
// a view finds its model. Only a click goes back to Python (a trigger value); hovering, zooming
// and panning never talk to the server.

const MODELS = new Map(); // model id -> parsed model
const THUMBS = new Map(); // model id -> thumbnail atlas
const VIEWS = new Map(); // parent element -> PlaneView
const SAVED = new Map(); // view key -> {cx, cy, ppu, hidden}: zoom, pan and legend survive reruns
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MARGIN = { left: 52, right: 10, top: 10, bottom: 40 };
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, more is a pan
const DIGIT_PICK_PX = 5; // a click this close to a digit's dot picks the digit
const HANDLE_PICK_PX = 9;

// For tests and benchmarks: the live views by key, parsed models, payload sizes, errors caught.
const hooks = (window.__latentPlane = window.__latentPlane || { views: {}, errors: [], payloadBytes: {} });
hooks.models = MODELS;
// Decode plane point (x, y) of a loaded model as the hover does: tests compare it with vae_core.decode.
hooks.decode = (id, x, y, label) => {
  const model = MODELS.get(id);
  return Array.from(decodeLatent(model, latentFromPlane(model, x, y), label || 0));
};

// ------------------------------------------------------------------------------ payloads
const TYPED = { f4: Float32Array, i1: Int8Array, u1: Uint8Array, i4: Int32Array };

function parseBlob(data) {
  const view = data instanceof Uint8Array ? data : new Uint8Array(data.buffer || data);
  const buffer = view.slice().buffer; // an aligned copy: typed arrays need aligned offsets
  const magic = new TextDecoder().decode(new Uint8Array(buffer, 0, 4));
  if (magic !== "VLP1") throw new Error("latent plane: not a payload (" + magic + ")");
  const headerLength = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headerLength)));
  const body = 8 + headerLength + ((8 - ((8 + headerLength) % 8)) % 8); // offsets count from here
  const arrays = {};
  for (const [name, spec] of Object.entries(header.arrays)) {
    const count = spec.shape.reduce((a, b) => a * b, 1);
    arrays[name] = new TYPED[spec.dtype](buffer, body + spec.offset, count);
  }
  return { header, arrays, bytes: view.byteLength };
}

const ACTIVATIONS = {
  relu: (v) => (v > 0 ? v : 0),
  elu: (v) => (v > 0 ? v : Math.expm1(v)),
  tanh: (v) => Math.tanh(v),
};

function buildModel(blob) {
  const { header, arrays } = blob;
  const meta = header.meta;
  const layers = [];
  for (let i = 0; i < meta.layers; i++) {
    const W = arrays["W" + i], b = arrays["b" + i];
    layers.push({ W, b, out: b.length, in: W.length / b.length, buffer: new Float64Array(b.length) });
  }
  const model = {
    id: header.id, meta, layers, bytes: blob.bytes,
    points: arrays.points, labels: arrays.labels,
    mean: arrays.mean, components: arrays.components,
    act: ACTIVATIONS[meta.activation],
    input: layers.length ? new Float64Array(layers[0].in) : null,
  };
  if (meta.decodable && !model.act) throw new Error("latent plane: unknown activation " + meta.activation);
  return model;
}

// z = mean + x * components[0] + y * components[1]: vae_core.LatentProjection.from_plane
function latentFromPlane(model, x, y) {
  const L = model.meta.latent_dim, k = model.meta.plane_dims, c = model.components;
  const z = new Float64Array(L);
  for (let i = 0; i < L; i++) z[i] = model.mean[i] + x * c[i] + (k > 1 ? y * c[L + i] : 0);
  return z;
}

// (z - mean) @ components.T: vae_core.LatentProjection.to_plane
function planeFromLatent(model, z) {
  const L = model.meta.latent_dim, k = model.meta.plane_dims, c = model.components;
  let x = 0, y = 0;
  for (let i = 0; i < L; i++) {
    const d = z[i] - model.mean[i];
    x += d * c[i];
    if (k > 1) y += d * c[L + i];
  }
  return [x, y];
}

// sigmoid(decoder(z, onehot(label))): vae_core.decode for an MLP decoder (models.MLPDecoder).
function decodeLatent(model, z, label, out) {
  const L = model.meta.latent_dim;
  const input = model.input;
  input.fill(0);
  for (let i = 0; i < L; i++) input[i] = z[i];
  if (model.meta.conditional) input[L + label] = 1;
  let h = input;
  const last = model.layers.length - 1;
  model.layers.forEach((layer, n) => {
    const { W, b, out: rows, in: cols, buffer } = layer;
    for (let o = 0; o < rows; o++) {
      let s = b[o];
      const row = o * cols;
      for (let i = 0; i < cols; i++) s += W[row + i] * h[i];
      buffer[o] = n === last ? s : model.act(s);
    }
    h = buffer;
  });
  const probs = out || new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) probs[i] = 1 / (1 + Math.exp(-h[i]));
  return probs;
}

function interpolatePath(a, b, steps, method) {
  const L = a.length, path = [];
  let omega = 0, sinOmega = 0;
  if (method === "spherical") {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < L; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    const cos = dot / Math.max(Math.sqrt(na) * Math.sqrt(nb), 1e-12);
    omega = Math.acos(Math.min(1, Math.max(-1, cos)));
    sinOmega = Math.sin(omega);
  }
  for (let s = 0; s < steps; s++) {
    const t = steps === 1 ? 0 : s / (steps - 1), z = new Float64Array(L);
    const spherical = method === "spherical" && Math.abs(omega) >= 1e-6;
    const wa = spherical ? Math.sin((1 - t) * omega) / sinOmega : 1 - t;
    const wb = spherical ? Math.sin(t * omega) / sinOmega : t;
    for (let i = 0; i < L; i++) z[i] = wa * a[i] + wb * b[i];
    path.push(z);
  }
  return path;
}

function buildAtlas(thumbs, labels) {
  // Binary digits, bit-packed (N, ceil(D / 8)): an atlas of 14x14 cells, ink in its class colour.
  const meta = thumbs.meta, n = meta.count, size = meta.image_size, cell = 14, pool = size / cell;
  const columns = Math.ceil(Math.sqrt(n)), rows = Math.ceil(n / columns);
  const atlas = document.createElement("canvas");
  atlas.width = columns * cell;
  atlas.height = rows * cell;
  const ctx = atlas.getContext("2d");
  const image = ctx.createImageData(atlas.width, atlas.height);
  const bits = thumbs.bits, stride = meta.stride;
  for (let d = 0; d < n; d++) {
    const colour = hexToRgb(COLOURS[labels && labels[d] >= 0 ? labels[d] : 7]);
    const ox = (d % columns) * cell, oy = Math.floor(d / columns) * cell;
    for (let r = 0; r < cell; r++) {
      for (let c = 0; c < cell; c++) {
        let ink = 0;
        for (let pr = 0; pr < pool; pr++) {
          for (let pc = 0; pc < pool; pc++) {
            const p = (r * pool + pr) * size + c * pool + pc;
            ink += (bits[d * stride + (p >> 3)] >> (7 - (p & 7))) & 1;
          }
        }
        const at = ((oy + r) * atlas.width + ox + c) * 4;
        image.data[at] = colour[0]; image.data[at + 1] = colour[1]; image.data[at + 2] = colour[2];
        image.data[at + 3] = Math.round((255 * ink) / (pool * pool));
      }
    }
  }
  ctx.putImageData(image, 0, 0);
  thumbs.atlas = atlas;
  thumbs.columns = columns;
  thumbs.cell = cell;
  return thumbs;
}

// Run `callback` after the current frame's rendering: a message posted from requestAnimationFrame
// is handled once the frame's style, layout and paint are done.
function afterPaint(callback) {
  const channel = new MessageChannel();
  channel.port1.onmessage = callback;
  channel.port2.postMessage(0);
}

function hexToRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function mountPayload(data) {
  // Reruns hand the same bytes again: parse each payload id once.
  const view = data instanceof Uint8Array ? data : new Uint8Array(data);
  const headerLength = new DataView(view.buffer, view.byteOffset, view.byteLength).getUint32(4, true);
  const id = JSON.parse(new TextDecoder().decode(view.subarray(8, 8 + headerLength))).id;
  if (MODELS.has(id) || THUMBS.has(id)) return;
  const blob = parseBlob(view);
  hooks.payloadBytes[id] = blob.bytes;
  if (blob.header.kind === "model") {
    MODELS.set(id, buildModel(blob));
    // a live run sends a model per snapshot: keep the newest few and any a view still shows
    const shown = new Set([...VIEWS.values()].map((v) => v.data && v.data.model));
    for (const old of MODELS.keys()) {
      if (MODELS.size <= 12) break;
      if (old !== id && !shown.has(old)) MODELS.delete(old);
    }
  }
  else if (blob.header.kind === "thumbnails") {
    THUMBS.set(blob.header.meta.model, { meta: blob.header.meta, bits: blob.arrays.bits, atlas: null });
    THUMBS.set(id, true);
  }
  for (const view of VIEWS.values()) view.payloadArrived(blob.header.kind === "model" ? id : blob.header.meta.model);
}

// ------------------------------------------------------------------------------ the view
function niceStep(span, ticks) {
  const raw = span / ticks, power = Math.pow(10, Math.floor(Math.log10(raw)));
  const scaled = raw / power;
  return power * (scaled < 1.5 ? 1 : scaled < 3.5 ? 2 : scaled < 7.5 ? 5 : 10);
}

function formatTick(value, step) {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return (Math.abs(value) < step / 1e6 ? 0 : value).toFixed(decimals);
}

class PlaneView {
  constructor(parentElement) {
    this.parent = parentElement;
    this.root = document.createElement("div");
    this.root.className = "vlp-root";
    this.root.innerHTML = `
      <div class="vlp-stage"><canvas class="vlp-canvas"></canvas><canvas class="vlp-strip" hidden></canvas></div>
      <div class="vlp-side">
        <canvas class="vlp-big" width="28" height="28"></canvas>
        <div class="vlp-readout"></div>
        <div class="vlp-legend"></div>
        <div class="vlp-note"></div>
      </div>`;
    parentElement.appendChild(this.root);
    this.canvas = this.root.querySelector(".vlp-canvas");
    this.strip = this.root.querySelector(".vlp-strip");
    this.big = this.root.querySelector(".vlp-big");
    this.readout = this.root.querySelector(".vlp-readout");
    this.legend = this.root.querySelector(".vlp-legend");
    this.note = this.root.querySelector(".vlp-note");
    this.base = document.createElement("canvas"); // dots/thumbnails and axes, redrawn on zoom and pan
    this.small = document.createElement("canvas"); // one decoded digit at its native size
    this.pointer = null; // last hover position, canvas CSS px
    this.press = null;
    this.baseDirty = true;
    this.frameQueued = false;
    this.hovered = null;
    this.lastDecoded = null;
    // (pointer event time, drawn, painted) of recent hover decodes, for the benchmark: painted is
    // a message posted from the next animation frame, which runs once that frame has been rendered
    this.paints = [];
    this.frames = 0;
    this.listen();
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.root.querySelector(".vlp-stage"));
  }

  // ---- data from Python
  update(data, setTriggerValue) {
    this.data = data;
    this.setTriggerValue = setTriggerValue;
    this.key = data.view_key;
    hooks.views[this.key] = this;
    this.canvas.style.height = `${data.height}px`;
    const next = MODELS.get(data.model) || null;
    // A live run's next snapshot may reach the view before its points do: keep drawing the last
    // points until they arrive, rather than blanking the canvas on every poll.
    if (next || !data.refit) this.model = next;
    this.pending = null; // the server has answered: its overlays replace the optimistic ones
    this.path = null;
    this.baseDirty = true;
    if (next) this.ready();
    else if (!this.model) this.readout.textContent = "Loading the model…";
    this.resize();
  }

  payloadArrived(id) {
    if (!this.data) return;
    if (id === this.data.model && MODELS.get(id) !== this.model) {
      this.model = MODELS.get(id);
      this.ready();
    }
    this.baseDirty = true;
    this.queue();
  }

  ready() {
    const model = this.model, data = this.data;
    const saved = SAVED.get(this.savedKey());
    this.hidden = saved ? saved.hidden : new Set();
    this.view = saved && !data.refit ? saved.view : null; // refit: a live run's points move
    this.buildLegend();
    this.note.textContent = data.note || "";
    if (data.path && model.meta.decodable) this.setPath(data.path);
    if (data.path) this.strip.hidden = false;
    if (!this.lastShown) this.readout.textContent = data.prompt || "";
    if (data.server_image) this.showServerImage(data.server_image);
    else if (data.clicked && model.meta.decodable && !data.path) this.showDecodedAt(data.clicked[0], data.clicked[1]);
    this.baseDirty = true;
    this.queue();
  }

  savedKey() {
    return this.data.refit ? this.key : `${this.key}|${this.data.model}`;
  }

  save() {
    SAVED.set(this.savedKey(), { view: this.view, hidden: this.hidden });
  }

  buildLegend() {
    const labels = this.model.labels, present = new Set();
    for (let i = 0; i < labels.length; i++) if (labels[i] >= 0) present.add(labels[i]);
    this.legend.textContent = "";
    [...present].sort((a, b) => a - b).forEach((digit) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.digit = String(digit);
      button.innerHTML = `<span class="vlp-swatch" style="background:${COLOURS[digit]}"></span>${digit}`;
      button.classList.toggle("vlp-off", this.hidden.has(digit));
      button.title = `show or hide the ${digit}s`;
      button.addEventListener("click", () => {
        if (this.hidden.has(digit)) this.hidden.delete(digit);
        else this.hidden.add(digit);
        button.classList.toggle("vlp-off", this.hidden.has(digit));
        this.save();
        this.baseDirty = true;
        this.queue();
      });
      this.legend.appendChild(button);
    });
  }

  // ---- geometry
  resize() {
    const width = Math.max(200, Math.round(this.canvas.getBoundingClientRect().width || this.root.clientWidth - 192));
    const height = this.data ? this.data.height : 400;
    const dpr = window.devicePixelRatio || 1;
    this.cssWidth = width;
    this.cssHeight = height;
    for (const c of [this.canvas, this.base]) {
      c.width = Math.round(width * dpr);
      c.height = Math.round(height * dpr);
    }
    this.dpr = dpr;
    this.area = {
      left: MARGIN.left, top: MARGIN.top,
      width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom,
    };
    this.baseDirty = true;
    this.queue();
  }

  fit() {
    const [x0, x1, y0, y1] = this.data.bounds;
    const ppu = Math.min(this.area.width / (x1 - x0), this.area.height / (y1 - y0)); // equal scales
    return { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, ppu };
  }

  toScreen(x, y) {
    const v = this.view;
    return [this.area.left + this.area.width / 2 + (x - v.cx) * v.ppu,
      this.area.top + this.area.height / 2 - (y - v.cy) * v.ppu];
  }

  toPlane(sx, sy) {
    const v = this.view;
    return [v.cx + (sx - this.area.left - this.area.width / 2) / v.ppu,
      v.cy - (sy - this.area.top - this.area.height / 2) / v.ppu];
  }

  // For tests and benchmarks: page (client) coordinates of a plane point, and back.
  clientOf(x, y) {
    const box = this.canvas.getBoundingClientRect(), [sx, sy] = this.toScreen(x, y);
    return [box.left + sx, box.top + sy];
  }

  planeOf(clientX, clientY) {
    const box = this.canvas.getBoundingClientRect();
    return this.toPlane(clientX - box.left, clientY - box.top);
  }

  plotBox() {
    const box = this.canvas.getBoundingClientRect();
    return { left: box.left + this.area.left, top: box.top + this.area.top, width: this.area.width, height: this.area.height };
  }

  digitsOnScreen() {
    const out = [], p = this.model.points, labels = this.model.labels;
    for (let i = 0; i < labels.length; i++) {
      if (this.hidden.has(labels[i])) continue;
      const [cx, cy] = this.clientOf(p[2 * i], p[2 * i + 1]);
      out.push([cx, cy, i]);
    }
    return out;
  }

  inArea(sx, sy) {
    const a = this.area;
    return sx >= a.left && sx <= a.left + a.width && sy >= a.top && sy <= a.top + a.height;
  }

  nearestDigit(sx, sy, within) {
    const p = this.model.points, labels = this.model.labels, v = this.view;
    const [px, py] = this.toPlane(sx, sy);
    const limit = (within / v.ppu) ** 2;
    let best = -1, bestD = limit;
    for (let i = 0; i < labels.length; i++) {
      if (this.hidden.has(labels[i])) continue;
      const dx = p[2 * i] - px, dy = p[2 * i + 1] - py, d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  }

  // ---- events
  listen() {
    const c = this.canvas;
    const local = (e) => {
      const box = c.getBoundingClientRect();
      return [e.clientX - box.left, e.clientY - box.top];
    };
    c.addEventListener("pointermove", (e) => {
      const [sx, sy] = local(e);
      if (this.press) {
        const dx = sx - this.press.sx, dy = sy - this.press.sy;
        if (!this.press.moved && Math.hypot(dx, dy) < CLICK_SLOP_PX) return;
        this.press.moved = true;
        if (this.press.handle) this.dragHandle(this.press.handle, sx, sy);
        else {
          this.view = { ...this.view, cx: this.press.view.cx - dx / this.view.ppu, cy: this.press.view.cy + dy / this.view.ppu };
          c.classList.add("vlp-panning");
          this.baseDirty = true;
        }
      }
      this.pointer = { sx, sy, at: e.timeStamp };
      // Hovering draws at once, in the event: Chrome delivers pointermove at most once per frame,
      // and drawing now puts the digit on the very next frame instead of one frame later.
      if (this.press) this.queue();
      else this.drawSafely();
    });
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !this.model) return;
      const [sx, sy] = local(e);
      c.setPointerCapture(e.pointerId);
      this.press = { sx, sy, view: { ...this.view }, moved: false, handle: this.handleAt(sx, sy) };
    });
    c.addEventListener("pointerup", (e) => {
      const press = this.press;
      this.press = null;
      c.classList.remove("vlp-panning");
      if (!press) return;
      if (press.moved) {
        this.save();
        if (press.handle) this.sendPath();
        return;
      }
      const [sx, sy] = local(e);
      if (this.inArea(sx, sy)) this.click(sx, sy);
    });
    c.addEventListener("pointerleave", () => {
      this.pointer = null;
      this.queue();
    });
    c.addEventListener("wheel", (e) => {
      if (!this.view) return;
      e.preventDefault();
      const [sx, sy] = local(e);
      const [px, py] = this.toPlane(sx, sy);
      const ppu = Math.min(Math.max(this.view.ppu * Math.exp(-e.deltaY * 0.0015), 1e-3), 1e6);
      // keep the plane point under the cursor where it is
      const cx = px - (sx - this.area.left - this.area.width / 2) / ppu;
      const cy = py + (sy - this.area.top - this.area.height / 2) / ppu;
      this.view = { cx, cy, ppu };
      this.save();
      this.baseDirty = true;
      this.queue();
    }, { passive: false });
    c.addEventListener("dblclick", () => {
      this.view = this.fit();
      this.save();
      this.baseDirty = true;
      this.queue();
    });
  }

  click(sx, sy) {
    const [x, y] = this.toPlane(sx, sy);
    const digit = this.data.pick_digits === false ? -1 : this.nearestDigit(sx, sy, DIGIT_PICK_PX);
    this.pending = digit >= 0 ? { digit } : { x, y };
    this.queue();
    if (!this.setTriggerValue || this.data.clicks === false) return;
    this.setTriggerValue("click", digit >= 0 ? { digit } : { x, y });
  }

  // ---- path mode (Interpolate): endpoints and the walk point can be dragged
  setPath(spec) {
    const model = this.model;
    const start = Float64Array.from(spec.start), end = Float64Array.from(spec.end);
    this.path = { start, end, method: spec.method, steps: spec.steps, walk: spec.walk, labels: spec.label };
    this.decodePath();
  }

  decodePath() {
    const model = this.model, path = this.path;
    path.latents = interpolatePath(path.start, path.end, path.steps, path.method);
    path.plane = path.latents.map((z) => planeFromLatent(model, z));
    path.images = path.latents.map((z) => decodeLatent(model, z, this.data.label || 0));
    hooks.views[this.key].lastPath = path;
    this.drawStrip();
    this.showProbs(path.images[path.walk], `Step ${path.walk + 1} of ${path.steps}`);
  }

  handleAt(sx, sy) {
    if (!this.path || !this.path.plane) return null;
    const near = (p) => Math.hypot(this.toScreen(p[0], p[1])[0] - sx, this.toScreen(p[0], p[1])[1] - sy) <= HANDLE_PICK_PX;
    const plane = this.path.plane;
    if (near(plane[this.path.walk])) return "walk";
    if (near(plane[0])) return "start";
    if (near(plane[plane.length - 1])) return "end";
    return null;
  }

  dragHandle(handle, sx, sy) {
    const path = this.path, [x, y] = this.toPlane(sx, sy);
    if (handle === "walk") {
      let best = 0, bestD = Infinity;
      path.plane.forEach(([px, py], i) => {
        const d = (px - x) ** 2 + (py - y) ** 2;
        if (d < bestD) { bestD = d; best = i; }
      });
      path.walk = best;
      this.showProbs(path.images[best], `Step ${best + 1} of ${path.steps}`);
      this.drawStrip();
      return;
    }
    // move the endpoint within the plane, keeping its other latent directions
    const z = handle === "start" ? path.start : path.end;
    const [ox, oy] = planeFromLatent(this.model, z);
    const L = this.model.meta.latent_dim, c = this.model.components, k = this.model.meta.plane_dims;
    for (let i = 0; i < L; i++) z[i] += (x - ox) * c[i] + (k > 1 ? (y - oy) * c[L + i] : 0);
    this.decodePath();
  }

  sendPath() {
    if (!this.setTriggerValue || !this.path) return;
    this.setTriggerValue("path", {
      start: Array.from(this.path.start), end: Array.from(this.path.end), walk: this.path.walk,
    });
  }

  drawStrip() {
    const path = this.path, size = this.model.meta.image_size, scale = 2;
    this.strip.width = path.steps * size;
    this.strip.height = size;
    this.strip.style.width = `${path.steps * size * scale}px`;
    const ctx = this.strip.getContext("2d");
    const image = ctx.createImageData(path.steps * size, size);
    path.images.forEach((probs, s) => {
      for (let r = 0; r < size; r++) {
        for (let c = 0; c < size; c++) {
          const at = (r * path.steps * size + s * size + c) * 4, v = Math.round(255 * Math.min(1, Math.max(0, probs[r * size + c])));
          image.data[at] = image.data[at + 1] = image.data[at + 2] = v;
          image.data[at + 3] = 255;
        }
      }
    });
    ctx.putImageData(image, 0, 0);
    ctx.strokeStyle = "#ff4b4b";
    ctx.lineWidth = 1;
    ctx.strokeRect(path.walk * size + 0.5, 0.5, size - 1, size - 1);
  }

  // ---- decoded digits
  showProbs(probs, text) {
    const size = this.model.meta.image_size;
    this.paintDigit(this.big, probs, size);
    this.readout.textContent = text;
    this.lastShown = true;
  }

  showDecodedAt(x, y) {
    const probs = decodeLatent(this.model, latentFromPlane(this.model, x, y), this.data.label || 0);
    this.showProbs(probs, `(${x.toFixed(3)}, ${y.toFixed(3)})`);
  }

  showServerImage(image) {
    const bytes = Uint8Array.from(atob(image.pixels), (ch) => ch.charCodeAt(0));
    const probs = Float32Array.from(bytes, (v) => v / 255);
    this.showProbs(probs, image.text || "decoded by the server");
  }

  paintDigit(target, probs, size) {
    target.width = size;
    target.height = size;
    const ctx = target.getContext("2d");
    const image = ctx.createImageData(size, size);
    for (let i = 0; i < size * size; i++) {
      const v = Math.round(255 * Math.min(1, Math.max(0, probs[i])));
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = v;
      image.data[4 * i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  // ---- drawing
  queue() {
    if (this.frameQueued) return;
    this.frameQueued = true;
    requestAnimationFrame(() => {
      this.frameQueued = false;
      this.drawSafely();
    });
  }

  drawSafely() {
    try {
      this.frame();
    } catch (error) {
      hooks.errors.push(String(error));
      throw error;
    }
  }

  frame() {
    if (!this.model || !this.area) return;
    if (!this.view) {
      this.view = this.fit();
      this.save();
    }
    this.frames += 1;
    if (this.baseDirty) {
      this.hoverPointer = null; // zoomed, panned or new data: the same pointer is another point now
      this.drawBase();
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.base, 0, 0);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.save();
    ctx.beginPath();
    ctx.rect(this.area.left, this.area.top, this.area.width, this.area.height);
    ctx.clip();
    this.drawOverlays(ctx);
    ctx.restore();
    this.drawHover(ctx);
  }

  drawBase() {
    this.baseDirty = false;
    const ctx = this.base.getContext("2d"), a = this.area;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.cssWidth, this.cssHeight);
    const style = getComputedStyle(this.root);
    const text = style.color || "#31333f";
    ctx.fillStyle = "rgba(128,128,128,0.06)";
    ctx.fillRect(a.left, a.top, a.width, a.height);
    // axes: ticks in latent units, the same step on both axes (the scales are equal)
    const [x0, y1] = this.toPlane(a.left, a.top), [x1, y0] = this.toPlane(a.left + a.width, a.top + a.height);
    const step = niceStep(Math.max(x1 - x0, y1 - y0), 7);
    ctx.strokeStyle = "rgba(128,128,128,0.25)";
    ctx.fillStyle = text;
    ctx.font = "11px sans-serif";
    ctx.lineWidth = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let v = Math.ceil(x0 / step) * step; v <= x1; v += step) {
      const [sx] = this.toScreen(v, 0);
      ctx.beginPath(); ctx.moveTo(sx, a.top); ctx.lineTo(sx, a.top + a.height); ctx.stroke();
      ctx.fillText(formatTick(v, step), sx, a.top + a.height + 4);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = Math.ceil(y0 / step) * step; v <= y1; v += step) {
      const [, sy] = this.toScreen(0, v);
      ctx.beginPath(); ctx.moveTo(a.left, sy); ctx.lineTo(a.left + a.width, sy); ctx.stroke();
      ctx.fillText(formatTick(v, step), a.left - 5, sy);
    }
    const [xTitle, yTitle] = this.model.meta.axis_labels;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(xTitle, a.left + a.width / 2, this.cssHeight - 2);
    ctx.save();
    ctx.translate(12, a.top + a.height / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
    ctx.save();
    ctx.beginPath();
    ctx.rect(a.left, a.top, a.width, a.height);
    ctx.clip();
    const thumbs = this.data.thumbnails ? THUMBS.get(this.data.model) : null;
    if (thumbs && !thumbs.atlas) buildAtlas(thumbs, this.model.labels);
    if (thumbs) this.drawThumbs(ctx, thumbs);
    else this.drawDots(ctx);
    ctx.restore();
  }

  drawDots(ctx) {
    const p = this.model.points, labels = this.model.labels, n = labels.length;
    const size = n > 3000 ? 3 : 4, half = size / 2, v = this.view;
    const ox = this.area.left + this.area.width / 2, oy = this.area.top + this.area.height / 2;
    ctx.globalAlpha = this.data.dot_opacity || 0.75;
    for (let digit = -1; digit < 10; digit++) {
      if (this.hidden.has(digit)) continue;
      ctx.fillStyle = digit < 0 ? "#555" : COLOURS[digit];
      for (let i = 0; i < n; i++) {
        if (labels[i] !== digit) continue;
        ctx.fillRect(ox + (p[2 * i] - v.cx) * v.ppu - half, oy - (p[2 * i + 1] - v.cy) * v.ppu - half, size, size);
      }
    }
    ctx.globalAlpha = 1;
  }

  drawThumbs(ctx, thumbs) {
    const p = this.model.points, labels = this.model.labels, v = this.view;
    // a thumbnail about a twentieth of the view across, never tiny, never huge
    const size = Math.min(48, Math.max(10, Math.min(this.area.width, this.area.height) / 22));
    const cell = thumbs.cell;
    for (let i = 0; i < thumbs.meta.count; i++) {
      if (this.hidden.has(labels[i])) continue;
      const [sx, sy] = this.toScreen(p[2 * i], p[2 * i + 1]);
      if (!this.inArea(sx, sy)) continue;
      const ax = (i % thumbs.columns) * cell, ay = Math.floor(i / thumbs.columns) * cell;
      ctx.drawImage(thumbs.atlas, ax, ay, cell, cell, sx - size / 2, sy - size / 2, size, size);
    }
  }

  drawOverlays(ctx) {
    const data = this.data;
    if (data.ellipse) {
      // [cx, cy, rx, ry, angle]: the posterior's 2σ contour on the plane (equal scales: true shape)
      const [cx, cy, rx, ry, angle] = data.ellipse, [sx, sy] = this.toScreen(cx, cy), ppu = this.view.ppu;
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.beginPath(); // screen y points down: the angle turns the other way
      ctx.ellipse(sx, sy, Math.max(rx * ppu, 1), Math.max(ry * ppu, 1), -(angle || 0), 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillStyle = "#111";
      ctx.font = "bold 12px sans-serif";
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      const ex = rx * ppu * Math.cos(angle || 0), ey = rx * ppu * Math.sin(angle || 0);
      ctx.fillText("2σ", sx + Math.abs(ex) + 4, sy - Math.abs(ey) - 4);
    }
    if (data.clicked_digit != null && this.model.points.length > 2 * data.clicked_digit) {
      const p = this.model.points, [sx, sy] = this.toScreen(p[2 * data.clicked_digit], p[2 * data.clicked_digit + 1]);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(sx, sy, 6, 0, 2 * Math.PI); ctx.stroke();
    }
    const clicked = this.pending && this.pending.x !== undefined ? [this.pending.x, this.pending.y] : data.clicked;
    if (clicked) this.cross(ctx, ...this.toScreen(clicked[0], clicked[1]));
    if (data.star) this.star(ctx, ...this.toScreen(data.star[0], data.star[1]));
    const path = this.path ? this.path.plane : data.path_plane;
    if (path && path.length) {
      ctx.strokeStyle = "#111";
      ctx.fillStyle = "#111";
      ctx.lineWidth = 2;
      ctx.beginPath();
      path.forEach(([x, y], i) => {
        const [sx, sy] = this.toScreen(x, y);
        if (i === 0) ctx.moveTo(sx, sy); else ctx.lineTo(sx, sy);
      });
      ctx.stroke();
      path.forEach(([x, y]) => {
        const [sx, sy] = this.toScreen(x, y);
        ctx.beginPath(); ctx.arc(sx, sy, 2.5, 0, 2 * Math.PI); ctx.fill();
      });
      for (const [end, name] of [[path[0], "A"], [path[path.length - 1], "B"]]) {
        const [sx, sy] = this.toScreen(end[0], end[1]);
        ctx.fillStyle = "#fff";
        ctx.beginPath(); ctx.arc(sx, sy, 8, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
        ctx.fillStyle = "#111";
        ctx.font = "bold 10px sans-serif";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(name, sx, sy);
      }
      const walk = this.path ? this.path.walk : data.path_walk;
      if (walk != null && path[walk]) {
        const [sx, sy] = this.toScreen(path[walk][0], path[walk][1]);
        ctx.strokeStyle = "#ff4b4b";
        ctx.lineWidth = 3;
        ctx.beginPath(); ctx.arc(sx, sy, 7, 0, 2 * Math.PI); ctx.stroke();
      }
    }
  }

  cross(ctx, sx, sy) {
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    ctx.moveTo(sx - 6, sy - 6); ctx.lineTo(sx + 6, sy + 6);
    ctx.moveTo(sx + 6, sy - 6); ctx.lineTo(sx - 6, sy + 6);
    ctx.stroke();
  }

  star(ctx, sx, sy) {
    ctx.beginPath();
    for (let i = 0; i < 10; i++) {
      const r = i % 2 ? 4.5 : 11, angle = -Math.PI / 2 + (i * Math.PI) / 5;
      ctx.lineTo(sx + r * Math.cos(angle), sy + r * Math.sin(angle));
    }
    ctx.closePath();
    ctx.fillStyle = "gold";
    ctx.fill();
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }

  drawHover(ctx) {
    const pointer = this.pointer, model = this.model;
    if (!pointer || !this.inArea(pointer.sx, pointer.sy) || (this.press && this.press.moved && !this.press.handle)) return;
    const digit = this.nearestDigit(pointer.sx, pointer.sy, DIGIT_PICK_PX);
    if (digit >= 0) {
      const p = model.points, [sx, sy] = this.toScreen(p[2 * digit], p[2 * digit + 1]);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(sx, sy, 5, 0, 2 * Math.PI); ctx.stroke();
    }
    this.hovered = digit;
    if (!model.meta.decodable || this.path) return;
    const size = model.meta.image_size, box = 56;
    if (this.hoverPointer !== pointer) { // a new position: decode it (a redraw reuses the last decode)
      this.hoverPointer = pointer;
      const [x, y] = this.toPlane(pointer.sx, pointer.sy);
      const label = this.data.label || 0;
      const probs = decodeLatent(model, latentFromPlane(model, x, y), label);
      this.paintDigit(this.small, probs, size);
      this.paintDigit(this.big, probs, size);
      this.readout.textContent = `(${x.toFixed(3)}, ${y.toFixed(3)})` + (digit >= 0 ? ` · test digit #${digit}` : "");
      this.lastShown = true;
      this.lastDecoded = { x, y, label, probs };
      const record = [pointer.at, performance.now(), null];
      this.paints.push(record);
      requestAnimationFrame(() => afterPaint(() => { record[2] = performance.now(); }));
      if (this.paints.length > 2000) this.paints.splice(0, 1000);
    }
    // next to the cursor, flipped to stay inside the plot
    let bx = pointer.sx + 14, by = pointer.sy + 14;
    if (bx + box > this.area.left + this.area.width) bx = pointer.sx - 14 - box;
    if (by + box > this.area.top + this.area.height) by = pointer.sy - 14 - box;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.small, bx, by, box, box);
    ctx.strokeStyle = "#888";
    ctx.lineWidth = 1;
    ctx.strokeRect(bx - 0.5, by - 0.5, box + 1, box + 1);
  }

  destroy() {
    this.resizer.disconnect();
    this.root.remove();
    if (hooks.views[this.key] === this) delete hooks.views[this.key];
  }
}

export default function (component) {
  const { parentElement, setTriggerValue } = component;
  const data = typeof component.data === "string" ? JSON.parse(component.data) : component.data;
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) {
    mountPayload(data);
    return undefined;
  }
  if (!data || typeof data !== "object") return undefined;
  let view = VIEWS.get(parentElement);
  if (!view) {
    view = new PlaneView(parentElement);
    VIEWS.set(parentElement, view);
  }
  view.update(data, setTriggerValue);
  return () => {
    view.destroy();
    VIEWS.delete(parentElement);
  };
}
