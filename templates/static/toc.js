/* Contents: mark the section being read (progressive enhancement).
 *
 * The contents (<nav class="toc">) sits in a sticky sidebar on wide screens. This script marks
 * the link of the section whose heading last passed the reading line (the top third of the
 * window) with aria-current, and that of the sub-heading within it; the stylesheet highlights
 * them and opens only the current section's sub-list. An IntersectionObserver says when a
 * section or heading crosses the line; no scroll handler runs. Without JavaScript or
 * IntersectionObserver the contents is a plain list of links with every sub-list open.
 */
(function () {
  "use strict";
  var toc = document.querySelector("nav.toc");
  if (!toc || !("IntersectionObserver" in window)) return;
  var LINE = 0.3;  // the reading line, as a share of the window's height from the top

  function target(link) {
    var id = decodeURIComponent(link.getAttribute("href").slice(1));
    return id ? document.getElementById(id) : null;
  }

  // Top-level entries (sections, the appendix) and, per entry, its sub-headings.
  var entries = [];
  var items = toc.querySelectorAll(":scope > ol > li");
  for (var i = 0; i < items.length; i++) {
    var link = items[i].querySelector(":scope > a[href^='#']");
    var element = link && target(link);
    if (!element) continue;
    var subs = [];
    var subLinks = items[i].querySelectorAll(".toc-sub a[href^='#']");
    for (var j = 0; j < subLinks.length; j++) {
      var heading = target(subLinks[j]);
      if (heading) subs.push({ link: subLinks[j], element: heading });
    }
    entries.push({ item: items[i], link: link, element: element, subs: subs });
  }
  if (!entries.length) return;

  var current = null, currentSub = null;

  function passed(element, line) {
    return element.getBoundingClientRect().top <= line;
  }

  function keepInView(link) {
    // Scroll the contents itself (never the page) so that the marked link stays visible.
    var l = link.getBoundingClientRect(), t = toc.getBoundingClientRect();
    if (l.top < t.top) toc.scrollTop -= t.top - l.top + 8;
    else if (l.bottom > t.bottom) toc.scrollTop += l.bottom - t.bottom + 8;
  }

  function update() {
    var line = window.innerHeight * LINE;
    var entry = null, sub = null;
    for (var i = 0; i < entries.length; i++) {
      if (passed(entries[i].element, line)) entry = entries[i];
      else break;
    }
    if (entry) {
      for (var j = 0; j < entry.subs.length; j++) {
        if (passed(entry.subs[j].element, line)) sub = entry.subs[j];
        else break;
      }
    }
    if (entry !== current) {
      if (current) {
        current.item.classList.remove("current");
        current.link.removeAttribute("aria-current");
      }
      if (entry) {
        entry.item.classList.add("current");
        entry.link.setAttribute("aria-current", "true");
      }
      current = entry;
    }
    var subLink = sub ? sub.link : null;
    if (subLink !== currentSub) {
      if (currentSub) currentSub.removeAttribute("aria-current");
      if (subLink) subLink.setAttribute("aria-current", "location");
      currentSub = subLink;
    }
    var shown = currentSub || (current && current.link);
    if (shown && toc.scrollHeight > toc.clientHeight) keepInView(shown);
  }

  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; update(); });
  }

  // Whatever crosses the band between the top of the window and the reading line triggers an
  // update; the update itself reads positions, so fast scrolls and jumps land right too.
  var observer = new IntersectionObserver(schedule, {
    rootMargin: "0px 0px -" + Math.round((1 - LINE) * 100) + "% 0px", threshold: [0, 1]
  });
  entries.forEach(function (entry) {
    observer.observe(entry.element);
    entry.subs.forEach(function (sub) { observer.observe(sub.element); });
  });
  window.addEventListener("hashchange", schedule);
  update();
})();
