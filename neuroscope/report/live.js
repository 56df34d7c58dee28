// The live section: the model's forward pass in plain JavaScript, and the text box that drives it.
// neuroscope/live.py writes the weights (float16, base64) and this script into the page; see docs/live.md.
// It reads window.neuroscopeDraw (the page's colours and data) and publishes window.neuroscopeLive:
//   neuroscopeLive.run(text, edits) -> {ids, unknown, states: {"rnn.l0.h": Float32Array [n*H], ...},
//                                       top: Int32Array [n*5], topP: Float32Array [n*5], loss: Float32Array [n-1]}
//   edits: [{name: "rnn.l1.c", units: [5], op: "zero" | "clamp" | "scale", value: 0}], as neuroscope's
//   Intervention with positions=None: applied at every step, c before h = o * tanh(c).
(function () {
  "use strict";
  var NS = window.neuroscopeDraw, D = NS && NS.data, M = D && D.live;
  if (!M) return;
  var K = 5;                                          // guesses kept per character, as the static sections

  // -- weights: float16 bits -> float32, once
  function halfTable() {
    var t = new Float32Array(65536);
    for (var b = 0; b < 65536; b++) {
      var s = b & 0x8000 ? -1 : 1, e = (b >> 10) & 31, m = b & 1023;
      t[b] = e === 0 ? s * m * Math.pow(2, -24) : e === 31 ? (m ? NaN : s * Infinity)
        : s * (1 + m / 1024) * Math.pow(2, e - 15);
    }
    return t;
  }
  function decodeWeights() {
    var bin = atob(M.weights), n = bin.length >> 1, out = new Float32Array(n), half = halfTable();
    for (var i = 0; i < n; i++) out[i] = half[bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)];
    var w = {};
    M.tensors.forEach(function (t) {
      var size = t.shape.reduce(function (a, b) { return a * b; }, 1);
      w[t.name] = out.subarray(t.offset, t.offset + size);
    });
    return w;
  }
  var W = decodeWeights(), L = M.layers, H = M.hidden, E = M.embedding, V = M.vocab_size;
  var G = {lstm: 4, gru: 3, rnn: 1}[M.cell], LSTM = M.cell === "lstm";
  var PER = LSTM ? 2 : 1, SS = L * H * PER;          // floats of state per layer slot (h, c), per character
  var layers = [];
  for (var l = 0; l < L; l++) {
    var bih = W["rnn.bias_ih_l" + l], bhh = W["rnn.bias_hh_l" + l], bias = new Float64Array(G * H);
    // LSTM and RNN add both biases to the input side; a GRU keeps b_hh inside r * (W_hn h + b_hn).
    for (var j = 0; j < G * H; j++) bias[j] = bih[j] + (M.cell === "gru" ? 0 : bhh[j]);
    layers.push({wih: W["rnn.weight_ih_l" + l], whh: W["rnn.weight_hh_l" + l], bias: bias, bhh: bhh});
  }
  var emb = W["encoder.weight"], dec = W["decoder.weight"], decB = W["decoder.bias"];
  var inputRows = [];                                // layer 0's input side per character id, made on first use

  function addMatVec(w, rows, cols, x, out) {         // out[r] += w[r, :] . x (rows of w are contiguous)
    var c4 = cols - (cols & 3);
    for (var r = 0, o = 0; r < rows; r++, o += cols) {
      // Four partial sums: independent additions that the CPU overlaps (a quarter faster than one sum).
      var s0 = 0, s1 = 0, s2 = 0, s3 = 0, j = 0;
      for (; j < c4; j += 4) {
        s0 += w[o + j] * x[j]; s1 += w[o + j + 1] * x[j + 1]; s2 += w[o + j + 2] * x[j + 2]; s3 += w[o + j + 3] * x[j + 3];
      }
      for (; j < cols; j++) s0 += w[o + j] * x[j];
      out[r] += (s0 + s1) + (s2 + s3);
    }
  }
  function inputRow(id) {
    if (!inputRows[id]) {
      var row = Float64Array.from(layers[0].bias);
      addMatVec(layers[0].wih, G * H, E, emb.subarray(id * E, (id + 1) * E), row);
      inputRows[id] = row;
    }
    return inputRows[id];
  }
  function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }

  // -- interventions, as neuroscope.record.Intervention: per layer and state, in the order given
  function compileEdits(edits) {
    var by = {};
    (edits || []).forEach(function (e) {
      var m = /^(?:rnn\.)?l(\d+)\.(h|c)$/.exec(e.name);
      if (!m) throw new Error("interventions edit rnn.l{layer}.h or .c, not " + e.name);
      (by[m[1] + m[2]] = by[m[1] + m[2]] || []).push(e);
    });
    return by;
  }
  function applyEdits(list, v) {
    if (!list) return;
    list.forEach(function (e) {
      e.units.forEach(function (u) { v[u] = e.op === "zero" ? 0 : e.op === "clamp" ? e.value : v[u] * e.value; });
    });
  }

  // One step of every layer: prev, out: one character's state slot [L x (h, c)], out written in place.
  var PRE = new Float64Array(G * H), REC = new Float64Array(G * H), ZERO = new Float32Array(SS), steps = 0;
  function step(prev, out, id, edits) {
    var x = null;
    steps++;
    for (var l = 0; l < L; l++) {
      var ly = layers[l], base = l * H * PER;
      var hp = prev.subarray(base, base + H), h = out.subarray(base, base + H);
      if (l === 0) PRE.set(inputRow(id)); else { PRE.set(ly.bias); addMatVec(ly.wih, G * H, H, x, PRE); }
      if (M.cell === "gru") {
        for (var j = 0; j < G * H; j++) REC[j] = ly.bhh[j];
        addMatVec(ly.whh, G * H, H, hp, REC);
        for (j = 0; j < H; j++) {
          var r = sigmoid(PRE[j] + REC[j]), z = sigmoid(PRE[H + j] + REC[H + j]);
          var n = Math.tanh(PRE[2 * H + j] + r * REC[2 * H + j]);
          h[j] = n + z * (hp[j] - n);
        }
      } else {
        addMatVec(ly.whh, G * H, H, hp, PRE);
        if (LSTM) {
          var cp = prev.subarray(base + H, base + 2 * H), c = out.subarray(base + H, base + 2 * H);
          for (j = 0; j < H; j++)                     // PyTorch's gate order: i, f, g, o
            c[j] = sigmoid(PRE[H + j]) * cp[j] + sigmoid(PRE[j]) * Math.tanh(PRE[2 * H + j]);
          applyEdits(edits[l + "c"], c);
          for (j = 0; j < H; j++) h[j] = sigmoid(PRE[3 * H + j]) * Math.tanh(c[j]);
        } else {
          for (j = 0; j < H; j++) h[j] = M.relu ? Math.max(0, PRE[j]) : Math.tanh(PRE[j]);
        }
      }
      applyEdits(edits[l + "h"], h);
      x = h;
    }
  }
  function probsAfter(slot, out) {                    // softmax(decoder(top layer's h)) into out [V]
    var top = slot.subarray((L - 1) * H * PER, (L - 1) * H * PER + H), max = -Infinity, sum = 0, v;
    for (v = 0; v < V; v++) out[v] = decB[v];
    addMatVec(dec, V, H, top, out);
    for (v = 0; v < V; v++) max = Math.max(max, out[v]);
    for (v = 0; v < V; v++) sum += (out[v] = Math.exp(out[v] - max));
    for (v = 0; v < V; v++) out[v] /= sum;
    return out;
  }

  // A Run: the text read once under one set of edits, every character's state kept, so that typing
  // at the end is one step per character and an edit inside the text restarts from the state before it.
  function Run(edits) {
    this.edits = compileEdits(edits); this.n = 0; this.cap = 0;
    this.last = new Float64Array(V);                  // probabilities after the last character
    this.grow(256);
  }
  Run.prototype.grow = function (cap) {             // twice the room, the characters so far copied over
    var S = new Float32Array(cap * SS), top = new Int32Array(cap * K), topP = new Float32Array(cap * K),
        p = new Float32Array(cap), ids = new Int32Array(cap);
    if (this.cap) { S.set(this.S); top.set(this.top); topP.set(this.topP); p.set(this.p); ids.set(this.ids); }
    this.S = S; this.top = top; this.topP = topP; this.p = p; this.ids = ids; this.cap = cap;
  };
  Run.prototype.slot = function (k) { return this.S.subarray(k * SS, (k + 1) * SS); };
  Run.prototype.truncate = function (n) {
    this.n = Math.min(this.n, n);
    if (this.n > 0) probsAfter(this.slot(this.n - 1), this.last);
  };
  Run.prototype.push = function (id) {
    var k = this.n;
    if (k >= this.cap) this.grow(this.cap * 2);
    var out = this.slot(k);
    step(k === 0 ? ZERO : this.slot(k - 1), out, id, this.edits);
    this.ids[k] = id;
    this.p[k] = k === 0 ? NaN : this.last[id];        // what the model gave this character before reading it
    probsAfter(out, this.last);
    topK(this.last, this.top.subarray(k * K, k * K + K), this.topP.subarray(k * K, k * K + K));
    this.n = k + 1;
  };
  function topK(p, ids, ps) {
    ids.fill(-1); ps.fill(-1);
    for (var v = 0; v < p.length; v++) {
      if (p[v] <= ps[K - 1]) continue;
      var j = K - 1;
      while (j > 0 && p[v] > ps[j - 1]) { ps[j] = ps[j - 1]; ids[j] = ids[j - 1]; j--; }
      ps[j] = p[v]; ids[j] = v;
    }
  }
  Run.prototype.value = function (k, layer, state, unit) { // a unit's value after reading character k
    return this.S[k * SS + layer * H * PER + (state === "c" ? H : 0) + unit];
  };

  // -- characters: code points, as Python counts them; unknown ones read as the CLI reads them
  var lookup = new Map(M.vocab.map(function (ch, i) { return [ch, i]; }));
  function encode(text) {
    var chars = Array.from(text), unknown = 0;
    var ids = chars.map(function (ch) { var i = lookup.get(ch); if (i === undefined) { unknown++; return M.fallback; } return i; });
    return {chars: chars, ids: ids, unknown: unknown};
  }

  function run(text, edits) {
    var enc = encode(text), r = new Run(edits), n = enc.ids.length, states = {};
    enc.ids.forEach(function (id) { r.push(id); });
    for (var l = 0; l < L; l++) {
      ["h", "c"].slice(0, PER).forEach(function (s, si) {
        var a = new Float32Array(n * H);
        for (var k = 0; k < n; k++) a.set(r.S.subarray(k * SS + l * H * PER + si * H, k * SS + l * H * PER + (si + 1) * H), k * H);
        states["rnn.l" + l + "." + s] = a;
      });
    }
    var loss = new Float32Array(Math.max(0, n - 1));
    for (var k = 1; k < n; k++) loss[k - 1] = -Math.log(r.p[k]);
    return {ids: enc.ids, unknown: enc.unknown, states: states, loss: loss,
            top: r.top.slice(0, n * K), topP: r.topP.slice(0, n * K)};
  }

  function toBase64(f32) {                            // for tests: a Float32Array's bytes, compactly
    var b = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength), s = "";
    for (var i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
    return btoa(s);
  }

  // Sampling from a run's last state: temperature 0 (or one so small it overflows) is greedy.
  function mulberry(seed) {
    return function () {
      seed = (seed + 0x6D2B79F5) | 0;
      var t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function sample(r, length, temperature, seed) {
    var rand = mulberry(seed === undefined ? (Math.random() * 4294967296) >>> 0 : seed);
    var a = new Float32Array(SS), b = new Float32Array(SS), p = new Float64Array(V), out = [];
    if (r.n === 0) { step(ZERO, a, M.fallback, r.edits); probsAfter(a, p); }   // as CharRNN.sample: the fallback as prime
    else { a.set(r.slot(r.n - 1)); p.set(r.last); }
    for (var i = 0; i < length; i++) {
      var next = pick(p, temperature, rand);
      out.push(M.vocab[next]);
      step(a, b, next, r.edits);
      var t = a; a = b; b = t;
      probsAfter(a, p);
    }
    return out.join("");
  }
  function pick(p, temperature, rand) {
    var best = 0, v;
    for (v = 1; v < V; v++) if (p[v] > p[best]) best = v;
    if (!(temperature > 0)) return best;
    // p ** (1 / T), renormalised, is softmax(logits / T); logs keep a small T from overflowing.
    var w = new Float64Array(V), lb = Math.log(p[best]), sum = 0;
    for (v = 0; v < V; v++) sum += (w[v] = p[v] > 0 ? Math.exp((Math.log(p[v]) - lb) / temperature) : 0);
    if (!isFinite(sum)) return best;
    var u = rand() * sum;
    for (v = 0; v < V; v++) { u -= w[v]; if (u < 0) return v; }
    return best;
  }

  var api = {run: run, encode: encode, toBase64: toBase64, Run: Run, sample: sample,
             steps: function () { return steps; },           // forward steps so far, for tests
             model: {cell: M.cell, layers: L, hidden: H, vocab: M.vocab}};
  window.neuroscopeLive = api;
  // -- the live section of the page: text box, unit picker, interventions, sampling
  function byId(id) { return document.getElementById(id); }
  function parseUnit(text) {                          // "l1.c.57" -> {id, layer, state, index} or null
    var m = /^l(\d+)\.(h|c)\.(\d+)$/.exec((text || "").trim());
    if (!m || +m[1] >= L || (m[2] === "c" && !LSTM) || +m[3] >= H) return null;
    return {id: m[0], layer: +m[1], state: m[2], index: +m[3]};
  }

  // The three views of the typed text: coloured by a unit, coloured by surprise, and the guesses grid,
  // which shows the last GRID characters (one page of the static grid): thousands of its columns would
  // make every keystroke re-lay them out. New entries gather in fragments, put in the page once per slice.
  var GRID = 400;
  function Views() {
    this.el = {units: byId("live-units"), surprise: byId("live-surprise"), grid: byId("live-grid")};
    this.spans = {units: [], surprise: []};
    this.cols = []; this.first = 0;                   // the grid's columns, for characters first, first + 1, ...
    this.frag = null;
  }
  Views.prototype.fragment = function (v) {
    if (!this.frag) this.frag = {units: document.createDocumentFragment(), surprise: document.createDocumentFragment(),
                                 grid: document.createDocumentFragment()};
    return this.frag[v];
  };
  Views.prototype.flush = function () {
    var el = this.el, frag = this.frag;
    if (frag) ["units", "surprise", "grid"].forEach(function (v) { el[v].appendChild(frag[v]); });
    this.frag = null;
    while (this.cols.length > GRID) { this.drop(this.cols.shift()); this.first++; }
  };
  Views.prototype.drop = function (col) { col.remove(); if (col.br) col.br.remove(); };
  Views.prototype.paintUnit = function (k, r, unit) {
    var raw = r.value(k, unit.layer, unit.state, unit.index), sq = unit.state === "c";
    var v = sq ? Math.tanh(raw) : raw, s = this.spans.units[k];
    s.style.backgroundColor = NS.diverging(v); s.style.color = NS.ink(Math.abs(v));
    s.title = unit.id + " = " + NS.fmt(raw) + (sq ? " (tanh " + v.toFixed(3) + ")" : "") + "\nchar " + k;
  };
  Views.prototype.add = function (k, r, ch, unit, length) {   // character k's entries; length: the text's
    var self = this, cls = ch === "\n" ? "ch nl" : ch === "\r" ? "ch cr" : "ch";
    ["units", "surprise"].forEach(function (v) {
      var s = document.createElement("span"); s.className = cls; s.textContent = ch;
      self.fragment(v).appendChild(s); self.spans[v].push(s);
    });
    this.paintUnit(k, r, unit);
    var s = this.spans.surprise[k], p = r.p[k];
    if (k === 0) { s.style.backgroundColor = "rgb(200,200,200)"; s.title = "first character: no prediction"; }
    else {
      s.style.backgroundColor = NS.surprise(p); s.style.color = NS.ink(p < 0.15 ? 1 : 0);
      s.title = "p(" + NS.glyph(ch) + ") = " + p.toFixed(3) + "\nchar " + k;
    }
    if (k >= length - GRID) this.addColumn(k, r, ch);
  };
  Views.prototype.addColumn = function (k, r, ch) {
    if (!this.cols.length) this.first = k;
    var col = document.createElement("div"), head = document.createElement("div");
    col.className = "pcol"; head.className = "pch"; head.textContent = NS.glyph(ch); head.title = "char " + k;
    col.appendChild(head);
    for (var j = 0; j < K; j++) {
      var c = document.createElement("div"), q = r.topP[k * K + j];
      c.textContent = NS.glyph(M.vocab[r.top[k * K + j]]);
      c.style.backgroundColor = NS.mix(NS.colours.white, NS.colours.shade, q); c.style.color = NS.ink(q);
      c.title = "p = " + q.toFixed(3); col.appendChild(c);
    }
    this.fragment("grid").appendChild(col); this.cols.push(col);
    if (ch === "\n") { col.br = document.createElement("div"); col.br.className = "pbreak"; this.fragment("grid").appendChild(col.br); }
  };
  Views.prototype.cut = function (n, r, chars) {     // remove the entries of characters n on (r, chars: before n)
    var self = this;
    this.flush();
    ["units", "surprise"].forEach(function (v) { self.spans[v].splice(n).forEach(function (s) { s.remove(); }); });
    this.cols.splice(Math.max(0, n - this.first)).forEach(this.drop);
    if (this.cols.length < GRID && this.first > 0) { // refill the grid's window from the run's stored guesses
      this.cols.splice(0).forEach(this.drop);
      for (var k = Math.max(0, n - GRID); k < n; k++) this.addColumn(k, r, chars[k]);
      this.flush();
    }
  };

  // The text box's reading: a clean run, an edited one while interventions are on, the views.
  function Live() {
    this.clean = new Run([]); this.edited = null; this.views = new Views();
    this.chars = []; this.ids = []; this.unknown = 0; this.shown = 0; this.waiting = []; this.timer = null;
    this.unit = parseUnit(byId("live-pick").value) || parseUnit("l0.h.0");
  }
  Live.prototype.current = function () { return this.edited || this.clean; };
  Live.prototype.read = function (value) {            // the box's text now: keep what did not change
    var crlf = byId("live-crlf");                     // a text box holds "\n" only; a CRLF corpus wants "\r\n"
    if (crlf && crlf.checked) value = value.replace(/\r?\n/g, "\r\n");
    var enc = encode(value.slice(0, M.max_chars * 2)), n = Math.min(enc.chars.length, M.max_chars), p = 0;
    while (p < Math.min(n, this.chars.length) && enc.chars[p] === this.chars[p]) p++;
    this.cut(p);
    this.chars = enc.chars.slice(0, n); this.ids = enc.ids.slice(0, n);
    this.unknown = this.chars.filter(function (ch) { return !lookup.has(ch); }).length;
    if (!this.timer) this.catchUp();
  };
  Live.prototype.cut = function (n) {
    this.clean.truncate(n); if (this.edited) this.edited.truncate(n);
    this.views.cut(n, this.current(), this.chars); this.shown = Math.min(this.shown, n);
  };
  // Step the runs up to the text in slices of ~100 ms, so that a long paste never freezes the page
  // (and is laid out once per slice, not once per character).
  Live.prototype.catchUp = function () {
    var self = this, t0 = performance.now();
    this.timer = null;
    while (this.shown < this.ids.length) {
      [this.clean, this.edited].forEach(function (r) { if (r && r.n <= self.shown) r.push(self.ids[self.shown]); });
      this.views.add(this.shown, this.current(), this.chars[this.shown], this.unit, this.ids.length);
      this.shown++;
      if (performance.now() - t0 > 100 && this.shown < this.ids.length) {
        this.views.flush();
        byId("live-status").textContent = "reading " + this.shown + " of " + this.ids.length + " characters\u2026";
        this.timer = setTimeout(function () { self.catchUp(); }, 0);
        return;
      }
    }
    this.views.flush();
    this.report();
    this.waiting.splice(0).forEach(function (done) { done(); });
  };
  Live.prototype.idle = function () {
    var self = this;
    return new Promise(function (done) { if (!self.timer) done(); else self.waiting.push(done); });
  };
  function meanLoss(r) {
    var s = 0;
    for (var k = 1; k < r.n; k++) s -= Math.log(r.p[k]);
    return r.n > 1 ? s / (r.n - 1) : NaN;
  }
  Live.prototype.report = function () {               // the status line and the loss line
    var note = this.chars.length + " characters";
    if (this.unknown) note += "; " + this.unknown + " not in the model's vocabulary, read as " +
      JSON.stringify(M.vocab[M.fallback]) + " (as the command line reads them)";
    byId("live-status").textContent = note + ".";
    var a = meanLoss(this.current()), b = meanLoss(this.clean), d = a - b;
    byId("live-loss").textContent = this.chars.length < 2 ? "" : "loss on this text: " + a.toFixed(4) +
      " nats/char over " + (this.chars.length - 1) + " predictions" + (this.edited ? "; without the interventions " +
      b.toFixed(4) + " (change " + (d >= 0 ? "+" : "") + d.toFixed(4) + ")" : "");
  };
  Live.prototype.setUnit = function (id) {
    var u = parseUnit(id), pick = byId("live-pick");
    if (!u) {
      byId("live-status").textContent = "no unit " + JSON.stringify(id) + ": write layer.state.unit, e.g. l0.h.5 (" +
        L + " layers, states h" + (LSTM ? ", c" : "") + ", units 0.." + (H - 1) + ")";
      return false;
    }
    if (!Array.from(pick.options).some(function (o) { return o.value === u.id; })) pick.add(new Option(u.id, u.id));
    pick.value = u.id; this.unit = u;
    for (var k = 0; k < this.shown; k++) this.views.paintUnit(k, this.current(), u);
    return true;
  };
  Live.prototype.setEdits = function (list) {         // new interventions: the text is read again under them
    this.edited = list.length ? new Run(list) : null;
    this.views.cut(0, this.clean, this.chars); this.shown = 0;    // the clean run keeps its states
    if (!this.timer) this.catchUp();
    return this.idle();
  };

  // Intervention rows (units, op, value); any change reads the whole text again under them.
  function readEdits() {
    var out = [];
    Array.from(byId("live-edits").children).forEach(function (row) {
      var f = row.querySelectorAll("input, select"), us = f[0].value.split(/[\s,]+/).filter(Boolean).map(parseUnit);
      var ok = us.length > 0 && us.every(Boolean);
      row.classList.toggle("bad", !ok && f[0].value.trim() !== "");
      if (ok) us.forEach(function (u) {
        out.push({name: "rnn.l" + u.layer + "." + u.state, units: [u.index], op: f[1].value, value: +f[2].value || 0});
      });
    });
    return out;
  }
  function addEditRow(live, e) {
    var row = document.createElement("div");
    row.className = "controls live-edit";
    row.innerHTML = '<label>units <input size="18" placeholder="l1.c.57, l1.h.3"></label>' +
      '<select><option value="zero">zero</option><option value="clamp">clamp to</option>' +
      '<option value="scale">scale by</option></select><input type="number" step="0.1" value="0" size="6">' +
      '<button type="button">remove</button>';
    var f = row.querySelectorAll("input, select");
    f[0].value = e ? e.units : live.unit.id; f[1].value = e ? e.op : "zero"; f[2].value = e ? e.value : 0;
    row.addEventListener("change", function () { live.setEdits(readEdits()); });
    row.querySelector("button").addEventListener("click", function () { row.remove(); live.setEdits(readEdits()); });
    byId("live-edits").appendChild(row);
    return live.setEdits(readEdits());
  }

  function ui() {
    var box = byId("live-text");
    if (!box) return;                                 // a view of the report without the live section
    var live = new Live();
    byId("live-pick").addEventListener("change", function (e) { live.setUnit(e.target.value); });
    byId("live-unit").addEventListener("change", function (e) { if (live.setUnit(e.target.value)) e.target.value = ""; });
    byId("live-add").addEventListener("click", function () { addEditRow(live); });
    byId("live-sample").addEventListener("click", function () {
      live.idle().then(function () {
        var r = byId("live-with").checked ? live.current() : live.clean;
        byId("live-sampled").textContent = sample(r, Math.max(0, Math.min(5000, +byId("live-len").value || 0)),
                                                  +byId("live-temp").value);
      });
    });
    box.addEventListener("input", function () { live.read(box.value); });
    if (byId("live-crlf")) byId("live-crlf").addEventListener("change", function () { live.read(box.value); });
    box.value = Array.from(D.text || "").slice(0, M.start_chars).join("");
    live.read(box.value);
    api.ui = {type: function (text) { box.value = text; live.read(box.value); return live.idle(); },
              idle: function () { return live.idle(); }, setUnit: function (id) { return live.setUnit(id); },
              addEdit: function (e) { return addEditRow(live, e); }, live: live};
  }
  ui();
})();
