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

  // A live list stops refreshing while jobs are ticked, so the selection survives.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail.elt;
    if (elt && elt.querySelector && elt.querySelector("input.pick:checked")) {
      e.preventDefault();
    }
  });

  // Destructive actions ask first.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      e.preventDefault();
    }
  });

  // Times: UTC in the page, the viewer's local time on hover.
  function localTimes(root) {
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
      var colours = ["#2f7d4f", "#b3261e", "#1f5fa8", "#8a5a00"];
      var series = [{}];
      labels.forEach(function (l, i) {
        series.push({ label: l, stroke: colours[i % colours.length], width: 2, points: { show: false } });
      });
      el.textContent = "";
      new window.uPlot({
        width: Math.max(280, el.clientWidth || 600),
        height: 180,
        series: series,
        axes: [{}, { label: "jobs / min" }],
        legend: { live: false }
      }, data, el);
    });
  }

  function enhance(root) {
    localTimes(root);
    jsonEditors(root);
    charts(root);
  }

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSwap", function (e) { enhance(e.detail.elt.parentNode || document); });
})();
