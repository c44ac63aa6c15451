// New-case form: drag and drop with previews and client-side checks (the server checks again), the
// body-site picker, new patient / new lesion sections, and no double submit.
(function () {
  "use strict";
  var form = document.getElementById("case-form");
  if (!form) return;
  var input = form.querySelector("input[type=file][name=images]");
  var zone = document.getElementById("dropzone");
  var previews = document.getElementById("previews");
  var clientErrors = document.getElementById("image-client-errors");
  var maxBytes = parseInt(input.dataset.maxBytes, 10);
  var maxFiles = parseInt(input.dataset.maxFiles, 10);
  var accepted = ["image/jpeg", "image/png"];

  function keptCount() { return form.querySelectorAll("input[name=kept_images]").length; }

  function check(files) {
    var errors = [];
    var total = files.length + keptCount();
    if (total > maxFiles) errors.push("A case has at most " + maxFiles + " images (you chose " + total + ").");
    Array.prototype.forEach.call(files, function (f) {
      if (accepted.indexOf(f.type) < 0) errors.push(f.name + " is not a JPEG or PNG image.");
      else if (f.size > maxBytes) errors.push(f.name + " is larger than " + Math.floor(maxBytes / 1048576) + " MB.");
    });
    return errors;
  }

  function render() {
    previews.innerHTML = "";
    clientErrors.innerHTML = "";
    Array.prototype.forEach.call(input.files, function (f, index) {
      var li = document.createElement("li");
      if (accepted.indexOf(f.type) >= 0) {
        var img = document.createElement("img");
        img.src = URL.createObjectURL(f);
        img.alt = "Preview of " + f.name;
        li.appendChild(img);
      }
      var name = document.createElement("span");
      name.textContent = f.name + " (" + Math.round(f.size / 1024) + " KB)";
      li.appendChild(name);
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = "Remove";
      remove.addEventListener("click", function () { removeAt(index); });
      li.appendChild(remove);
      previews.appendChild(li);
    });
    check(input.files).forEach(function (message) {
      var li = document.createElement("li");
      li.textContent = message;
      clientErrors.appendChild(li);
    });
  }

  function setFiles(list) {
    var dt = new DataTransfer();
    list.forEach(function (f) { dt.items.add(f); });
    input.files = dt.files;
    render();
  }

  function removeAt(index) {
    setFiles(Array.prototype.filter.call(input.files, function (_, i) { return i !== index; }));
  }

  input.addEventListener("change", render);
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dragover"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    var files = Array.prototype.slice.call(input.files).concat(Array.prototype.slice.call(e.dataTransfer.files));
    setFiles(files);
  });
  form.querySelectorAll(".remove-kept").forEach(function (button) {
    button.addEventListener("click", function () { button.closest("li").remove(); });
  });

  // Patient typeahead (organization-scoped search by reference) and lesion: show the "new" fields only
  // when no existing one is chosen. Without scripts the server resolves the typed reference.
  var patientQuery = form.querySelector("input[name=patient_query]");
  var patientId = form.querySelector("input[name=patient]");
  var options = document.getElementById("patient-options");
  var lesionSelect = form.querySelector("select[name=lesion]");
  var facts = document.getElementById("patient-facts");
  var searchUrl = facts.dataset.searchUrl;
  var lesionOptions = Array.prototype.slice.call(lesionSelect.options);
  var found = {};
  var timer = null;
  var SEXES = {male: "Male", female: "Female", unknown: "Unknown"};
  function syncPatient() {
    var p = found[patientQuery.value.trim().toLowerCase()];
    patientId.value = p ? String(p.id) : "";
    var id = patientId.value;
    document.getElementById("new-patient").hidden = !!id;
    facts.textContent = p ? "Sex: " + (SEXES[p.sex] || p.sex) + " · year of birth: " +
      (p.year_of_birth === null ? "unknown" : p.year_of_birth) + " (age and sex come from the patient record)" : "";
    // Only this patient's lesions can be chosen (the label starts with the patient's reference).
    var ref = id ? patientQuery.value.trim() : null;
    lesionOptions.forEach(function (opt) {
      opt.hidden = opt.value !== "" && (!ref || opt.text.toLowerCase().indexOf(ref.toLowerCase() + ":") !== 0);
    });
    if (lesionSelect.selectedOptions[0] && lesionSelect.selectedOptions[0].hidden) lesionSelect.value = "";
    syncLesion();
  }
  function search() {
    var q = patientQuery.value.trim();
    if (!q) { found = {}; options.innerHTML = ""; syncPatient(); return; }
    fetch(searchUrl + "?q=" + encodeURIComponent(q), {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : {results: []}; })
      .then(function (data) {
        found = {};
        options.innerHTML = "";
        data.results.forEach(function (p) {
          found[p.reference.toLowerCase()] = p;
          var opt = document.createElement("option");
          opt.value = p.reference;
          options.appendChild(opt);
        });
        syncPatient();
      })
      .catch(function () { /* the server resolves the typed reference on submit */ });
  }
  function syncLesion() { document.getElementById("new-lesion").hidden = !!lesionSelect.value; }
  patientQuery.addEventListener("input", function () {
    syncPatient();  // at once: a changed reference must not keep the previous patient while the search runs
    window.clearTimeout(timer);
    timer = window.setTimeout(search, 200);
  });
  lesionSelect.addEventListener("change", syncLesion);
  if (patientQuery.value.trim()) search(); else syncPatient();

  // Body-site picker sets the site select (which stays the accessible control).
  var siteSelect = form.querySelector("select[name=site]");
  var regions = form.querySelectorAll(".body-picker .region");
  function showSite() {
    regions.forEach(function (r) { r.classList.toggle("selected", r.dataset.site === siteSelect.value); });
  }
  regions.forEach(function (region) {
    function pick() { siteSelect.value = region.dataset.site; showSite(); }
    region.addEventListener("click", pick);
    region.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); }
    });
  });
  siteSelect.addEventListener("change", showSite);
  showSite();

  // One submit per page load: a second click would only send the same submission key again.
  form.addEventListener("submit", function (e) {
    var errors = check(input.files);
    if (errors.length) { e.preventDefault(); render(); clientErrors.scrollIntoView({block: "center"}); return; }
    if (form.dataset.submitted) { e.preventDefault(); return; }
    form.dataset.submitted = "1";
    var button = document.getElementById("submit-case");
    button.textContent = form.dataset.submittingText;
    button.setAttribute("aria-disabled", "true");
  });
})();
