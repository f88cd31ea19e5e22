/* mailadmin: live progress of one campaign page, no page reload.
 *
 * The page marks a container with data-progress-url (the campaign's progress.json, with
 * the page's own filter and page number) and elements inside the page with
 * data-bind="field" (or "counts.sent").  Every few seconds the JSON is fetched and those
 * elements, the progress bar and the status badge are updated; blocks marked
 * data-live-html="name" (reason, buttons, dates, last errors, the recipients rows shown)
 * are replaced by the server's rendering of them when it changed, and their times shown
 * in the viewer's zone (localtime.js); the per-hour chart is re-fetched when the sent
 * count changed.
 * Polling stops once the campaign is finished or cancelled, slows down while the tab
 * is hidden, and backs off after errors.
 */
(function () {
  "use strict";

  var panel = document.querySelector("[data-progress-url]");
  if (!panel || !window.fetch) { return; }

  var url = panel.getAttribute("data-progress-url");
  var chartUrl = panel.getAttribute("data-chart-url");
  var chart = document.getElementById("sends-chart");
  var INTERVAL = 2000, HIDDEN_INTERVAL = 15000, MAX_BACKOFF = 60000;
  var delay = INTERVAL, timer = null, lastChartSent = chart ? chart.getAttribute("data-chart-version") : null;
  var chartLoading = false;
  var lastHtml = {};

  function swapBlocks(blocks) {
    Object.keys(blocks || {}).forEach(function (name) {
      var el = document.querySelector('[data-live-html="' + name + '"]');
      var html = blocks[name];
      if (!el || lastHtml[name] === html) { return; }
      lastHtml[name] = html;
      el.innerHTML = html;
      if (name === "reason") { el.hidden = !html.trim(); }
      if (window.mailadminLocalize) { window.mailadminLocalize(el); }
    });
  }

  function relabelOptions(labels) {
    var select = document.getElementById("recipient-status");
    if (!select || !labels) { return; }
    Object.keys(labels).forEach(function (status) {
      var option = select.querySelector('option[value="' + status + '"]');
      if (option && option.textContent !== labels[status]) { option.textContent = labels[status]; }
    });
  }

  // Counts written as the page's language writes them (the server's Babel does the same): "1,204" / "1 204".
  var NUMBER_LOCALE = document.documentElement.lang === "ru" ? "ru-RU" : "en-US";

  function number(value) {
    return typeof value === "number" ? value.toLocaleString(NUMBER_LOCALE) : (value == null ? "" : String(value));
  }

  function lookup(data, path) {
    return path.split(".").reduce(function (obj, key) { return obj == null ? undefined : obj[key]; }, data);
  }

  function render(data) {
    document.querySelectorAll("[data-bind]").forEach(function (el) {
      var value = lookup(data, el.getAttribute("data-bind"));
      if (value === undefined) { return; }
      var text = number(value);
      if (el.textContent !== text) { el.textContent = text; }
      if (el.hasAttribute("data-status")) {
        el.setAttribute("data-status", data.status);
        el.className = "status " + data.status + (data.finished_with_errors ? " with-errors" : "");
      }
    });
    document.querySelectorAll("[data-bar]").forEach(function (bar) {
      bar.setAttribute("aria-valuenow", String(data.percent));
      ["sent", "failed", "other"].forEach(function (part) {
        var seg = bar.querySelector('[data-bar-part="' + part + '"]');
        if (seg) { seg.style.width = data.shares[part] + "%"; }
      });
    });
    swapBlocks(data.html);
    relabelOptions(data.status_options);
    panel.setAttribute("data-status", data.status);
    panel.setAttribute("data-final", data.final ? "true" : "false");
    if (data.final) {
      var note = panel.querySelector("[data-live-note]");
      if (note) { note.textContent = ""; }
    }
    if (chart && chartUrl && String(data.sent) !== lastChartSent && !chartLoading) {
      refreshChart(String(data.sent));
    }
  }

  function refreshChart(version) {
    chartLoading = true;
    fetch(chartUrl + "?v=" + encodeURIComponent(version), { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (svg) {
        if (svg.lastIndexOf("<svg", 0) === 0) { chart.innerHTML = svg; }
        lastChartSent = version;
        chart.setAttribute("data-chart-version", version);
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () { chartLoading = false; });
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403 || r.status === 404) { throw new Error("stop"); }
        if (!r.ok) { throw new Error("retry"); }
        return r.json();
      })
      .then(function (data) {
        render(data);
        delay = INTERVAL;
        if (!data.final) { schedule(document.hidden ? HIDDEN_INTERVAL : INTERVAL); }
      })
      .catch(function (err) {
        if (err && err.message === "stop") { return; }
        delay = Math.min(delay * 2, MAX_BACKOFF);
        schedule(delay);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && panel.getAttribute("data-final") !== "true") { schedule(0); }
  });

  if (panel.getAttribute("data-final") !== "true") { schedule(INTERVAL); }
})();
