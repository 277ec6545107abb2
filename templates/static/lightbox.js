/* Click to zoom: a figure's image opens enlarged in a modal dialog (progressive enhancement).
 *
 * Each figure's image is a link to its PNG (<figure class="figure"><a class="zoom" href=...>),
 * so without JavaScript, or in a browser without <dialog>, a click simply opens the image. With
 * them, a plain click opens the image and its caption in a <dialog>: Escape, the close button,
 * a click on the image or outside it close it, and focus returns to the figure. A click with a
 * modifier key (new tab, new window) keeps the browser's own behaviour.
 */
(function () {
  "use strict";
  if (typeof HTMLDialogElement !== "function" || !document.querySelector("a.zoom")) return;

  var dialog = document.createElement("dialog");
  dialog.className = "lightbox";
  dialog.setAttribute("aria-labelledby", "lightbox-caption");
  var figure = document.createElement("figure");
  var image = document.createElement("img");
  image.alt = "";
  var caption = document.createElement("figcaption");
  caption.id = "lightbox-caption";
  var close = document.createElement("button");
  close.type = "button";
  close.className = "lightbox-close";
  close.setAttribute("aria-label", "Close the enlarged figure");
  close.textContent = "\u00d7";
  figure.appendChild(image);
  figure.appendChild(caption);
  dialog.appendChild(close);
  dialog.appendChild(figure);
  document.body.appendChild(dialog);
  if (typeof dialog.showModal !== "function") { dialog.remove(); return; }

  var opener = null;

  function open(link) {
    var source = link.querySelector("img");
    var owner = link.closest("figure");
    var text = owner && owner.querySelector("figcaption");
    image.src = link.getAttribute("href");
    image.alt = source ? source.alt : "";
    caption.textContent = "";
    if (text) {
      var copy = text.cloneNode(true);
      var anchors = copy.querySelectorAll(".anchor");
      for (var i = 0; i < anchors.length; i++) anchors[i].remove();
      while (copy.firstChild) caption.appendChild(copy.firstChild);
    }
    dialog.classList.toggle("picture", !!(owner && owner.classList.contains("picture")));
    opener = link;
    dialog.showModal();
    close.focus();
  }

  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) return;
    var link = event.target.closest && event.target.closest("a.zoom");
    if (!link) return;
    event.preventDefault();
    open(link);
  });
  close.addEventListener("click", function () { dialog.close(); });
  image.addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("click", function (event) {
    if (event.target === dialog) dialog.close();  // the backdrop
  });
  // Escape fires "cancel" and closes the dialog natively; both routes end here.
  dialog.addEventListener("close", function () {
    image.removeAttribute("src");
    if (opener) opener.focus();
    opener = null;
  });
})();
