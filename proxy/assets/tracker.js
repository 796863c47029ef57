/*
 * The edge tracker: readable source of proxy/assets/script.min.js.
 *
 * Build the served file with scripts/build-tag (terser, pinned version); the
 * edge embeds script.min.js at compile time and publishes its SHA-384 SRI
 * value at GET /admin/tag. Edit this file, run scripts/build-tag, commit both.
 *
 * Embed (the snippet with the real integrity value is in README.md):
 *   <script defer src="https://stats.example.com/js/script.js"
 *           integrity="sha384-..." crossorigin="anonymous"></script>
 *
 * Behaviour:
 * - Events go to POST <origin of this script's src>/api/event as one JSON
 *   object {n, u, r, w, p} (docs/events.md), with navigator.sendBeacon
 *   (text/plain, no CORS preflight), falling back to fetch(..., {keepalive}).
 * - A pageview on load, and again whenever the path changes through
 *   history.pushState / history.replaceState / popstate (single-page apps).
 *   Query-only and fragment-only changes are not new pageviews.
 * - No cookies, no localStorage/sessionStorage, no identifiers of any kind:
 *   the edge derives a daily-rotating visitor hash itself.
 * - Do Not Track: when navigator.doNotTrack is "1" nothing is sent (the
 *   visitor asked; the cost is a small undercount).
 * - Pages on localhost, 127.x.x.x, [::1], *.localhost or file: send nothing
 *   unless the script tag carries data-allow-local (development, tests).
 * - Custom events: window.edge("signup", {plan: "pro"}). Calls made before
 *   the script ran are replayed if the page defined the queue stub
 *   window.edge = window.edge || function () { (edge.q = edge.q || []).push(arguments) };
 */
(function (w, d) {
  "use strict";
  var script = d.currentScript;
  if (!script) return;
  var endpoint = new URL(script.src).origin + "/api/event";
  var loc = w.location;
  var nav = w.navigator;
  var queued = w.edge && w.edge.q;
  var lastPath;

  var off =
    nav.doNotTrack == "1" ||
    (!script.hasAttribute("data-allow-local") &&
      (loc.protocol == "file:" ||
        /^(localhost|127(\.\d+){3}|\[::1\])$|\.localhost$/.test(loc.hostname)));

  function send(name, props) {
    if (off) return;
    var body = JSON.stringify({
      n: name,
      u: loc.href,
      r: d.referrer || null,
      w: w.innerWidth,
      p: props || null,
    });
    if (!(nav.sendBeacon && nav.sendBeacon(endpoint, body))) {
      fetch(endpoint, { method: "POST", body: body, keepalive: true }).catch(
        function () {}
      );
    }
  }

  function pageview() {
    if (lastPath == loc.pathname) return;
    lastPath = loc.pathname;
    send("pageview");
  }

  var history = w.history;
  ["pushState", "replaceState"].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      var result = original.apply(this, arguments);
      pageview();
      return result;
    };
  });
  w.addEventListener("popstate", pageview);

  w.edge = function (name, props) {
    send(name, props);
  };
  for (var i = 0; queued && i < queued.length; i++) send(queued[i][0], queued[i][1]);

  pageview();
})(window, document);
