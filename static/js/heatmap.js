// Heatmap overlays on the case and review pages: a checkbox shows or hides each image's map, a slider sets its
// opacity. Delegated listeners, so that maps arriving with a live refresh of the case panel work too.
(function () {
  "use strict";
  if (window.telederHeatmap) return; // the include may load this file more than once
  window.telederHeatmap = true;
  function overlayFor(control) {
    var box = control.closest("[data-heatmap-for]");
    if (!box) return null;
    return document.querySelector('.heatmap-overlay[data-heatmap-for="' + box.dataset.heatmapFor + '"]');
  }
  document.addEventListener("input", function (e) {
    if (!e.target.classList.contains("heatmap-opacity")) return;
    var overlay = overlayFor(e.target);
    if (overlay) overlay.style.opacity = String(Number(e.target.value) / 100);
  });
  document.addEventListener("change", function (e) {
    if (!e.target.classList.contains("heatmap-toggle")) return;
    var overlay = overlayFor(e.target);
    if (overlay) overlay.classList.toggle("heatmap-hidden", !e.target.checked);
  });
})();
