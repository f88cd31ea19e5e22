/* mailadmin: every time in the viewer's own time zone, and times typed in it.
 *
 * The server writes each moment as <time datetime="ISO UTC" title="... UTC" data-local="datetime|seconds|auto">
 * with UTC text; this script rewrites the text in the browser's zone (the title keeps UTC, shown
 * on hover). It also fills every <input data-tz-field> with the browser's IANA zone, so that a
 * time typed in a form (the scheduled start, the audit log's dates) is read in that zone by the
 * server, and remembers the zone in a cookie for pages rendered before any form is sent.
 * window.mailadminLocalize(root) re-runs it on content a live update just replaced.
 */
(function () {
  "use strict";

  var zone = "UTC";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { zone = "UTC"; }
  document.cookie = "mailadmin_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";

  var LOCALE = "en-GB";

  function dayKey(date) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
  }

  function format(date, style) {
    var now = new Date();
    var options = { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
    if (style === "seconds") { options.second = "2-digit"; }
    if (style !== "auto" || dayKey(date) !== dayKey(now)) {
      options.day = "numeric";
      options.month = "short";
      if (date.getFullYear() !== now.getFullYear() || style !== "auto") { options.year = "numeric"; }
    }
    return new Intl.DateTimeFormat(LOCALE, options).format(date);
  }

  function localize(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) { return; }
      var text = format(date, el.getAttribute("data-local"));
      if (el.textContent !== text) { el.textContent = text; }
    });
    (root || document).querySelectorAll("input[data-tz-field]").forEach(function (input) { input.value = zone; });
    (root || document).querySelectorAll("[data-tz-name]").forEach(function (el) { el.textContent = zone; });
  }

  window.mailadminLocalize = localize;
  localize(document);
})();
