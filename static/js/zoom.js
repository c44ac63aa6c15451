// Image zoom: click an image to open it in a dialog; zoom with the buttons, the wheel or a pinch; drag to pan.
(function () {
  "use strict";
  var dialog = document.getElementById("zoom-dialog");
  if (!dialog) return;
  var img = dialog.querySelector("img");
  var stage = dialog.querySelector(".zoom-stage");
  var scale = 1, x = 0, y = 0, drag = null;
  function apply() { img.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")"; }
  function zoom(factor) { scale = Math.min(8, Math.max(1, scale * factor)); if (scale === 1) { x = 0; y = 0; } apply(); }
  document.addEventListener("click", function (e) {
    var button = e.target.closest(".zoomable");
    if (!button) return;
    img.src = button.dataset.full;
    scale = 1; x = 0; y = 0; apply();
    dialog.showModal();
  });
  dialog.querySelectorAll("[data-zoom]").forEach(function (b) {
    b.addEventListener("click", function () {
      var what = b.dataset.zoom;
      if (what === "in") zoom(1.5);
      else if (what === "out") zoom(1 / 1.5);
      else if (what === "reset") { scale = 1; x = 0; y = 0; apply(); }
      else dialog.close();
    });
  });
  stage.addEventListener("wheel", function (e) { e.preventDefault(); zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2); }, {passive: false});
  stage.addEventListener("pointerdown", function (e) { drag = {px: e.clientX - x, py: e.clientY - y}; stage.setPointerCapture(e.pointerId); });
  stage.addEventListener("pointermove", function (e) { if (drag && scale > 1) { x = e.clientX - drag.px; y = e.clientY - drag.py; apply(); } });
  stage.addEventListener("pointerup", function () { drag = null; });
})();
