/* Draw a digit: the article's stronger CNN reads it live, offline, in plain JavaScript.
 *
 * Why a forward pass of our own and not onnxruntime-web: the network is tiny (0.87 M
 * parameters, 19 M multiply-adds: 3x3 convolutions with same padding, ReLU, 2x2 max-pooling,
 * two dense layers), which the loops over typed arrays below run in 36 ms a reading
 * (headless Chromium on the build machine's two CPU cores, shared under a load average of
 * about 6), with no dependency: this file is about 24 kB on top of the weights.
 * onnxruntime-web 1.31.1, measured in its npm package: its smallest runtime, ort.wasm.min.js
 * (53,796 bytes), needs the glue ort-wasm-simd-threaded.mjs (24,738 bytes) and
 * ort-wasm-simd-threaded.wasm (14,848,852 bytes): 14,927,386 bytes, over 600 times this file,
 * before the same weights (an ONNX file of float16 weights is about as large as our asset).
 * And it loads its WebAssembly with fetch(), which browsers refuse on file:// pages, where
 * this article must work.
 *
 * Progressive enhancement: the page holds (templates/partials/draw_pad.html)
 *   <div class="draw-pad" hidden data-src="assets/hidden_layers/draw_pad_model.js"> ... </div>
 * with the pad's markup and words. This script shows it, loads the weights with a <script> tag
 * when the pad nears the window (fetch() of local files fails on file:// pages), and from then
 * on reads the drawing at every animation frame in which it changed. Without JavaScript the div
 * stays hidden and a note says the pad needs it. The weights' format and the Python twin of
 * everything below (the folded batch norms, this forward pass, the MNIST-style preprocessing)
 * are in digits/drawing.py; tests/test_browser.py checks that both agree.
 *
 * window.mnistPad: preprocess(ink, width, height) -> Uint8Array(784) at once; and, once the
 * weights are loaded (ready: true), predict(uint8Array784) -> the ten logits and
 * forward(uint8Array784) -> {logits, probabilities, maps}.
 */
(function () {
  "use strict";

  var SIDE = 28; // the network's input field, as MNIST's
  var BOX = 20; // the longer side of the ink's bounding box once scaled, as MNIST's
  var LINE = 0.075; // the pen's width, as a share of the pad's side
  var MAX_CANVAS = 640; // the pad's canvas is at most this many pixels wide (device pixels)
  var COLUMNS = 8; // feature maps per row
  var TILE = 28, GAP = 2; // a map's tile (smaller maps are enlarged to it) and the gap, pixels
  // matplotlib's magma at nine evenly spaced points (the static feature-map figures use it).
  var MAGMA = ["#000004", "#1d1147", "#51127c", "#832681", "#b73779", "#e75263", "#fc8961",
    "#fec488", "#fcfdbf"];

  var api = window.mnistPad = { ready: false, preprocess: preprocess };

  // --- decoding the asset ------------------------------------------------------------------

  function base64Bytes(text) {
    var binary = atob(text), bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function halfToFloat(bytes) {
    // IEEE 754 binary16, little-endian -> Float32Array (subnormals, infinities and NaN too).
    var n = bytes.length >> 1, out = new Float32Array(n);
    for (var i = 0; i < n; i++) {
      var h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
      var sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
      out[i] = exp === 0 ? sign * frac * Math.pow(2, -24)
        : exp === 31 ? (frac ? NaN : sign * Infinity)
          : sign * (1 + frac / 1024) * Math.pow(2, exp - 15);
    }
    return out;
  }

  function buildNet(raw) {
    var values = halfToFloat(base64Bytes(raw.weights));
    var layers = raw.layers.map(function (entry) {
      var layer = { kind: entry.kind, relu: entry.relu };
      if (entry.shape) {
        var size = entry.shape.reduce(function (a, b) { return a * b; }, 1);
        layer.out = entry.shape[0];
        layer["in"] = entry.shape[1];
        layer.w = values.subarray(entry.weight, entry.weight + size);
        layer.b = values.subarray(entry.bias, entry.bias + layer.out);
      }
      return layer;
    });
    return { mean: raw.mean, std: raw.std, layers: layers };
  }

  // --- the forward pass (digits/drawing.py: forward) ----------------------------------------

  function conv3x3(x, channels, h, w, layer) {
    // Same-padded 3x3 cross-correlation, as torch's Conv2d: each output map starts at its bias
    // and adds, for each input map, the nine weights times the input shifted by each tap (over
    // a zero-padded copy, so no pixel needs a bounds check); then ReLU.
    var hw = h * w, pw = w + 2, ph = h + 2, out = new Float32Array(layer.out * hw);
    var padded = new Float32Array(channels * ph * pw), weights = layer.w;
    for (var i = 0; i < channels; i++) {
      for (var y = 0; y < h; y++) padded.set(x.subarray(i * hw + y * w, i * hw + y * w + w), (i * ph + y + 1) * pw + 1);
    }
    for (var o = 0; o < layer.out; o++) {
      var acc = out.subarray(o * hw, (o + 1) * hw);
      acc.fill(layer.b[o]);
      for (i = 0; i < channels; i++) {
        var k = (o * channels + i) * 9, src = i * ph * pw;
        var k0 = weights[k], k1 = weights[k + 1], k2 = weights[k + 2], k3 = weights[k + 3],
          k4 = weights[k + 4], k5 = weights[k + 5], k6 = weights[k + 6], k7 = weights[k + 7],
          k8 = weights[k + 8];
        for (y = 0; y < h; y++) {
          var r0 = src + y * pw, r1 = r0 + pw, r2 = r1 + pw, row = y * w;
          for (var c = 0; c < w; c++) {
            acc[row + c] += k0 * padded[r0 + c] + k1 * padded[r0 + c + 1] + k2 * padded[r0 + c + 2] +
              k3 * padded[r1 + c] + k4 * padded[r1 + c + 1] + k5 * padded[r1 + c + 2] +
              k6 * padded[r2 + c] + k7 * padded[r2 + c + 1] + k8 * padded[r2 + c + 2];
          }
        }
      }
      if (layer.relu) for (var p = 0; p < hw; p++) if (acc[p] < 0) acc[p] = 0;
    }
    return out;
  }

  function maxPool2(x, channels, h, w) {
    var oh = h >> 1, ow = w >> 1, out = new Float32Array(channels * oh * ow);
    for (var c = 0; c < channels; c++) {
      for (var y = 0; y < oh; y++) {
        for (var q = 0; q < ow; q++) {
          var at = c * h * w + 2 * y * w + 2 * q;
          out[(c * oh + y) * ow + q] = Math.max(x[at], x[at + 1], x[at + w], x[at + w + 1]);
        }
      }
    }
    return out;
  }

  function dense(x, layer) {
    var out = new Float32Array(layer.out), n = layer["in"], weights = layer.w;
    for (var o = 0; o < layer.out; o++) {
      var sum = layer.b[o], base = o * n;
      for (var i = 0; i < n; i++) sum += weights[base + i] * x[i];
      out[o] = layer.relu && sum < 0 ? 0 : sum;
    }
    return out;
  }

  function forward(net, pixels) {
    if (pixels.length !== SIDE * SIDE) throw new Error("the network reads " + SIDE * SIDE + " pixels");
    var x = new Float32Array(SIDE * SIDE), channels = 1, h = SIDE, w = SIDE, maps = [];
    for (var p = 0; p < x.length; p++) x[p] = (pixels[p] / 255 - net.mean) / net.std;
    net.layers.forEach(function (layer) {
      if (layer.kind === "conv") {
        x = conv3x3(x, channels, h, w, layer);
        channels = layer.out;
        maps.push({ data: x, channels: channels, h: h, w: w });
      } else if (layer.kind === "pool") {
        x = maxPool2(x, channels, h, w);
        h >>= 1;
        w >>= 1;
      } else {
        x = dense(x, layer);
      }
    });
    var top = -Infinity, total = 0, probabilities = new Float64Array(x.length);
    for (var i = 0; i < x.length; i++) top = Math.max(top, x[i]);
    for (i = 0; i < x.length; i++) total += (probabilities[i] = Math.exp(x[i] - top));
    for (i = 0; i < x.length; i++) probabilities[i] /= total;
    return { logits: x, probabilities: probabilities, maps: maps };
  }

  // --- MNIST-style preprocessing (digits/drawing.py: preprocess) ----------------------------

  function areaWeights(n, scale) {
    // n source cells scaled by `scale` into ceil(n * scale) output cells; for each output cell,
    // its first source cell and the weights: the share of the output cell's span each source
    // cell fills (beyond the source is blank), so that a weighted sum is the mean ink.
    var rows = [], m = Math.max(1, Math.ceil(n * scale - 1e-9));
    for (var j = 0; j < m; j++) {
      var a = j / scale, b = (j + 1) / scale, first = Math.floor(a), weights = [];
      for (var i = first; i < Math.min(n, Math.ceil(b)); i++) {
        weights.push(Math.max(0, Math.min(i + 1, b) - Math.max(i, a)) * scale);
      }
      rows.push({ first: first, weights: weights });
    }
    return rows;
  }

  function preprocess(ink, width, height) {
    // ink: width x height intensities, 0 = paper, up to 255 (row-major). The bounding box of
    // the ink, scaled by area averaging, one factor on both axes, so that its longer side is
    // BOX pixels, placed in the SIDE x SIDE field with its centre of mass nearest the centre.
    var out = new Uint8Array(SIDE * SIDE), r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (var y = 0; y < height; y++) {
      for (var x = 0; x < width; x++) {
        if (ink[y * width + x] > 0) {
          if (y < r0) r0 = y;
          if (y > r1) r1 = y;
          if (x < c0) c0 = x;
          if (x > c1) c1 = x;
        }
      }
    }
    if (r1 < 0) return out;
    var h = r1 - r0 + 1, w = c1 - c0 + 1, scale = BOX / Math.max(h, w);
    var wy = areaWeights(h, scale), wx = areaWeights(w, scale), th = wy.length, tw = wx.length;
    var rows = new Float64Array(th * w);
    for (var j = 0; j < th; j++) {
      for (var k = 0; k < wy[j].weights.length; k++) {
        var weight = wy[j].weights[k], src = (r0 + wy[j].first + k) * width + c0;
        for (x = 0; x < w; x++) rows[j * w + x] += weight * ink[src + x];
      }
    }
    var small = new Float64Array(th * tw), total = 0, my = 0, mx = 0;
    for (j = 0; j < th; j++) {
      for (var q = 0; q < tw; q++) {
        var sum = 0;
        for (k = 0; k < wx[q].weights.length; k++) sum += wx[q].weights[k] * rows[j * w + wx[q].first + k];
        small[j * tw + q] = sum;
      }
    }
    var rowSums = new Float64Array(th), colSums = new Float64Array(tw);
    for (j = 0; j < th; j++) for (q = 0; q < tw; q++) {
      rowSums[j] += small[j * tw + q];
      colSums[q] += small[j * tw + q];
    }
    for (j = 0; j < th; j++) { total += rowSums[j]; my += (j + 0.5) * rowSums[j]; }
    for (q = 0; q < tw; q++) mx += (q + 0.5) * colSums[q];
    if (!(total > 0)) return out;
    var oy = Math.floor(SIDE / 2 - my / total + 0.5), ox = Math.floor(SIDE / 2 - mx / total + 0.5);
    for (j = 0; j < th; j++) {
      for (q = 0; q < tw; q++) {
        var fy = oy + j, fx = ox + q;
        if (fy < 0 || fy >= SIDE || fx < 0 || fx >= SIDE) continue;
        out[fy * SIDE + fx] = Math.min(255, Math.max(0, Math.floor(small[j * tw + q] + 0.5)));
      }
    }
    return out;
  }

  // --- the pad ---------------------------------------------------------------------------

  function loadScript(src, done, fail) {
    var script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.onload = done;
    script.onerror = fail;
    document.head.appendChild(script);
  }

  function hexRgb(hex) {
    return [1, 3, 5].map(function (k) { return parseInt(hex.slice(k, k + 2), 16); });
  }
  var LUT = (function () { // 256 magma colours, interpolated between the nine stops
    var stops = MAGMA.map(hexRgb), lut = new Uint8ClampedArray(256 * 3);
    for (var v = 0; v < 256; v++) {
      var t = v / 255 * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
      for (var c = 0; c < 3; c++) lut[3 * v + c] = Math.round(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
    }
    return lut;
  })();

  function greyImage(g, pixels) {
    // uint8 pixels [28 x 28] as MNIST stores them: bright ink on black.
    var image = g.createImageData(SIDE, SIDE);
    for (var p = 0; p < pixels.length; p++) {
      image.data[4 * p] = image.data[4 * p + 1] = image.data[4 * p + 2] = pixels[p];
      image.data[4 * p + 3] = 255;
    }
    g.putImageData(image, 0, 0);
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, key) {
      return key in values ? values[key] : all;
    });
  }

  function setup(root) {
    var q = function (selector) { return root.querySelector(selector); };
    var paper = q(".draw-pad-paper"), pad = q("canvas.draw-pad-ink");
    var preview = q("canvas.draw-pad-preview"), bars = q(".draw-pad-bars");
    var status = q(".draw-pad-status"), clear = q(".draw-pad-clear");
    var mapCanvases = root.querySelectorAll("canvas.draw-pad-map");
    var g = pad.getContext("2d", { willReadFrequently: true });
    var gPreview = preview.getContext("2d");
    var net = null, raw = null, strokes = [], example = null, frame = 0, last = null;
    var drawing = null, forwardMs = 0, updates = 0;
    // As the page writes percentages (report/render.py: pct): "97.5 %", kept on one line.
    var percent = { format: function (p) { return (100 * p).toFixed(1) + "\u00a0%"; } };
    root.hidden = false;
    status.textContent = status.getAttribute("data-loading");
    // The map panels take their final size at once (blank until a digit is read): the page
    // does not move when the first reading arrives.
    for (var k = 0; k < mapCanvases.length; k++) {
      var size = Number(mapCanvases[k].getAttribute("data-size"));
      var zoom = Math.max(1, Math.round(TILE / size)), panels = Number(mapCanvases[k].getAttribute("data-channels"));
      var rowsOf = Math.ceil(panels / COLUMNS);
      mapCanvases[k].width = COLUMNS * size * zoom + (COLUMNS - 1) * GAP;
      mapCanvases[k].height = rowsOf * size * zoom + (rowsOf - 1) * GAP;
    }
    drawMaps(null);

    function fail(message) {
      root.hidden = true;
      root.setAttribute("data-failed", message);
      if (window.console) console.warn("drawing pad: " + message);
    }

    // The ten bars, one per class.
    var rows = [];
    function makeBars(classes) {
      for (var d = 0; d < classes; d++) {
        var li = document.createElement("li"), digit = document.createElement("span");
        var track = document.createElement("span"), bar = document.createElement("span");
        var value = document.createElement("span");
        digit.className = "draw-pad-digit";
        digit.textContent = String(d);
        track.className = "draw-pad-track";
        bar.className = "draw-pad-bar";
        value.className = "draw-pad-value";
        track.appendChild(bar);
        li.appendChild(digit);
        li.appendChild(track);
        li.appendChild(value);
        bars.appendChild(li);
        rows.push({ li: li, bar: bar, value: value });
      }
    }

    // --- drawing ---------------------------------------------------------------------------
    function resize() {
      var side = Math.min(MAX_CANVAS, Math.round(paper.clientWidth * (window.devicePixelRatio || 1)));
      if (!side || side === pad.width) return;
      pad.width = pad.height = side;
      schedule();
    }

    function render() {
      var side = pad.width;
      g.clearRect(0, 0, side, side);
      var color = getComputedStyle(pad).color;
      if (example) {
        var small = document.createElement("canvas"), rgb = color.match(/[\d.]+/g).map(Number);
        small.width = small.height = SIDE;
        var sg = small.getContext("2d"), image = sg.createImageData(SIDE, SIDE);
        for (var p = 0; p < example.pixels.length; p++) {
          image.data[4 * p] = rgb[0];
          image.data[4 * p + 1] = rgb[1];
          image.data[4 * p + 2] = rgb[2];
          image.data[4 * p + 3] = example.pixels[p];
        }
        sg.putImageData(image, 0, 0);
        g.imageSmoothingEnabled = false;
        g.drawImage(small, 0, 0, side, side);
      }
      g.strokeStyle = g.fillStyle = color;
      g.lineWidth = LINE * side;
      g.lineCap = g.lineJoin = "round";
      strokes.forEach(function (points) {
        g.beginPath();
        if (points.length === 1) {
          g.arc(points[0][0] * side, points[0][1] * side, g.lineWidth / 2, 0, 2 * Math.PI);
          g.fill();
          return;
        }
        g.moveTo(points[0][0] * side, points[0][1] * side);
        for (var i = 1; i < points.length; i++) g.lineTo(points[i][0] * side, points[i][1] * side);
        g.stroke();
      });
    }

    function inkInput() {
      // The network's input: a loaded test digit as it is, or the drawing made MNIST-like.
      if (example && !strokes.length) return example.pixels;
      var side = pad.width, data = g.getImageData(0, 0, side, side).data;
      var alpha = new Uint8Array(side * side);
      for (var p = 0; p < alpha.length; p++) alpha[p] = data[4 * p + 3];
      return preprocess(alpha, side, side);
    }

    function schedule() {
      if (!frame) frame = requestAnimationFrame(update);
    }

    function update() {
      frame = 0;
      render();
      if (!net) return;
      var t0 = performance.now();
      var input = inkInput(), empty = true;
      for (var p = 0; p < input.length && empty; p++) if (input[p]) empty = false;
      greyImage(gPreview, input);
      var result = empty ? null : forward(net, input);
      forwardMs = performance.now() - t0;
      last = { input: input, result: result };
      var best = -1;
      if (result) {
        for (var d = 0; d < rows.length; d++) if (best < 0 || result.probabilities[d] > result.probabilities[best]) best = d;
      }
      rows.forEach(function (row, d) {
        var value = result ? result.probabilities[d] : 0;
        row.bar.style.width = (100 * value).toFixed(2) + "%";
        row.value.textContent = result ? percent.format(value) : "";
        row.li.classList.toggle("top", d === best);
      });
      drawMaps(result);
      var values = result ? { digit: best, probability: percent.format(result.probabilities[best]) } : {};
      if (example && !strokes.length) {
        values.index = example.index.toLocaleString("en");
        values.label = example.label;
        status.textContent = fill(status.getAttribute("data-example"), values);
      } else {
        status.textContent = result ? fill(status.getAttribute("data-reading"), values)
          : status.getAttribute("data-empty");
      }
      updates++;
      root.setAttribute("data-updates", String(updates));
    }

    function drawMaps(result) {
      // Every map of each convolution as a tile, COLUMNS to a row, on one scale per
      // convolution (its largest value is the brightest); the gaps stay transparent. Before
      // any reading, the tiles are black.
      for (var k = 0; k < mapCanvases.length; k++) {
        var canvas = mapCanvases[k], mg = canvas.getContext("2d"), map = result && result.maps[k];
        var size = Number(canvas.getAttribute("data-size"));
        var channels = Number(canvas.getAttribute("data-channels"));
        var zoom = Math.max(1, Math.round(TILE / size)), tile = size * zoom, W = canvas.width;
        var image = mg.createImageData(W, canvas.height), top = 0, data = map ? map.data : null;
        if (data) for (var p = 0; p < data.length; p++) if (data[p] > top) top = data[p];
        for (var c = 0; c < channels; c++) {
          var left = (c % COLUMNS) * (tile + GAP), up = Math.floor(c / COLUMNS) * (tile + GAP);
          for (var y = 0; y < tile; y++) {
            var from = (c * size + Math.floor(y / zoom)) * size;
            for (var x = 0; x < tile; x++) {
              var level = top > 0 ? Math.round(255 * data[from + Math.floor(x / zoom)] / top) : 0;
              var at = 4 * ((up + y) * W + left + x);
              image.data[at] = LUT[3 * level];
              image.data[at + 1] = LUT[3 * level + 1];
              image.data[at + 2] = LUT[3 * level + 2];
              image.data[at + 3] = 255;
            }
          }
        }
        mg.putImageData(image, 0, 0);
      }
    }

    function local(e) {
      var rect = pad.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width)),
        Math.min(1, Math.max(0, (e.clientY - rect.top) / rect.height))];
    }

    pad.addEventListener("pointerdown", function (e) {
      if (drawing !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
      e.preventDefault();
      pad.setPointerCapture(e.pointerId);
      drawing = e.pointerId;
      strokes.push([local(e)]);
      schedule();
    });
    pad.addEventListener("pointermove", function (e) {
      if (e.pointerId !== drawing) return;
      var points = strokes[strokes.length - 1];
      var events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      (events.length ? events : [e]).forEach(function (ev) { points.push(local(ev)); });
      schedule();
    });
    function release(e) {
      if (e.pointerId === drawing) drawing = null;
    }
    pad.addEventListener("pointerup", release);
    pad.addEventListener("pointercancel", release);

    clear.addEventListener("click", function () {
      strokes = [];
      example = null;
      schedule();
    });

    function loadExample(k) {
      var e = raw.examples[k];
      strokes = [];
      example = { pixels: base64Bytes(e.pixels), index: e.index, label: e.label };
      schedule();
    }

    // --- loading the weights -------------------------------------------------------------
    function start() {
      raw = window.mnistPadModel;
      if (!raw) return fail("the model script defined no window.mnistPadModel");
      try {
        net = buildNet(raw);
      } catch (err) {
        return fail(String(err));
      }
      var classes = net.layers[net.layers.length - 1].out;
      makeBars(classes);
      root.querySelectorAll("button.draw-pad-example").forEach(function (button) {
        var k = Number(button.getAttribute("data-example")), thumb = button.querySelector("canvas");
        if (thumb) greyImage(thumb.getContext("2d"), base64Bytes(raw.examples[k].pixels));
        button.addEventListener("click", function () { loadExample(k); });
        button.disabled = false;
      });
      clear.disabled = false;
      api.predict = function (pixels) { return Array.from(forward(net, pixels).logits); };
      api.forward = function (pixels) { return forward(net, pixels); };
      api.ready = true;
      // A small read-only handle for tests and the console.
      root.drawPad = {
        input: function () { return last ? Array.from(last.input) : null; },
        probabilities: function () {
          return last && last.result ? Array.from(last.result.probabilities) : null;
        },
        strokes: function () { return strokes.length; },
        lastForwardMs: function () { return forwardMs; },
        ink: function () {
          var side = pad.width, data = g.getImageData(0, 0, side, side).data, out = [];
          for (var p = 0; p < side * side; p++) out.push(data[4 * p + 3]);
          return { side: side, alpha: out };
        }
      };
      root.setAttribute("data-ready", "true");
      schedule();
    }

    var requested = false;
    function request() {
      if (requested) return;
      requested = true;
      loadScript(root.getAttribute("data-src"), start, function () {
        fail("could not load " + root.getAttribute("data-src"));
      });
    }

    if (window.ResizeObserver) new ResizeObserver(resize).observe(paper);
    else window.addEventListener("resize", resize);
    resize();
    // The weights (a few MB) load when the pad comes near the window, not with the page.
    if (window.IntersectionObserver) {
      var watch = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) {
          watch.disconnect();
          request();
        }
      }, { rootMargin: "100% 0px" });
      watch.observe(root);
    } else {
      request();
    }
  }

  var roots = document.querySelectorAll("div.draw-pad[data-src]");
  for (var r = 0; r < roots.length; r++) setup(roots[r]);
})();
