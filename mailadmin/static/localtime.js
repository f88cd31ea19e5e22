/* mailadmin: every time in the viewer's own time zone, and times typed in it.
 *
 * The server writes each moment as <time datetime="ISO UTC" title="... UTC" data-local="datetime|seconds|auto">
 * in the one format, in the zone this script remembered in its cookie (UTC on a first visit); this
 * script writes the text again in the browser's zone, the same way (the title keeps UTC, shown on
 * hover). It also fills every <input data-tz-field> with the browser's IANA zone, so that a time
 * typed in a form (the scheduled start, the audit log's dates) is read in that zone by the
 * server, and remembers the zone in a cookie for pages rendered before any form is sent.
 * window.mailadminLocalize(root) re-runs it on content a live update just replaced.
 */
(function () {
  "use strict";

  var zone = "UTC";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { zone = "UTC"; }
  document.cookie = "mailadmin_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";

  // The one format, written exactly as the server writes it (mailadmin/models/moments.py):
  // "7 Dec 2026, 20:04 UTC+1", with seconds for data-local="seconds", the time alone today for "auto".
  // The month in the page's language, as the server writes it (moments.MONTHS_BY_LANGUAGE).
  var MONTHS = document.documentElement.lang === "ru"
    ? ["янв.", "февр.", "мар.", "апр.", "мая", "июн.", "июл.", "авг.", "сент.", "окт.", "нояб.", "дек."]
    : ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var PARTS = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, year: "numeric", month: "numeric", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
  });

  function wallClock(date) {
    var values = {};
    PARTS.formatToParts(date).forEach(function (part) { values[part.type] = part.value; });
    var clock = { year: +values.year, month: +values.month, day: +values.day,
                  hour: +values.hour % 24, minute: +values.minute, second: +values.second };
    var asUtc = Date.UTC(clock.year, clock.month - 1, clock.day, clock.hour, clock.minute, clock.second);
    clock.offset = Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
    return clock;
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function offsetLabel(minutes) {
    if (minutes === 0) { return "UTC"; }
    var abs = Math.abs(minutes), rest = abs % 60;
    return "UTC" + (minutes > 0 ? "+" : "-") + Math.floor(abs / 60) + (rest ? ":" + two(rest) : "");
  }

  function format(date, style) {
    var local = wallClock(date), today = wallClock(new Date());
    var clock = two(local.hour) + ":" + two(local.minute) + (style === "seconds" ? ":" + two(local.second) : "");
    var tail = clock + " " + offsetLabel(local.offset);
    var day = local.day + " " + MONTHS[local.month - 1];
    if (style === "auto") {
      if (local.year === today.year && local.month === today.month && local.day === today.day) { return tail; }
      if (local.year === today.year) { return day + ", " + tail; }
    }
    return day + " " + local.year + ", " + tail;
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
