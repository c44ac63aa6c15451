// Live case page: polls the case's status endpoint and swaps in the updated panel (no reload) until nothing
// more happens by itself. The first poll comes after 0.4 s (an analysis often finishes in about that), then
// the interval grows to 2 s while nothing changes; errors back off up to 30 s.
(function () {
  "use strict";
  var panel = document.getElementById("case-live");
  if (!panel) return;
  var url = panel.dataset.statusUrl;
  var last = null;
  var FIRST = 400, STEADY = 2000;
  var delay = FIRST;
  function poll() {
    fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        delay = Math.min(Math.max(delay * 2, 800), STEADY);
        if (data.html !== last) {
          panel.innerHTML = data.html;
          last = data.html;
          panel.dataset.status = data.status;
        }
        if (!data.final) window.setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(Math.max(delay, STEADY) * 2, 30000); window.setTimeout(poll, delay); });
  }
  if (panel.dataset.final !== "true") window.setTimeout(poll, delay);
})();
