// Ordinaut dashboard: the small progressive layer over server-rendered pages.
// No inline script anywhere (the CSP forbids it): everything hooks in from here.
(function () {
  "use strict";

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  // htmx requests carry the CSRF token in a header (plain forms carry the field).
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });

  // A live list stops refreshing while jobs are ticked, so the selection survives: no
  // new request, and no swap of one already under way when the box was ticked.
  function ticked(elt) {
    return elt && elt.querySelector && elt.querySelector("input.pick:checked");
  }
  function held(e) {
    var root = document.documentElement;
    root.setAttribute("data-live-held", String(Number(root.getAttribute("data-live-held") || 0) + 1));
    e.preventDefault();
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (ticked(e.detail.elt)) { held(e); }
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (ticked(e.detail.target)) { e.detail.shouldSwap = false; held(e); }
  });

  // Destructive actions ask first.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      e.preventDefault();
    }
  });

  // Times: UTC in the page, the viewer's local time on hover; time.viewer elements
  // show the viewer's zone outright (with its name).
  var viewerFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false, timeZoneName: "short"
  });
  function localTimes(root) {
    root.querySelectorAll("time.viewer[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.textContent = viewerFormat.format(d); t.setAttribute("data-local", "1"); }
    });
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) {
        t.title = d.toLocaleString() + " (your time)";
      }
    });
  }

  // JSON payload editors: say at once whether the text parses.
  function jsonEditors(root) {
    root.querySelectorAll("textarea[data-json]").forEach(function (area) {
      var msg = document.getElementById(area.getAttribute("aria-describedby"));
      function check() {
        try {
          JSON.parse(area.value);
          area.setCustomValidity("");
          if (msg) { msg.textContent = "Valid JSON."; msg.className = "hint ok"; }
        } catch (err) {
          area.setCustomValidity("Not valid JSON");
          if (msg) { msg.textContent = "Not valid JSON: " + err.message; msg.className = "hint error"; }
        }
      }
      area.addEventListener("input", check);
      check();
    });
  }

  // Charts: a div.chart with data-series = [[unix seconds...], [series 1...], ...].
  function charts(root) {
    if (typeof window.uPlot !== "function") { return; }
    root.querySelectorAll("div.chart[data-series]").forEach(function (el) {
      var data;
      try { data = JSON.parse(el.getAttribute("data-series")); } catch (err) { return; }
      var labels = (el.getAttribute("data-labels") || "").split(",");
      var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
      var colours = dark ? ["#6fcf97", "#ff8a80", "#8ab4f8", "#f2c94c"] : ["#2f7d4f", "#b3261e", "#1f5fa8", "#8a5a00"];
      var ink = dark ? "#d8dde3" : "#1d2329";
      var grid = dark ? "#3a424b" : "#e3e6ea";
      var series = [{}];
      labels.forEach(function (l, i) {
        // Gappy series (minutes without jobs are null) get dots, so a lone minute shows.
        var dots = el.hasAttribute("data-points");
        series.push({ label: l, stroke: colours[i % colours.length], width: 2, points: { show: dots, size: 5, fill: colours[i % colours.length] }, spanGaps: false });
      });
      el.textContent = "";
      new window.uPlot({
        width: Math.max(280, el.clientWidth || 600),
        height: 180,
        series: series,
        axes: [
          { stroke: ink, grid: { stroke: grid } },
          { label: el.getAttribute("data-unit") || "", stroke: ink, grid: { stroke: grid } }
        ],
        legend: { live: false }
      }, data, el);
    });
  }

  // Live parts: an element with data-live re-reads itself (hx-trigger "live") when the
  // event stream says a job changed. One stream per page, filtered by the first live
  // element's data-live query; re-reads are at most one a second, and one more after a
  // burst so the last change is always shown. The browser reconnects a dropped stream.
  var stream = null;
  var lastFire = 0;
  var pending = null;
  function fireLive() {
    pending = null;
    lastFire = Date.now();
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (window.htmx) { window.htmx.trigger(el, "live"); }
    });
  }
  // Job events received, for the browser tests to tell a stream refresh from a timed one.
  function onEvent() {
    var root = document.documentElement;
    root.setAttribute("data-live-events", String(Number(root.getAttribute("data-live-events") || 0) + 1));
    onChange();
  }
  function onChange() {
    if (pending) { return; }
    var wait = Math.max(0, 1000 - (Date.now() - lastFire));
    pending = window.setTimeout(fireLive, wait);
  }
  function liveStream() {
    var el = document.querySelector("[data-live]");
    if (!el || stream || typeof window.EventSource !== "function") { return; }
    var filter = el.getAttribute("data-live");
    stream = new window.EventSource("/ui/events" + (filter ? "?" + filter : ""));
    stream.addEventListener("job", onEvent);
    stream.addEventListener("resync", onChange);
    stream.addEventListener("lagged", onChange);
    // On every (re)connect, re-read once: a change between this page's render and the
    // stream's start (or during a reconnect) sent its event to nobody here.
    stream.addEventListener("open", function () {
      document.documentElement.setAttribute("data-stream", "open");
      onChange();
    });
  }

  function enhance(root) {
    localTimes(root);
    jsonEditors(root);
    charts(root);
    liveStream();
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSwap", function (e) { enhance(e.detail.elt.parentNode || document); });
})();
