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
//
// Everyone's ways in (README, Accessibility): the mouse (hover, click, wheel, drag); the keyboard
// (the canvas is a Tab stop: a probe moved by the arrows decodes like a hover, Enter chooses it, an
// aria-live region describes it); touch (one finger scrolls the page, a tap chooses, a hold then a
// drag probes, two fingers or Pan move the map); and a non-colour cue (glyphs when zoomed in).

const MODELS = new Map(); // model id -> parsed model
const THUMBS = new Map(); // model id -> thumbnail atlas
const VIEWS = new Map(); // parent element -> PlaneView
const SAVED = new Map(); // view key -> {cx, cy, ppu, hidden}: zoom, pan and legend survive reruns
// Class colours come from Python with every view (explorer/figures/plots.py DIGIT_COLOURS): one home.
const UNLABELLED = "#555555";
const MARGIN = { left: 52, right: 10, top: 10, bottom: 40 };
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, more is a pan
const DIGIT_PICK_PX = 5; // a click this close to a digit's dot picks the digit
const HANDLE_PICK_PX = 9;
const KEY_STEP_PX = 12; // an arrow key moves the probe about this far on screen (a round number of units)
const BIG_STEP = 5; // Shift + arrow moves this many steps
const LONG_PRESS_MS = 350; // a finger held this long, then dragged, probes instead of scrolling
const NEIGHBOURS = 10; // the description names the labels of this many nearest digits
const GLYPH_MAX = 400; // at most this many digits on screen: draw each as its digit's glyph too

// For tests and benchmarks: the live views by key, parsed models, payload sizes, errors caught.
const hooks = (window.__latentPlane = window.__latentPlane || { views: {}, errors: [], payloadBytes: {} });
hooks.models = MODELS;
// Decode plane point (x, y) of a loaded model as the hover does: tests compare it with vae_core.decode.
hooks.decode = (id, x, y, label) => {
  const model = MODELS.get(id);
  return Array.from(decodeLatent(model, latentFromPlane(model, x, y), label || 0));
};
hooks.sent = []; // every trigger value sent to Python, [name, value]: tests check what a gesture chose

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

function buildAtlas(thumbs, labels, colours) {
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
    const colour = hexToRgb(labels && labels[d] >= 0 ? colours[labels[d]] : UNLABELLED);
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

// A number as a screen reader should hear it: a real minus sign, not a hyphen, and no "minus 0".
function spoken(value, decimals = 2) {
  const text = value.toFixed(decimals);
  return Number(text) === 0 ? (0).toFixed(decimals) : text.replace(/^-/, "\u2212");
}

let helpIds = 0; // each view's help line needs its own id for aria-describedby

// Phones and tablets: no hover, a coarse pointer. Their instructions talk of taps, not the mouse.
function touchFirst() {
  return window.matchMedia && window.matchMedia("(hover: none) and (pointer: coarse)").matches;
}

const HELP = {
  mouse: "Mouse: hover decodes, click chooses; wheel zooms, drag pans; Fit refits.",
  touch: "Touch: tap to decode and choose; hold, then drag to probe; two fingers (or Pan) move and zoom the map; one finger scrolls the page.",
  keys: "Keys (after Tab to the map): arrows move a probe (Shift: 5 steps), Enter or Space chooses, N jumps to the nearest digit, + and \u2212 zoom, 0 refits.",
  path: " On a path: A, B or W picks what the arrows move (end A, end B, the walk point); Escape goes back to the probe; Enter keeps it.",
};

class PlaneView {
  constructor(parentElement) {
    this.parent = parentElement;
    this.root = document.createElement("div");
    this.root.className = "vlp-root";
    // The canvas is one keyboard stop (role application: its keys are its own); the live region
    // says what the probe shows; the tools give zoom and refit to a single tap (WCAG 2.5.7).
    this.root.innerHTML = `
      <div class="vlp-stage">
        <canvas class="vlp-canvas" tabindex="0" role="application" aria-roledescription="latent plane"
          aria-label="Latent plane: arrow keys move a probe that decodes the point"></canvas>
        <div class="vlp-tools" role="toolbar" aria-label="Map view">
          <button type="button" data-act="in" aria-label="Zoom in">+</button>
          <button type="button" data-act="out" aria-label="Zoom out">\u2212</button>
          <button type="button" data-act="fit" aria-label="Fit every point in view">Fit</button>
          <button type="button" data-act="pan" aria-pressed="false" aria-label="Pan with one finger">Pan</button>
        </div>
        <canvas class="vlp-strip" hidden role="img" aria-label="The path's decoded digits"></canvas>
      </div>
      <div class="vlp-side">
        <canvas class="vlp-big" width="28" height="28" role="img" aria-label="No digit decoded yet"></canvas>
        <div class="vlp-readout"></div>
        <div class="vlp-live" aria-live="polite" aria-atomic="true"></div>
        <div class="vlp-legend" role="group" aria-label="Digit classes shown on the map"></div>
        <label class="vlp-only">Show <select aria-label="Show only one class"></select></label>
        <div class="vlp-help"></div>
        <div class="vlp-note"></div>
      </div>`;
    parentElement.appendChild(this.root);
    this.canvas = this.root.querySelector(".vlp-canvas");
    this.strip = this.root.querySelector(".vlp-strip");
    this.big = this.root.querySelector(".vlp-big");
    this.readout = this.root.querySelector(".vlp-readout");
    this.live = this.root.querySelector(".vlp-live");
    this.legend = this.root.querySelector(".vlp-legend");
    this.only = this.root.querySelector(".vlp-only select");
    this.help = this.root.querySelector(".vlp-help");
    this.note = this.root.querySelector(".vlp-note");
    this.probe = null; // the keyboard's point on the plane, {x, y}
    this.handle = null; // on a path: what the arrows move ("start", "end", "walk") or null: the probe
    this.panMode = false; // the Pan toggle: one finger (or the mouse) drags the map
    this.touches = new Map(); // touch pointers down now: pointerId -> {sx, sy}
    this.touchDevice = touchFirst();
    this.help.id = `vlp-help-${++helpIds}`;
    this.canvas.setAttribute("aria-describedby", this.help.id);
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
    this.colours = data.colours;
    hooks.views[this.key] = this;
    this.showHelp();
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
    this.showHelp();
    this.note.textContent = data.note || "";
    if (data.path && model.meta.decodable) this.setPath(data.path);
    if (data.path) this.strip.hidden = false;
    if (!this.lastShown) this.readout.textContent = data.prompt || "";
    if (data.server_image) this.showServerImage(data.server_image);
    else if (data.clicked && model.meta.decodable && !data.path) this.showDecodedAt(data.clicked[0], data.clicked[1]);
    this.baseDirty = true;
    this.queue();
  }

  showHelp() {
    const data = this.data || {};
    const pointer = (this.touchDevice ? HELP.touch : HELP.mouse) + " ";
    this.help.textContent = pointer + HELP.keys + (data.path ? HELP.path : "");
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
    this.classes = [...present].sort((a, b) => a - b);
    this.classes.forEach((digit) => {
      // a toggle button: its name says the class, aria-pressed whether it is shown
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.digit = String(digit);
      button.innerHTML = `<span class="vlp-swatch" aria-hidden="true" style="background:${this.colours[digit]}"></span>${digit}`;
      button.title = `show or hide the ${digit}s`;
      button.addEventListener("click", () => {
        if (this.hidden.has(digit)) this.hidden.delete(digit);
        else this.hidden.add(digit);
        this.classesChanged();
      });
      this.legend.appendChild(button);
    });
    // "only this class" in one action: a choice of all classes or one
    this.only.textContent = "";
    for (const value of ["all", ...this.classes]) {
      const option = document.createElement("option");
      option.value = String(value);
      option.textContent = value === "all" ? "all classes" : `only the ${value}s`;
      this.only.appendChild(option);
    }
    this.only.onchange = () => {
      const value = this.only.value;
      this.hidden = new Set(value === "all" ? [] : this.classes.filter((d) => String(d) !== value));
      this.classesChanged();
    };
    this.only.parentElement.hidden = this.classes.length < 2;
    this.showClasses();
  }

  showClasses() {
    for (const button of this.legend.querySelectorAll("button")) {
      const shown = !this.hidden.has(Number(button.dataset.digit));
      button.classList.toggle("vlp-off", !shown);
      button.setAttribute("aria-pressed", String(shown));
    }
    const shown = this.classes.filter((d) => !this.hidden.has(d));
    this.only.value = shown.length === 1 && this.classes.length > 1 ? String(shown[0])
      : shown.length === this.classes.length ? "all" : "";
  }

  classesChanged() {
    this.showClasses();
    this.save();
    this.baseDirty = true;
    this.queue();
  }

  // ---- geometry
  resize() {
    const width = Math.max(200, Math.round(this.canvas.getBoundingClientRect().width || this.root.clientWidth - 192));
    // No taller than a square plot: on a phone's narrow canvas a 520 px height left the equal-scale
    // view mostly empty above and below the points (y from -10 to 12 for data within ±4).
    const square = width - MARGIN.left - MARGIN.right + MARGIN.top + MARGIN.bottom;
    const height = Math.min(this.data ? this.data.height : 400, Math.max(240, square));
    this.canvas.style.height = `${height}px`;
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
      if (this.touches.has(e.pointerId)) this.touches.set(e.pointerId, { sx, sy });
      const press = this.press;
      if (press && press.pinch) {
        this.pinch();
        return;
      }
      if (press) {
        const dx = sx - press.sx, dy = sy - press.sy;
        if (!press.moved && Math.hypot(dx, dy) < CLICK_SLOP_PX) return;
        press.moved = true;
        if (press.handle) this.dragHandle(press.handle, sx, sy);
        else if (!press.touch || this.panMode) {
          // the mouse drags the map; a finger only with Pan on (else it probes, or the page scrolls)
          press.panning = true;
          this.view = { ...this.view, cx: press.view.cx - dx / this.view.ppu, cy: press.view.cy + dy / this.view.ppu };
          c.classList.add("vlp-panning");
          this.baseDirty = true;
        }
      }
      this.pointer = { sx, sy, at: e.timeStamp, touch: e.pointerType === "touch" };
      // Hovering draws at once, in the event: Chrome delivers pointermove at most once per frame,
      // and drawing now puts the digit on the very next frame instead of one frame later.
      if (press) this.queue();
      else this.drawSafely();
    });
    c.addEventListener("pointerdown", (e) => {
      if (!this.model || !this.view || e.button !== 0) return;
      const [sx, sy] = local(e), touch = e.pointerType === "touch";
      if (touch !== this.touchDevice) {
        this.touchDevice = touch; // instructions follow the pointer actually used
        this.showHelp();
      }
      if (touch) {
        this.touches.set(e.pointerId, { sx, sy });
        if (this.touches.size >= 2) { // a second finger: the two move and zoom the map
          this.press = { pinch: this.pinchStart(), view: { ...this.view }, moved: true };
          return;
        }
      }
      c.setPointerCapture(e.pointerId);
      this.press = { sx, sy, view: { ...this.view }, moved: false, handle: this.handleAt(sx, sy), touch };
    });
    const release = (e, cancelled) => {
      this.touches.delete(e.pointerId);
      const press = this.press;
      if (press && press.pinch) {
        if (this.touches.size === 0) this.press = null;
        this.save();
        return;
      }
      this.press = null;
      c.classList.remove("vlp-panning");
      if (press && press.touch) this.pointer = null; // a finger lifted leaves no hover behind
      if (!press || cancelled) { // the browser took the gesture (a scroll): nothing chosen
        this.queue();
        return;
      }
      if (press.moved) {
        this.save();
        if (press.handle) this.sendPath();
        this.queue();
        return;
      }
      const [sx, sy] = local(e);
      // Chosen at once. (A double-click used to refit too, after its first click had chosen: refitting
      // is the Fit button's and the 0 key's now, and a double-click is a click.)
      if (this.inArea(sx, sy)) this.click(sx, sy);
    };
    c.addEventListener("pointerup", (e) => release(e, false));
    c.addEventListener("pointercancel", (e) => release(e, true));
    c.addEventListener("pointerleave", (e) => {
      if (e.pointerType !== "touch") this.pointer = null;
      this.queue();
    });
    c.addEventListener("wheel", (e) => {
      if (!this.view) return;
      e.preventDefault();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), ...local(e));
    }, { passive: false });
    // One finger scrolls the page (touch-action: pan-y) unless it is held still first (then it
    // probes), Pan is on, or a second finger is down: only then is the browser's scroll cancelled.
    c.addEventListener("touchstart", (e) => {
      clearTimeout(this.holdTimer);
      this.holding = false;
      if (e.touches.length !== 1) return;
      const t = e.touches[0];
      this.holdFrom = [t.clientX, t.clientY];
      this.holdTimer = setTimeout(() => { this.holding = true; }, LONG_PRESS_MS);
    }, { passive: true });
    c.addEventListener("touchmove", (e) => {
      if (e.touches.length >= 2 || this.holding || this.panMode) {
        if (e.cancelable) e.preventDefault();
        return;
      }
      const t = e.touches[0];
      if (Math.hypot(t.clientX - this.holdFrom[0], t.clientY - this.holdFrom[1]) > 2 * CLICK_SLOP_PX) clearTimeout(this.holdTimer);
    }, { passive: false });
    const endTouch = () => { clearTimeout(this.holdTimer); this.holding = false; };
    c.addEventListener("touchend", endTouch);
    c.addEventListener("touchcancel", endTouch);
    c.addEventListener("contextmenu", (e) => { if (this.holding) e.preventDefault(); });
    // the keyboard
    c.addEventListener("keydown", (e) => this.onKey(e));
    c.addEventListener("focus", () => {
      // a probe for the keyboard (Tab), not for a click or a tap, which focus the canvas too
      if (!this.probe && this.model && this.view && c.matches(":focus-visible")) this.startProbe();
      this.queue();
    });
    c.addEventListener("blur", () => this.queue());
    this.root.querySelector(".vlp-tools").addEventListener("click", (e) => {
      const act = e.target.closest("button") && e.target.closest("button").dataset.act;
      if (!act || !this.view) return;
      const [sx, sy] = this.probeScreen();
      if (act === "in") this.zoomAt(1.5, sx, sy);
      else if (act === "out") this.zoomAt(1 / 1.5, sx, sy);
      else if (act === "fit") this.refit();
      else if (act === "pan") {
        this.panMode = !this.panMode;
        e.target.setAttribute("aria-pressed", String(this.panMode));
        this.root.classList.toggle("vlp-pan", this.panMode);
      }
    });
  }

  pinchStart() {
    const [a, b] = [...this.touches.values()];
    const mid = [(a.sx + b.sx) / 2, (a.sy + b.sy) / 2];
    return { mid, distance: Math.max(Math.hypot(a.sx - b.sx, a.sy - b.sy), 1), at: this.toPlane(...mid) };
  }

  pinch() {
    // the plane point first under the fingers' midpoint stays under it; their spread zooms
    const start = this.press.pinch, now = this.pinchStart(), a = this.area;
    const ppu = Math.min(Math.max(this.press.view.ppu * (now.distance / start.distance), 1e-3), 1e6);
    this.view = {
      ppu, cx: start.at[0] - (now.mid[0] - a.left - a.width / 2) / ppu,
      cy: start.at[1] + (now.mid[1] - a.top - a.height / 2) / ppu,
    };
    this.baseDirty = true;
    this.queue();
  }

  zoomAt(factor, sx, sy) {
    const [px, py] = this.toPlane(sx, sy);
    const ppu = Math.min(Math.max(this.view.ppu * factor, 1e-3), 1e6);
    // keep the plane point under (sx, sy) where it is
    const cx = px - (sx - this.area.left - this.area.width / 2) / ppu;
    const cy = py + (sy - this.area.top - this.area.height / 2) / ppu;
    this.view = { cx, cy, ppu };
    this.save();
    this.baseDirty = true;
    this.queue();
  }

  refit() {
    this.view = this.fit();
    this.save();
    this.baseDirty = true;
    this.queue();
    this.say("Map refitted: every point in view.");
  }

  click(sx, sy) {
    const [x, y] = this.toPlane(sx, sy);
    const digit = this.data.pick_digits === false ? -1 : this.nearestDigit(sx, sy, DIGIT_PICK_PX);
    this.pending = digit >= 0 ? { digit } : { x, y };
    // what was chosen shows at once, here (a tap leaves no hover behind): the digit's point or this one
    if (this.model.meta.decodable && !this.path) {
      const p = this.model.points;
      if (digit >= 0) this.decodeAt(p[2 * digit], p[2 * digit + 1], digit);
      else this.decodeAt(x, y, -1);
    }
    this.queue();
    if (!this.setTriggerValue || this.data.clicks === false) return;
    this.send("click", digit >= 0 ? { digit } : { x, y });
  }

  send(name, value) {
    hooks.sent.push([name, value]);
    this.setTriggerValue(name, value);
  }

  // ---- the keyboard's probe
  startProbe() {
    const clicked = this.data.clicked;
    const [cx, cy] = clicked || [this.view.cx, this.view.cy];
    this.probe = { x: cx, y: cy };
    this.handle = null;
    this.showProbe();
  }

  probeScreen() {
    if (this.probe) {
      const [sx, sy] = this.toScreen(this.probe.x, this.probe.y);
      if (this.inArea(sx, sy)) return [sx, sy];
    }
    return [this.area.left + this.area.width / 2, this.area.top + this.area.height / 2];
  }

  keyStep() {
    return niceStep(KEY_STEP_PX / this.view.ppu, 1); // a round number of plane units, about 12 px
  }

  onKey(e) {
    if (!this.model || !this.view || e.altKey || e.ctrlKey || e.metaKey) return;
    if (!this.probe) this.startProbe();
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
    const k = e.key, lower = k.length === 1 ? k.toLowerCase() : k;
    if (arrows[k]) this.nudge(...arrows[k], e.shiftKey ? BIG_STEP : 1);
    else if (k === "Enter" || k === " ") this.chooseProbe();
    else if (lower === "n") this.jumpToNearest();
    else if (k === "+" || k === "=" || k === "-" || k === "_" || k === "\u2212") {
      this.zoomAt(k === "+" || k === "=" ? 1.5 : 1 / 1.5, ...this.probeScreen());
      if (!this.handle) this.showProbe(); // the step follows the zoom
    }
    else if (k === "0" || lower === "r") this.refit();
    else if (this.path && this.path.plane && ["a", "b", "w"].includes(lower)) {
      this.handle = { a: "start", b: "end", w: "walk" }[lower];
      this.describeHandle();
    } else if (k === "Escape" && this.handle) {
      this.handle = null;
      this.showProbe();
    } else return; // Tab and everything else keep their usual meaning
    e.preventDefault();
    e.stopPropagation();
  }

  nudge(dx, dy, times) {
    const step = this.keyStep(), path = this.path;
    if (this.handle === "walk") {
      path.walk = Math.min(path.steps - 1, Math.max(0, path.walk + (dx || dy) * times));
      this.showProbs(path.images[path.walk], `Step ${path.walk + 1} of ${path.steps}`);
      this.drawStrip();
      this.describeHandle();
      this.queue();
      return;
    }
    if (this.handle) {
      const [x, y] = planeFromLatent(this.model, this.handle === "start" ? path.start : path.end);
      this.moveEnd(this.handle, x + dx * step * times, y + dy * step * times);
      this.follow(...planeFromLatent(this.model, this.handle === "start" ? path.start : path.end));
      this.describeHandle();
      this.queue();
      return;
    }
    // on the step's grid, so the coordinates read as round numbers
    this.probe = {
      x: (Math.round(this.probe.x / step) + dx * times) * step,
      y: (Math.round(this.probe.y / step) + dy * times) * step,
    };
    this.follow(this.probe.x, this.probe.y);
    this.showProbe();
  }

  // pan just enough to keep plane point (x, y) in view
  follow(x, y) {
    const [sx, sy] = this.toScreen(x, y), a = this.area, pad = 16;
    const dx = Math.min(0, sx - a.left - pad) + Math.max(0, sx - (a.left + a.width - pad));
    const dy = Math.min(0, sy - a.top - pad) + Math.max(0, sy - (a.top + a.height - pad));
    if (!dx && !dy) return;
    this.view = { ...this.view, cx: this.view.cx + dx / this.view.ppu, cy: this.view.cy - dy / this.view.ppu };
    this.save();
    this.baseDirty = true;
  }

  chooseProbe() {
    if (this.path) {
      this.sendPath();
      this.say("Path kept.");
      return;
    }
    const [sx, sy] = this.toScreen(this.probe.x, this.probe.y);
    this.click(sx, sy);
  }

  jumpToNearest() {
    const [i] = this.nearestDigits(this.probe.x, this.probe.y, 1);
    if (i === undefined) return;
    const p = this.model.points;
    this.probe = { x: p[2 * i], y: p[2 * i + 1] };
    this.follow(this.probe.x, this.probe.y);
    this.showProbe(i);
  }

  // Decode the probe like a hover, show it, and say what it shows.
  showProbe(digit = -1) {
    if (this.path) {
      this.say(`Probe at ${this.pointName(this.probe.x, this.probe.y)}. ${HELP.path.trim()}`);
    } else this.decodeAt(this.probe.x, this.probe.y, digit);
    const step = this.keyStep();
    if (!this.path) this.readout.textContent += ` · step ${+step.toPrecision(2)} (Shift: ${+(step * BIG_STEP).toPrecision(2)})`;
    this.queue();
  }

  decodeAt(x, y, digit) {
    const model = this.model, label = this.data.label || 0;
    const labelled = digit >= 0 && model.labels[digit] >= 0 ? ` (a ${model.labels[digit]})` : "";
    const what = digit >= 0 ? ` · digit #${digit}${labelled}` : "";
    if (model.meta.decodable) {
      const probs = decodeLatent(model, latentFromPlane(model, x, y), label);
      this.paintDigit(this.small, probs, model.meta.image_size);
      this.showProbs(probs, `(${x.toFixed(3)}, ${y.toFixed(3)})${what}`, x, y);
      this.lastDecoded = { x, y, label, probs };
    } else this.readout.textContent = `(${x.toFixed(3)}, ${y.toFixed(3)})${what}`;
    this.say(`${this.pointName(x, y)}${what ? `, digit #${digit}${labelled}` : ""}: ${this.neighbourhood(x, y)}`);
  }

  pointName(x, y) {
    const exact = this.model.meta.plane_dims === this.model.meta.latent_dim; // else a PCA plane of z
    return `${exact ? "z" : "plane point"} = (${spoken(x)}, ${spoken(y)})`;
  }

  // The labels of the digits nearest (x, y), in words: "mostly 7s (8 of the 10 nearest digits)".
  neighbourhood(x, y) {
    const near = this.nearestDigits(x, y, NEIGHBOURS), labels = this.model.labels;
    if (!near.length) return "no digits shown";
    const counts = new Map();
    for (const i of near) if (labels[i] >= 0) counts.set(labels[i], (counts.get(labels[i]) || 0) + 1);
    if (!counts.size) return `${near.length} unlabelled digits nearby`;
    const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    const [top, count] = ranked[0], of = `of the ${near.length} nearest digits`;
    if (count * 2 > near.length) return `nearest digits mostly ${top}s (${count} ${of})`;
    return `nearest digits a mix: ${ranked.slice(0, 3).map(([d, n]) => `${n} ${d}s`).join(", ")} (${of})`;
  }

  // indices of the `count` shown digits nearest plane point (x, y), nearest first
  nearestDigits(x, y, count) {
    const p = this.model.points, labels = this.model.labels, best = [];
    for (let i = 0; i < labels.length; i++) {
      if (this.hidden.has(labels[i])) continue;
      const d = (p[2 * i] - x) ** 2 + (p[2 * i + 1] - y) ** 2;
      if (best.length === count && d >= best[count - 1][0]) continue;
      let at = best.length;
      while (at > 0 && best[at - 1][0] > d) at--;
      best.splice(at, 0, [d, i]);
      if (best.length > count) best.pop();
    }
    return best.map(([, i]) => i);
  }

  describeHandle() {
    const path = this.path;
    if (this.handle === "walk") this.say(`Walk point: step ${path.walk + 1} of ${path.steps}.`);
    else {
      const [x, y] = planeFromLatent(this.model, this.handle === "start" ? path.start : path.end);
      this.say(`End ${this.handle === "start" ? "A" : "B"} at ${this.pointName(x, y)}: ${this.neighbourhood(x, y)}.`);
    }
  }

  say(text) {
    this.live.textContent = text;
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
    this.moveEnd(handle, x, y);
  }

  // move a path's end to plane point (x, y), keeping its other latent directions
  moveEnd(handle, x, y) {
    const z = handle === "start" ? this.path.start : this.path.end;
    const [ox, oy] = planeFromLatent(this.model, z);
    const L = this.model.meta.latent_dim, c = this.model.components, k = this.model.meta.plane_dims;
    for (let i = 0; i < L; i++) z[i] += (x - ox) * c[i] + (k > 1 ? (y - oy) * c[L + i] : 0);
    this.decodePath();
  }

  sendPath() {
    if (!this.setTriggerValue || !this.path) return;
    this.send("path", {
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
    this.strip.setAttribute("aria-label", `The path's ${path.steps} decoded digits, step ${path.walk + 1} marked`);
    ctx.strokeStyle = "#ff4b4b";
    ctx.lineWidth = 1;
    ctx.strokeRect(path.walk * size + 0.5, 0.5, size - 1, size - 1);
  }

  // ---- decoded digits
  showProbs(probs, text, x, y) {
    const size = this.model.meta.image_size;
    this.paintDigit(this.big, probs, size);
    this.readout.textContent = text;
    const where = x === undefined ? text : this.pointName(x, y);
    this.big.setAttribute("aria-label", `The digit the decoder draws at ${where}`);
    this.lastShown = true;
  }

  showDecodedAt(x, y) {
    const probs = decodeLatent(this.model, latentFromPlane(this.model, x, y), this.data.label || 0);
    this.showProbs(probs, `(${x.toFixed(3)}, ${y.toFixed(3)})`, x, y);
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
    this.drawProbe(ctx);
  }

  // The keyboard's probe, while the plane has focus: a ring, and its decode beside it like a hover's.
  drawProbe(ctx) {
    if (!this.probe || !this.canvas.matches(":focus") || this.pointer) return;
    let x = this.probe.x, y = this.probe.y;
    if (this.handle && this.path && this.path.plane) {
      [x, y] = this.handle === "walk" ? this.path.plane[this.path.walk]
        : planeFromLatent(this.model, this.handle === "start" ? this.path.start : this.path.end);
    }
    const [sx, sy] = this.toScreen(x, y);
    if (!this.inArea(sx, sy)) return;
    ctx.lineWidth = 4;
    ctx.strokeStyle = "#fff";
    ctx.beginPath(); ctx.arc(sx, sy, 9, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#111";
    ctx.beginPath(); ctx.arc(sx, sy, 9, 0, 2 * Math.PI);
    ctx.moveTo(sx - 14, sy); ctx.lineTo(sx - 4, sy); ctx.moveTo(sx + 4, sy); ctx.lineTo(sx + 14, sy);
    ctx.moveTo(sx, sy - 14); ctx.lineTo(sx, sy - 4); ctx.moveTo(sx, sy + 4); ctx.lineTo(sx, sy + 14);
    ctx.stroke();
    if (!this.handle && this.lastDecoded && this.model.meta.decodable && !this.path) this.drawPreview(ctx, sx, sy);
  }

  // the last decoded digit in a box beside (sx, sy), flipped to stay inside the plot
  drawPreview(ctx, sx, sy, above) {
    const box = 56, a = this.area;
    let bx = sx + 14, by = above ? sy - 80 : sy + 14;
    if (bx + box > a.left + a.width) bx = sx - 14 - box;
    if (by + box > a.top + a.height) by = sy - 14 - box;
    if (by < a.top) by = sy + 14;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.small, bx, by, box, box);
    ctx.strokeStyle = "#888";
    ctx.lineWidth = 1;
    ctx.strokeRect(bx - 0.5, by - 0.5, box + 1, box + 1);
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
    if (thumbs && !thumbs.atlas) buildAtlas(thumbs, this.model.labels, this.colours);
    if (thumbs) this.drawThumbs(ctx, thumbs);
    else this.drawDots(ctx);
    ctx.restore();
  }

  drawDots(ctx) {
    const p = this.model.points, labels = this.model.labels, n = labels.length;
    const size = n > 3000 ? 3 : 4, half = size / 2, v = this.view;
    const ox = this.area.left + this.area.width / 2, oy = this.area.top + this.area.height / 2;
    // Zoomed in far enough that few digits are in view, each is drawn as its label's glyph: the
    // class then reads without telling colours apart (WCAG 1.4.1).
    const a = this.area, onScreen = [];
    for (let i = 0; i < n && onScreen.length <= GLYPH_MAX; i++) {
      if (this.hidden.has(labels[i]) || labels[i] < 0) continue;
      const sx = ox + (p[2 * i] - v.cx) * v.ppu, sy = oy - (p[2 * i + 1] - v.cy) * v.ppu;
      if (sx >= a.left && sx <= a.left + a.width && sy >= a.top && sy <= a.top + a.height) onScreen.push(i);
    }
    const glyphs = onScreen.length > 0 && onScreen.length <= GLYPH_MAX;
    this.glyphs = glyphs ? onScreen.length : 0; // for tests: how many digits are drawn as glyphs
    ctx.globalAlpha = this.data.dot_opacity || 0.75;
    for (let digit = -1; digit < 10; digit++) {
      if (this.hidden.has(digit) || (glyphs && digit >= 0)) continue;
      ctx.fillStyle = digit < 0 ? UNLABELLED : this.colours[digit];
      for (let i = 0; i < n; i++) {
        if (labels[i] !== digit) continue;
        ctx.fillRect(ox + (p[2 * i] - v.cx) * v.ppu - half, oy - (p[2 * i + 1] - v.cy) * v.ppu - half, size, size);
      }
    }
    ctx.globalAlpha = 1;
    if (!glyphs) return;
    ctx.font = "bold 13px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(255,255,255,0.85)";
    for (const i of onScreen) {
      const sx = ox + (p[2 * i] - v.cx) * v.ppu, sy = oy - (p[2 * i + 1] - v.cy) * v.ppu;
      ctx.strokeText(String(labels[i]), sx, sy);
      ctx.fillStyle = this.colours[labels[i]];
      ctx.fillText(String(labels[i]), sx, sy);
    }
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
    if (!pointer || !this.inArea(pointer.sx, pointer.sy) || (this.press && this.press.panning) || (this.press && this.press.pinch)) return;
    const digit = this.nearestDigit(pointer.sx, pointer.sy, DIGIT_PICK_PX);
    if (digit >= 0) {
      const p = model.points, [sx, sy] = this.toScreen(p[2 * digit], p[2 * digit + 1]);
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(sx, sy, 5, 0, 2 * Math.PI); ctx.stroke();
    }
    this.hovered = digit;
    if (!model.meta.decodable || this.path) return;
    if (this.hoverPointer !== pointer) { // a new position: decode it (a redraw reuses the last decode)
      this.hoverPointer = pointer;
      const [x, y] = this.toPlane(pointer.sx, pointer.sy);
      const label = this.data.label || 0;
      const probs = decodeLatent(model, latentFromPlane(model, x, y), label);
      this.paintDigit(this.small, probs, model.meta.image_size);
      this.paintDigit(this.big, probs, model.meta.image_size);
      // the label in words too: the class is never told by colour alone
      const kind = digit >= 0 && model.labels[digit] >= 0 ? ` (a ${model.labels[digit]})` : "";
      this.readout.textContent = `(${x.toFixed(3)}, ${y.toFixed(3)})` + (digit >= 0 ? ` · test digit #${digit}${kind}` : "");
      this.big.setAttribute("aria-label", `The digit the decoder draws at ${this.pointName(x, y)}`);
      this.lastShown = true;
      this.lastDecoded = { x, y, label, probs };
      const record = [pointer.at, performance.now(), null];
      this.paints.push(record);
      requestAnimationFrame(() => afterPaint(() => { record[2] = performance.now(); }));
      if (this.paints.length > 2000) this.paints.splice(0, 1000);
    }
    // next to the cursor; above a finger, which would hide it
    this.drawPreview(ctx, pointer.sx, pointer.sy, pointer.touch);
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
