/* GIF player: play/pause and a frame slider for animated figures (progressive enhancement).
 *
 * A GIF cannot be paused or rewound. For each <figure class="gif" data-sprite=...> (ctx.gif with
 * sprite=True), this script loads the frames from a PNG grid (data-columns frames per row, each
 * data-width x data-height pixels) and, once it has them, swaps the <img> for a <canvas> it draws
 * into. Without JavaScript, or if the PNG fails to load, the GIF simply keeps playing.
 */
(function () {
  "use strict";
  var figures = document.querySelectorAll("figure.gif[data-sprite]");
  if (!figures.length) return;
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  function Player(figure) {
    var img = figure.querySelector("img");
    this.figure = figure;
    this.img = img;
    this.frames = parseInt(figure.dataset.frames, 10);
    this.fps = parseFloat(figure.dataset.fps) || 4;
    this.columns = parseInt(figure.dataset.columns, 10);
    this.width = parseInt(figure.dataset.width, 10);
    this.height = parseInt(figure.dataset.height, 10);
    this.frame = 0;
    this.playing = !reduceMotion;
    this.visible = true;
    this.timer = null;
    this.controls = el("div", { "class": "gif-player", role: "group", "aria-label": "Animation controls" });
    this.button = el("button", { type: "button", disabled: "" }, "Loading frames\u2026");
    this.slider = el("input", { type: "range", min: "0", max: String(this.frames - 1), step: "1",
                                value: "0", disabled: "", "aria-label": "Frame" });
    this.label = el("output", { "aria-live": "off" }, "");
    this.controls.appendChild(this.button);
    this.controls.appendChild(this.slider);
    this.controls.appendChild(this.label);
    this.controls.style.maxWidth = this.width + "px";  // as wide as the frames
    figure.insertBefore(this.controls, figure.querySelector("figcaption"));
    this.tick = this.tick.bind(this);
  }

  Player.prototype.load = function () {
    var self = this;
    if (self.sprite) return;
    self.sprite = new Image();
    self.sprite.decoding = "async";
    self.sprite.onload = function () { self.ready(); };
    self.sprite.onerror = function () { self.controls.remove(); };  // the GIF stays
    self.sprite.src = self.figure.dataset.sprite;
  };

  Player.prototype.ready = function () {
    var self = this;
    self.canvas = el("canvas", { width: String(self.width), height: String(self.height),
                                 role: "img", "aria-label": self.img.alt });
    self.canvas.className = "gif-canvas";
    self.context = self.canvas.getContext("2d");
    self.img.replaceWith(self.canvas);
    self.figure.classList.add("gif-enhanced");
    self.button.disabled = false;
    self.slider.disabled = false;
    self.button.addEventListener("click", function () { self.setPlaying(!self.playing); });
    self.slider.addEventListener("input", function () {
      self.setPlaying(false);
      self.show(parseInt(self.slider.value, 10));
    });
    self.show(reduceMotion ? self.frames - 1 : 0);
    self.setPlaying(self.playing);
  };

  Player.prototype.show = function (frame) {
    var w = this.width, h = this.height;
    this.frame = frame;
    this.context.drawImage(this.sprite, (frame % this.columns) * w,
                           Math.floor(frame / this.columns) * h, w, h, 0, 0, w, h);
    this.slider.value = String(frame);
    this.label.textContent = "frame " + (frame + 1) + " / " + this.frames;
  };

  Player.prototype.setPlaying = function (playing) {
    this.playing = playing;
    this.button.textContent = playing ? "\u275A\u275A Pause" : "\u25B6 Play";
    if (playing && this.timer === null) this.timer = window.setTimeout(this.tick, 1000 / this.fps);
  };

  Player.prototype.tick = function () {
    this.timer = null;
    if (!this.playing) return;
    // Advance one frame at the GIF's rate; hold the frame while the figure is off screen.
    if (this.visible) this.show((this.frame + 1) % this.frames);
    this.timer = window.setTimeout(this.tick, 1000 / this.fps);
  };

  var players = [];
  for (var i = 0; i < figures.length; i++) {
    var f = figures[i];
    if (!(f.dataset.frames > 1) || !f.dataset.columns || !f.querySelector("img")) continue;
    players.push(new Player(f));
  }
  if ("IntersectionObserver" in window) {
    // Fetch the frames only when a figure comes near the viewport; pause drawing when it leaves.
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        var player = entry.target.__gifPlayer;
        player.visible = entry.isIntersecting;
        if (entry.isIntersecting) player.load();
      });
    }, { rootMargin: "300px 0px" });
    players.forEach(function (p) { p.figure.__gifPlayer = p; observer.observe(p.figure); });
  } else {
    players.forEach(function (p) { p.load(); });
  }
})();
