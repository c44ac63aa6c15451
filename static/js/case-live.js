// Live case page: polls the case's status endpoint every 2 s and swaps in the updated panel (no reload)
// until the case is reported or failed.
(function () {
  "use strict";
  var panel = document.getElementById("case-live");
  if (!panel) return;
  var url = panel.dataset.statusUrl;
  var last = null;
  var delay = 2000;
  function poll() {
    fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        delay = 2000;
        if (data.html !== last) {
          panel.innerHTML = data.html;
          last = data.html;
          panel.dataset.status = data.status;
        }
        if (!data.final) window.setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 30000); window.setTimeout(poll, delay); });
  }
  if (panel.dataset.final !== "true") window.setTimeout(poll, delay);
})();
