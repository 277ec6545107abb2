/* Interactive t-SNE map: a zoomable, pannable canvas scatter of the digits, in plain JavaScript.
 *
 * Progressive enhancement: the page holds a static figure and, next to it,
 *   <div class="tsne-map" hidden data-src="assets/.../map_points.js" data-key="tsne"
 *        data-figure="id-of-the-static-figure"></div>
 * This script loads the data with a <script> tag (fetch() of local files fails on file:// pages),
 * then shows the map in place of the figure's image. Without JavaScript, or if the data does not
 * load, the static figure stays. The files' format is defined in digits/tsne_map.py (its module
 * docstring; encode_map_data writes the points): the data file stores, little-endian and
 * base64-encoded, index uint32[n], x uint16[n], y uint16[n], label uint8[n]; thumbnails come
 * from 4-bit PNG sprite sheets, loaded on first hover.
 * A page without such a div costs nothing but this download.
 */
(function () {
  "use strict";

  var GRID = 128; // hover lookup: GRID x GRID cells over the unit square
  var PICK_RADIUS = 12; // CSS px: how close the pointer must be to a point to pick it
  var MAX_ZOOM = 400; // relative to the fitted view

  function loadScript(src, done, fail) {
    var script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.onload = done;
    script.onerror = fail;
    document.head.appendChild(script);
  }

  function base64Bytes(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  function rgba32(hex) {
    // ImageData is RGBA in memory; a little-endian Uint32 view reads it as ABGR.
    var r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16),
      b = parseInt(hex.slice(5, 7), 16);
    return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text) node.textContent = text;
    return node;
  }

  function decode(raw) {
    var n = raw.n, bytes = base64Bytes(raw.data);
    if (bytes.length !== 9 * n) throw new Error("map data: " + bytes.length + " bytes for " + n + " points");
    var buffer = bytes.buffer;
    var index = new Uint32Array(buffer, 0, n), qx = new Uint16Array(buffer, 4 * n, n),
      qy = new Uint16Array(buffer, 6 * n, n), label = new Uint8Array(buffer, 8 * n, n);
    var u = new Float32Array(n), v = new Float32Array(n), umax = 0, vmax = 0;
    for (var i = 0; i < n; i++) {
      u[i] = qx[i] / 65535;
      v[i] = qy[i] / 65535;
      if (u[i] > umax) umax = u[i];
      if (v[i] > vmax) vmax = v[i];
    }
    // Counting sort of the points into grid cells, for hover lookup in O(points nearby).
    var cellOf = new Int32Array(n), start = new Int32Array(GRID * GRID + 1);
    for (i = 0; i < n; i++) {
      var cx = Math.min(GRID - 1, (u[i] * GRID) | 0), cy = Math.min(GRID - 1, (v[i] * GRID) | 0);
      cellOf[i] = cy * GRID + cx;
      start[cellOf[i] + 1]++;
    }
    for (i = 0; i < GRID * GRID; i++) start[i + 1] += start[i];
    var fill = start.slice(0, GRID * GRID), items = new Int32Array(n);
    for (i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
    return { n: n, index: index, label: label, u: u, v: v, umax: umax || 1, vmax: vmax || 1,
      cellStart: start, cellItems: items };
  }

  function setup(root) {
    var figure = root.getAttribute("data-figure") && document.getElementById(root.getAttribute("data-figure"));
    var src = root.getAttribute("data-src"), key = root.getAttribute("data-key") || "tsne";
    var base = src.replace(/[^\/]*$/, "");

    // --- the widget's DOM ------------------------------------------------------------------
    var legend = el("div", { "class": "tsne-map-legend", role: "group",
      "aria-label": "Show or hide digits" });
    var tools = el("div", { "class": "tsne-map-tools" });
    var buttons = {};
    [["in", "+", "Zoom in"], ["out", "\u2212", "Zoom out"], ["reset", "Reset", "Reset the view"],
      ["all", "All", "Show every digit"], ["none", "None", "Hide every digit"]].forEach(function (b) {
      buttons[b[0]] = el("button", { type: "button", title: b[2], "aria-label": b[2] }, b[1]);
      tools.appendChild(buttons[b[0]]);
    });
    var stage = el("div", { "class": "tsne-map-stage" });
    var canvas = el("canvas", { tabindex: "0", role: "img",
      "aria-label": "Interactive map of the digits: arrow keys pan, plus and minus zoom." });
    var tip = el("div", { "class": "tsne-map-tip", hidden: "" });
    var thumb = el("canvas", { width: "28", height: "28" });
    var tipText = el("span");
    tip.appendChild(thumb);
    tip.appendChild(tipText);
    stage.appendChild(canvas);
    stage.appendChild(tip);
    var status = el("p", { "class": "tsne-map-status", "aria-live": "polite" }, "Loading the map\u2026");
    root.appendChild(tools);
    root.appendChild(legend);
    root.appendChild(stage);
    root.appendChild(status);
    if (figure) {
      figure.insertBefore(root, figure.querySelector("figcaption"));
      figure.classList.add("has-tsne-map");
    }
    root.hidden = false;

    function fail(message) {
      if (figure) figure.classList.remove("has-tsne-map");
      root.hidden = true;
      if (window.console) console.warn("t-SNE map: " + message);
    }

    loadScript(src, function () {
      var raw = window.mnistMapData && window.mnistMapData[key];
      if (!raw) return fail("the data script defined no '" + key + "'");
      try {
        start(decode(raw), raw);
      } catch (err) {
        fail(String(err));
      }
    }, function () { fail("could not load " + src); });

    // --- the map ---------------------------------------------------------------------------
    function start(d, raw) {
      var g = canvas.getContext("2d");
      var colors = raw.colors.map(rgba32), hidden = new Uint8Array(10);
      var counts = new Int32Array(10);
      for (var i = 0; i < d.n; i++) counts[d.label[i]]++;
      var view = { s: 1, tx: 0, ty: 0, fit: 1 }, touched = false;
      var width = 0, height = 0, dpr = 1, image = null, pixels = null;
      var hover = -1, pinned = false, frame = 0, drawMs = 0;
      var sheets = [], tipCtx = thumb.getContext("2d");
      var keys = [];

      raw.colors.forEach(function (color, digit) {
        var b = el("button", { type: "button", "class": "tsne-map-key", "aria-pressed": "true",
          title: "Show or hide digit " + digit });
        var swatch = el("span", { "class": "swatch" });
        swatch.style.background = color;
        b.appendChild(swatch);
        b.appendChild(document.createTextNode(String(digit)));
        b.addEventListener("click", function () { setHidden(digit, !hidden[digit]); });
        legend.appendChild(b);
        keys.push(b);
      });

      function setHidden(digit, value) {
        hidden[digit] = value ? 1 : 0;
        keys[digit].setAttribute("aria-pressed", value ? "false" : "true");
        if (hover >= 0 && hidden[d.label[hover]]) hideTip();
        schedule();
      }

      function fitView() {
        var s = 0.94 * Math.min(width / d.umax, height / d.vmax);
        view = { s: s, fit: s, tx: (width - d.umax * s) / 2, ty: (height - d.vmax * s) / 2 };
      }

      function resize() {
        var w = stage.clientWidth, h = stage.clientHeight;
        if (!w || !h) return;
        var oldW = width, oldH = height;
        width = w;
        height = h;
        dpr = window.devicePixelRatio || 1;
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(h * dpr);
        image = g.createImageData(canvas.width, canvas.height);
        pixels = new Uint32Array(image.data.buffer);
        if (!touched || !oldW) fitView();
        else { view.tx += (w - oldW) / 2; view.ty += (h - oldH) / 2; }
        schedule();
      }

      function toScreen(i) {
        return [view.tx + d.u[i] * view.s, view.ty + (d.vmax - d.v[i]) * view.s];
      }

      function schedule() {
        if (!frame) frame = requestAnimationFrame(draw);
      }

      function draw() {
        frame = 0;
        if (!pixels) return;
        var t0 = performance.now();
        var W = canvas.width, H = canvas.height, k = view.s * dpr, ox = view.tx * dpr,
          oy = (view.ty + d.vmax * view.s) * dpr;
        var zoom = view.s / view.fit, base = d.n > 20000 ? 1.4 : 2.6;
        var size = Math.max(1, Math.round(dpr * base * Math.min(4, Math.sqrt(zoom))));
        var half = size >> 1, u = d.u, v = d.v, label = d.label;
        pixels.fill(0);
        for (var i = 0; i < d.n; i++) {
          var c = label[i];
          if (hidden[c]) continue;
          var x0 = ((ox + u[i] * k) | 0) - half, y0 = ((oy - v[i] * k) | 0) - half;
          if (x0 >= W || y0 >= H || x0 + size <= 0 || y0 + size <= 0) continue;
          var x1 = Math.min(W, x0 + size), y1 = Math.min(H, y0 + size), color = colors[c];
          if (x0 < 0) x0 = 0;
          if (y0 < 0) y0 = 0;
          for (var y = y0; y < y1; y++) {
            var row = y * W;
            for (var x = x0; x < x1; x++) pixels[row + x] = color;
          }
        }
        g.putImageData(image, 0, 0);
        if (hover >= 0) {
          var p = toScreen(hover);
          g.save();
          g.scale(dpr, dpr);
          g.lineWidth = 3;
          g.strokeStyle = "#fff";
          g.beginPath();
          g.arc(p[0], p[1], 7, 0, 2 * Math.PI);
          g.stroke();
          g.lineWidth = 1.5;
          g.strokeStyle = "#000";
          g.stroke();
          g.restore();
        }
        drawMs = performance.now() - t0;
      }

      // --- picking and the tooltip ---------------------------------------------------------
      function nearest(sx, sy) {
        var s = view.s, uq = (sx - view.tx) / s, vq = d.vmax - (sy - view.ty) / s;
        var r = PICK_RADIUS / s, best = -1, bestD = PICK_RADIUS * PICK_RADIUS;
        var cx0 = Math.max(0, Math.floor((uq - r) * GRID)), cx1 = Math.min(GRID - 1, Math.floor((uq + r) * GRID));
        var cy0 = Math.max(0, Math.floor((vq - r) * GRID)), cy1 = Math.min(GRID - 1, Math.floor((vq + r) * GRID));
        for (var cy = cy0; cy <= cy1; cy++) {
          for (var cx = cx0; cx <= cx1; cx++) {
            var cell = cy * GRID + cx;
            for (var j = d.cellStart[cell]; j < d.cellStart[cell + 1]; j++) {
              var i = d.cellItems[j];
              if (hidden[d.label[i]]) continue;
              var du = (d.u[i] - uq) * s, dv = (d.v[i] - vq) * s, dist = du * du + dv * dv;
              if (dist < bestD || (dist === bestD && i < best)) { bestD = dist; best = i; }
            }
          }
        }
        return best;
      }

      function sheet(number) {
        if (!sheets[number]) {
          var img = new Image();
          img.onload = function () { img.ready = true; if (hover >= 0) showTip(hover); };
          img.onerror = function () { img.failed = true; if (hover >= 0) showTip(hover); };
          img.src = base + raw.sheets[number];
          sheets[number] = img;
        }
        return sheets[number];
      }

      function describe(i) {
        var index = d.index[i], train = index < raw.n_train;
        var number = (train ? index : index - raw.n_train).toLocaleString("en");
        return "digit " + d.label[i] + " \u00b7 " + (train ? "training" : "test") + " image #" + number;
      }

      function showThumb(i) {
        var within = i % raw.sheet_size, img = sheet(Math.floor(i / raw.sheet_size));
        tipCtx.fillStyle = "#fff";
        tipCtx.fillRect(0, 0, 28, 28);
        if (img.ready) {
          var col = within % raw.sheet_columns, row = Math.floor(within / raw.sheet_columns);
          tipCtx.drawImage(img, col * 28, row * 28, 28, 28, 0, 0, 28, 28);
          tip.removeAttribute("data-loading");
        } else {
          tip.setAttribute("data-loading", img.failed ? "failed" : "yes");
        }
      }

      function showTip(i) {
        hover = i;
        showThumb(i);
        var state = tip.getAttribute("data-loading");
        tipText.textContent = describe(i) + (state === "failed" ? " (image unavailable)" :
          state === "yes" ? " (loading image\u2026)" : "");
        tip.setAttribute("data-index", String(i));
        tip.hidden = false;
        var p = toScreen(i), w = tip.offsetWidth, h = tip.offsetHeight;
        var left = p[0] + 14, top = p[1] + 14;
        if (left + w > width) left = p[0] - 14 - w;
        if (top + h > height) top = p[1] - 14 - h;
        tip.style.left = Math.max(0, left) + "px";
        tip.style.top = Math.max(0, top) + "px";
        schedule();
      }

      function hideTip() {
        hover = -1;
        pinned = false;
        tip.hidden = true;
        tip.removeAttribute("data-index");
        schedule();
      }

      function pick(sx, sy) {
        var i = nearest(sx, sy);
        if (i >= 0) showTip(i);
        else if (!pinned) hideTip();
        return i;
      }

      // --- pan, zoom, touch ----------------------------------------------------------------
      function zoomAt(px, py, factor) {
        var s = Math.min(view.fit * MAX_ZOOM, Math.max(view.fit * 0.5, view.s * factor));
        var f = s / view.s;
        view.tx = px - (px - view.tx) * f;
        view.ty = py - (py - view.ty) * f;
        view.s = s;
        touched = true;
        if (hover >= 0) showTip(hover);
        schedule();
      }

      function pan(dx, dy) {
        view.tx += dx;
        view.ty += dy;
        touched = true;
        if (hover >= 0) showTip(hover);
        schedule();
      }

      function local(e) {
        var rect = canvas.getBoundingClientRect();
        return [e.clientX - rect.left, e.clientY - rect.top];
      }

      var pointers = {}, drag = null, pinch = null;
      canvas.addEventListener("pointerdown", function (e) {
        canvas.setPointerCapture(e.pointerId);
        var p = local(e);
        pointers[e.pointerId] = p;
        var ids = Object.keys(pointers);
        if (ids.length === 1) drag = { x: p[0], y: p[1], x0: p[0], y0: p[1], moved: false };
        if (ids.length === 2) {
          var a = pointers[ids[0]], b = pointers[ids[1]];
          pinch = { dist: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1,
            mx: (a[0] + b[0]) / 2, my: (a[1] + b[1]) / 2 };
          drag = null;
        }
      });
      canvas.addEventListener("pointermove", function (e) {
        var p = local(e);
        if (!(e.pointerId in pointers)) {
          if (e.pointerType === "mouse" && !pinned) pick(p[0], p[1]);
          return;
        }
        pointers[e.pointerId] = p;
        var ids = Object.keys(pointers);
        if (pinch && ids.length === 2) {
          var a = pointers[ids[0]], b = pointers[ids[1]];
          var dist = Math.hypot(a[0] - b[0], a[1] - b[1]) || 1, mx = (a[0] + b[0]) / 2, my = (a[1] + b[1]) / 2;
          pan(mx - pinch.mx, my - pinch.my);
          zoomAt(mx, my, dist / pinch.dist);
          pinch = { dist: dist, mx: mx, my: my };
        } else if (drag) {
          if (Math.abs(p[0] - drag.x0) + Math.abs(p[1] - drag.y0) > 4) drag.moved = true;
          if (drag.moved) pan(p[0] - drag.x, p[1] - drag.y);
          drag.x = p[0];
          drag.y = p[1];
        }
      });
      function release(e) {
        var p = local(e);
        if (drag && !drag.moved && e.type === "pointerup") {
          // A tap pins the nearest digit's tooltip (a mouse shows it on hover already);
          // a tap or click on empty space hides it.
          var i = nearest(p[0], p[1]);
          if (i >= 0) { showTip(i); pinned = e.pointerType !== "mouse"; } else hideTip();
        }
        delete pointers[e.pointerId];
        if (Object.keys(pointers).length < 2) pinch = null;
        if (!Object.keys(pointers).length) drag = null;
      }
      canvas.addEventListener("pointerup", release);
      canvas.addEventListener("pointercancel", release);
      canvas.addEventListener("pointerleave", function (e) {
        if (e.pointerType === "mouse" && !pinned && !(e.pointerId in pointers)) hideTip();
      });
      canvas.addEventListener("wheel", function (e) {
        e.preventDefault();
        var p = local(e), unit = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0015;
        zoomAt(p[0], p[1], Math.exp(-e.deltaY * unit));
      }, { passive: false });
      canvas.addEventListener("keydown", function (e) {
        var step = 40, handled = true;
        if (e.key === "+" || e.key === "=") zoomAt(width / 2, height / 2, 1.4);
        else if (e.key === "-" || e.key === "_") zoomAt(width / 2, height / 2, 1 / 1.4);
        else if (e.key === "ArrowLeft") pan(step, 0);
        else if (e.key === "ArrowRight") pan(-step, 0);
        else if (e.key === "ArrowUp") pan(0, step);
        else if (e.key === "ArrowDown") pan(0, -step);
        else if (e.key === "0") { fitView(); touched = false; hideTip(); }
        else if (e.key === "Escape") hideTip();
        else handled = false;
        if (handled) e.preventDefault();
      });
      buttons["in"].addEventListener("click", function () { zoomAt(width / 2, height / 2, 1.5); });
      buttons.out.addEventListener("click", function () { zoomAt(width / 2, height / 2, 1 / 1.5); });
      buttons.reset.addEventListener("click", function () { fitView(); touched = false; hideTip(); });
      buttons.all.addEventListener("click", function () { for (var c = 0; c < 10; c++) setHidden(c, false); });
      buttons.none.addEventListener("click", function () { for (var c = 0; c < 10; c++) setHidden(c, true); });

      if (window.ResizeObserver) new ResizeObserver(resize).observe(stage);
      else window.addEventListener("resize", resize);
      resize();
      status.textContent = d.n.toLocaleString("en") + " digits. Scroll or pinch to zoom, drag " +
        "to pan, hover or tap a point to see its image; the buttons above hide or show a digit.";

      // A small read-only handle for tests and the console (not a global).
      root.tsneMap = {
        n: d.n,
        ready: true,
        label: function (i) { return d.label[i]; },
        index: function (i) { return d.index[i]; },
        screenOf: function (i) {
          var p = toScreen(i), rect = canvas.getBoundingClientRect();
          return { x: rect.left + p[0], y: rect.top + p[1] };
        },
        hovered: function () { return hover; },
        lastDrawMs: function () { return drawMs; },
        visibleNear: function (x, y) {
          var rect = canvas.getBoundingClientRect();
          return nearest(x - rect.left, y - rect.top);
        }
      };
      root.setAttribute("data-ready", "true");
    }
  }

  var roots = document.querySelectorAll("div.tsne-map[data-src]");
  for (var r = 0; r < roots.length; r++) setup(roots[r]);
})();
