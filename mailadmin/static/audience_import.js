/* mailadmin: the progress bar of a contacts import.
 *
 * The page marks a section with data-import-url (the import's progress.json) and elements
 * inside it with data-import="field". Every second the JSON is fetched and those elements and
 * the <progress> bar updated; once the import is finished the page reloads itself to show the
 * result (rejected rows by spreadsheet row). Polling slows down while the tab is hidden and
 * backs off after errors.
 */
(function () {
  "use strict";

  var panel = document.querySelector("[data-import-url]");
  if (!panel || !window.fetch || panel.getAttribute("data-finished") === "yes") { return; }
  var url = panel.getAttribute("data-import-url");
  var bar = document.getElementById("import-bar");
  var INTERVAL = 1000, HIDDEN_INTERVAL = 10000, MAX_BACKOFF = 30000;
  var delay = INTERVAL;

  function show(data) {
    panel.querySelectorAll("[data-import]").forEach(function (el) {
      var value = data[el.getAttribute("data-import")];
      if (value === undefined || value === null) { return; }
      var words = el.getAttribute("data-words");  // a code the page writes in the viewer's language
      if (words) { value = JSON.parse(words)[value] || value; }
      el.textContent = typeof value === "number" ? value.toLocaleString() : String(value);
      if (el.id === "import-message") { el.hidden = !value; }
    });
    if (bar) { bar.value = data.percent; }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        show(data);
        delay = INTERVAL;
        if (data.finished) { window.location.reload(); return; }
        schedule();
      })
      .catch(function () {
        delay = Math.min(delay * 2, MAX_BACKOFF);
        schedule();
      });
  }

  function schedule() {
    window.setTimeout(poll, document.hidden ? Math.max(delay, HIDDEN_INTERVAL) : delay);
  }

  schedule();
})();
